package auth

import (
	"strings"
	"testing"
)

// FuzzParseTokenFile: any bytes either parse into tokens that the bearer
// parser gives back unchanged, or fail without showing their content.
func FuzzParseTokenFile(f *testing.F) {
	for _, s := range []string{"tok\n", "# c\n\n a \n", "a b\n", "x\r\ny", "\x00", "#\n#\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		tokens, err := ParseTokenFile(data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "line ") && !strings.Contains(err.Error(), "too long") {
				t.Fatalf("error %q does not name a line", err)
			}
			return
		}
		for _, tok := range tokens {
			if tok == "" || tok[0] == '#' {
				t.Fatalf("token %q: empty or a comment", tok)
			}
			got, ok := ParseBearer("Bearer " + tok)
			if !ok || got != tok {
				t.Fatalf("ParseBearer(Bearer %q) = %q, %v", tok, got, ok)
			}
		}
	})
}

// FuzzParseBearer: a header value either gives a token of printable ASCII
// found in it, or is refused; nothing panics.
func FuzzParseBearer(f *testing.F) {
	for _, s := range []string{"Bearer abc", "bearer\tx", "Bearer", "Basic abc", "Bearer a b", "BEARER  =="} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, value string) {
		tok, ok := ParseBearer(value)
		if !ok {
			if tok != "" {
				t.Fatalf("refused with token %q", tok)
			}
			return
		}
		if tok == "" || !validToken(tok) || !strings.Contains(value, tok) {
			t.Fatalf("ParseBearer(%q) = %q", value, tok)
		}
		if !strings.EqualFold(value[:6], "bearer") {
			t.Fatalf("accepted %q without the Bearer scheme", value)
		}
	})
}
