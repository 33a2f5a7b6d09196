package modelrepo

import (
	"slices"
	"testing"
)

func TestParsePolicy(t *testing.T) {
	tests := []struct {
		in, want string // want "" means an error
	}{
		{"latest", "latest"},
		{" latest\n", "latest"},
		{"latest:1", "latest"},
		{"latest:3", "latest:3"},
		{"all", "all"},
		{"specific:3,1", "specific:1,3"},
		{"specific:2,2, 5", "specific:2,5"},
		{"latest:0", ""},
		{"latest:-1", ""},
		{"latest:x", ""},
		{"all:2", ""},
		{"specific", ""},
		{"specific:", ""},
		{"specific:0", ""},
		{"specific:01", ""},
		{"specific:1,,2", ""},
		{"newest", ""},
		{"", ""},
	}
	for _, tt := range tests {
		p, err := ParsePolicy(tt.in)
		switch {
		case tt.want == "" && err == nil:
			t.Errorf("ParsePolicy(%q) = %s, want an error", tt.in, p)
		case tt.want != "" && err != nil:
			t.Errorf("ParsePolicy(%q): %v, want %s", tt.in, err, tt.want)
		case tt.want != "" && p.String() != tt.want:
			t.Errorf("ParsePolicy(%q) = %s, want %s", tt.in, p, tt.want)
		}
	}
	var zero Policy
	if zero.String() != "latest" {
		t.Errorf("zero Policy = %s, want latest", zero)
	}
}

func TestPolicySelect(t *testing.T) {
	tests := []struct {
		policy    string
		available []int64
		want      []int64
	}{
		{"latest", []int64{1, 2, 10}, []int64{10}},
		{"latest", nil, nil},
		{"latest:2", []int64{1, 2, 10}, []int64{2, 10}},
		{"latest:5", []int64{1, 2}, []int64{1, 2}},
		{"all", []int64{1, 3}, []int64{1, 3}},
		{"all", nil, nil},
		{"specific:1,3", []int64{1, 2, 3, 4}, []int64{1, 3}},
		{"specific:1,3", []int64{2, 3}, []int64{3}},
		{"specific:7", []int64{1, 2}, nil},
	}
	for _, tt := range tests {
		p, err := ParsePolicy(tt.policy)
		if err != nil {
			t.Fatal(err)
		}
		if got := p.Select(tt.available); !slices.Equal(got, tt.want) {
			t.Errorf("%s.Select(%v) = %v, want %v", tt.policy, tt.available, got, tt.want)
		}
	}
}

func TestParsePolicyFile(t *testing.T) {
	tests := []struct{ text, want string }{
		{"latest:2\n", "latest:2"},
		{"# serve two\n\n  all  # every one\n", "all"},
		{"specific:1,3\nlatest\n", "specific:1,3"},
		{"", ""},
		{"# nothing\n", ""},
		{"bogus\n", ""},
	}
	for _, tt := range tests {
		p, err := parsePolicyFile(tt.text)
		if tt.want == "" {
			if err == nil {
				t.Errorf("parsePolicyFile(%q) = %s, want an error", tt.text, p)
			}
			continue
		}
		if err != nil || p.String() != tt.want {
			t.Errorf("parsePolicyFile(%q) = %s, %v; want %s", tt.text, p, err, tt.want)
		}
	}
}

func TestParseVersion(t *testing.T) {
	for s, want := range map[string]int64{"1": 1, "42": 42, "0": 0, "01": 0, "-1": 0, "+1": 0, "1a": 0, "": 0, "99999999999999999999": 0} {
		v, ok := parseVersion(s)
		if ok != (want > 0) || v != want && ok {
			t.Errorf("parseVersion(%q) = %d, %v; want %d", s, v, ok, want)
		}
	}
}
