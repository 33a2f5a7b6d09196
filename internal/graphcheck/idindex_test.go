package graphcheck

import (
	"fmt"
	"strings"
	"testing"
)

// TestIDIndex checks lookups against a Go map on ids that stress the slot
// layout: lengths 0 to 20 around the 8 bytes a slot holds whole, ids that
// differ only in length or trailing zero bytes, long ids sharing their
// first 8 bytes, and UTF-8. It also packs the table with ids that all hash
// to nearby slots (a tiny table is not possible, so many ids do), and looks
// up ids that are absent.
func TestIDIndex(t *testing.T) {
	var ids []string
	seen := map[string]int32{}
	add := func(id string) {
		if _, ok := seen[id]; ok || id == "" {
			return
		}
		seen[id] = int32(len(ids))
		ids = append(ids, id)
	}
	for n := 1; n <= 20; n++ {
		add(strings.Repeat("a", n))
		add(strings.Repeat("\x00", n))
		add("prefix__" + strings.Repeat("z", n)) // same first 8 bytes
		add(strings.Repeat("é", n))
		for k := range 50 {
			add(fmt.Sprintf("%0*d", n, k))
		}
	}
	add("a\x00")
	add("\x00a")
	// Too long for the length field of an arena key: compared through ids.
	huge := strings.Repeat("h", maxArenaLen+5)
	add(huge)
	add(huge[:maxArenaLen+4] + "i")
	x := newIDIndex(make([]string, len(ids)))
	for i, id := range ids {
		x.ids[i] = id
		key, h := x.hash(id)
		if j, dup := x.insert(i, key, h); dup {
			t.Fatalf("insert %q (node %d): duplicate of node %d (%q)", id, i, j, ids[j])
		}
	}
	for i, id := range ids {
		key, h := x.hash(id)
		if j, dup := x.insert(i, key, h); !dup || int(j) != i {
			t.Errorf("second insert of %q: got (%d, %v), want (%d, true)", id, j, dup, i)
		}
	}
	absent := []string{huge[:maxArenaLen+4] + "j", huge[:maxArenaLen], "", "b", "aa\x00", "\x00\x00a", "prefix__", "prefix__zz\x00", strings.Repeat("a", 21), "00000000000000000000050"}
	for _, id := range append(absent, ids...) {
		want, wantOK := seen[id]
		got, ok := x.lookup(id)
		if ok != wantOK || (ok && got != want) {
			t.Errorf("lookup(%q) = %d, %v; want %d, %v", id, got, ok, want, wantOK)
		}
	}
	// lookupAll reports the first absent id.
	batch := []string{ids[3], ids[len(ids)-1], "b", ids[0]}
	out := make([]int32, len(batch))
	keys, hashes := make([]uint64, len(batch)), make([]uint64, len(batch))
	if got := x.lookupAll(batch, out, keys, hashes, make([]int32, len(batch))); got != 2 || out[0] != 3 || out[1] != int32(len(ids)-1) {
		t.Errorf("lookupAll: first missing %d, out %v; want 2, [3 %d ...]", got, out[:2], len(ids)-1)
	}
}

// TestShortKey checks that ids of the same length up to 8 bytes have equal
// keys exactly when they are equal, including ids made only of zero
// bytes, whose key is zero.
func TestShortKey(t *testing.T) {
	for n := 1; n <= maxShortID; n++ {
		keys := map[uint64]string{}
		// Every id of length n over a 3-letter alphabet that includes 0.
		total := 1
		for range n {
			total *= 3
		}
		for v := range total {
			b := make([]byte, n)
			for k, r := 0, v; k < n; k, r = k+1, r/3 {
				b[k] = "\x00a\xff"[r%3]
			}
			id := string(b)
			key := shortKey(id)
			if other, ok := keys[key]; ok {
				t.Fatalf("length %d: %q and %q share key %#x", n, id, other, key)
			}
			keys[key] = id
		}
	}
}

// TestFromSourceInParts checks that FromSource gives the error of the
// first failing node or edge in order when the graph is split into parts
// (big enough for Parts to split it on two or more cores), whichever part
// the failure is in and whatever fails later.
func TestFromSourceInParts(t *testing.T) {
	const nodes, edges = 3 * minPart, 3 * minPart
	base := func() *testSource {
		s := &testSource{}
		for i := range nodes {
			s.ids = append(s.ids, fmt.Sprintf("node-%d-long-enough", i%7)+fmt.Sprint(i))
			s.features = append(s.features, []float32{1, 2})
		}
		for j := range edges {
			s.edges = append(s.edges, [2]string{s.ids[(j*7)%nodes], s.ids[(j*13)%nodes]})
		}
		return s
	}
	tests := []struct {
		name   string
		break_ func(s *testSource)
		want   string
	}{
		{"duplicate across parts", func(s *testSource) { s.ids[nodes-1] = s.ids[5] },
			fmt.Sprintf(`node %d: duplicate id "node-5-long-enough5" (also node 5)`, nodes-1)},
		{"duplicate before a bad count", func(s *testSource) {
			s.ids[nodes-10] = s.ids[nodes/2]
			s.features[nodes-5] = []float32{1}
		}, fmt.Sprintf(`node %d: duplicate id %q (also node %d)`, nodes-10, fmt.Sprintf("node-%d-long-enough%d", (nodes/2)%7, nodes/2), nodes/2)},
		{"bad count before a duplicate", func(s *testSource) {
			s.features[nodes/2+3] = []float32{1}
			s.ids[nodes-2] = s.ids[1]
		}, fmt.Sprintf(`node %d (%q): 1 features, model wants 2`, nodes/2+3, fmt.Sprintf("node-%d-long-enough%d", (nodes/2+3)%7, nodes/2+3))},
		{"duplicate with a bad count too", func(s *testSource) {
			s.ids[nodes-3] = s.ids[2]
			s.features[nodes-3] = []float32{1}
		}, fmt.Sprintf(`node %d: duplicate id "node-2-long-enough2" (also node 2)`, nodes-3)},
		{"empty id", func(s *testSource) { s.ids[nodes-4] = "" }, fmt.Sprintf(`node %d: empty id`, nodes-4)},
		{"unknown endpoints in two parts", func(s *testSource) {
			s.edges[edges-1][0] = "nowhere"
			s.edges[edges/2+1][1] = "nowhere either"
		}, fmt.Sprintf(`edge %d: target "nowhere either" is not a node id`, edges/2+1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := base()
			tt.break_(s)
			_, err := FromSource(s, 2, Limits{})
			if err == nil || err.Error() != tt.want {
				t.Errorf("got %v, want %q", err, tt.want)
			}
		})
	}
	g, err := FromSource(base(), 2, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	for j := range edges {
		if s, d := g.EdgeIndex[j], g.EdgeIndex[edges+j]; s != int64((j*7)%nodes) || d != int64((j*13)%nodes) {
			t.Fatalf("edge %d: got %d -> %d, want %d -> %d", j, s, d, (j*7)%nodes, (j*13)%nodes)
		}
	}
}

type testSource struct {
	ids      []string
	features [][]float32
	edges    [][2]string
}

func (s *testSource) NumNodes() int                  { return len(s.ids) }
func (s *testSource) NumEdges() int                  { return len(s.edges) }
func (s *testSource) Node(i int) (string, []float32) { return s.ids[i], s.features[i] }
func (s *testSource) Edge(j int) (string, string)    { return s.edges[j][0], s.edges[j][1] }

// TestPartPanicReachesCaller: a part that panics on its own goroutine has
// its panic raised again on the caller's, where a server's recovery can
// catch it, after every part has finished.
func TestPartPanicReachesCaller(t *testing.T) {
	ids := make([]string, 3*minPart)
	v := NewValidator(1, ids)
	finished := make([]bool, 3)
	var got any
	func() {
		defer func() { got = recover() }()
		_ = IndexNodes(&v, []int{0, minPart, 2 * minPart}, func(part, from, to int) *NodeFault {
			defer func() { finished[part] = true }()
			if part == 1 {
				panic("part one breaks")
			}
			for i := from; i < to; i++ {
				ids[i] = fmt.Sprint(i)
			}
			return nil
		})
	}()
	msg, _ := got.(string)
	if !strings.Contains(msg, "graphcheck: part 1 panicked: part one breaks") {
		t.Errorf("recovered %v, want part 1's panic", got)
	}
	if !(finished[0] && finished[1] && finished[2]) {
		t.Errorf("parts finished: %v, want all before the panic reached the caller", finished)
	}
}

// TestIDTagNeverEmpty: a tag is never 0, an empty slot's, whatever the
// hash and length (an empty id whose hash bits are 0 included).
func TestIDTagNeverEmpty(t *testing.T) {
	for _, h := range []uint64{0, 0xff, 0xffffff00, ^uint64(0)} {
		for _, n := range []int{0, 1, 8, 255, 1000} {
			if idTag(h, n) == 0 {
				t.Errorf("idTag(%#x, %d) = 0", h, n)
			}
		}
	}
}
