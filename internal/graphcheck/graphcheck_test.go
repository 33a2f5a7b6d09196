package graphcheck

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestAnyNonFinite(t *testing.T) {
	special := []uint32{
		0, 0x80000000, 1, 0x007fffff, 0x00800000, 0x3f800000, 0x7f7fffff, 0xff7fffff, // finite
		0x7f800000, 0xff800000, 0x7fc00000, 0x7f800001, 0xffffffff, // NaN and Inf
	}
	// Every special value at every position of rows long enough to use
	// both the 32-byte and the 4-byte loops.
	for _, n := range []int{1, 2, 7, 8, 9, 17} {
		for pos := range n {
			for _, x := range special {
				row := make([]byte, 4*n)
				for k := range n {
					binary.LittleEndian.PutUint32(row[4*k:], 0x3f800000) // 1.0
				}
				binary.LittleEndian.PutUint32(row[4*pos:], x)
				if got, want := AnyNonFinite(row), IsNonFinite(x); got != want {
					t.Errorf("%d values, %#08x at %d: got %v, want %v", n, x, pos, got, want)
				}
			}
		}
	}
}

// TestFirstNonFinite checks the index FirstNonFinite reports, on the
// word-at-a-time path and on the portable one, with a second bad value
// after the first.
func TestFirstNonFinite(t *testing.T) {
	for _, native := range []bool{true, false} {
		saved := nativeLittleEndian
		nativeLittleEndian = native && saved
		for _, n := range []int{0, 1, 7, 8, 9, 33} {
			f := make([]float32, n)
			for k := range f {
				f[k] = float32(k) - 3.5
			}
			if got := FirstNonFinite(f); got != -1 {
				t.Errorf("native %v, %d finite values: got %d, want -1", native, n, got)
			}
			for pos := range n {
				g := slices.Clone(f)
				g[pos] = float32(math.NaN())
				g[n-1] = float32(math.Inf(-1))
				if got := FirstNonFinite(g); got != pos {
					t.Errorf("native %v, %d values, NaN at %d: got %d, want %d", native, n, pos, got, pos)
				}
			}
		}
		nativeLittleEndian = saved
	}
}

// benchPayloads are graph sizes (as internal/graphwire's benchmarks).
var benchPayloads = []struct {
	name         string
	nodes, edges int
}{
	{name: "karate", nodes: 34, edges: 78},
	{name: "medium", nodes: 2708, edges: 10556},
	{name: "large", nodes: 100_000, edges: 500_000},
}

// syntheticIDs returns ids "n0", "n1", ... and edges between random ones,
// the ids graphwire.SyntheticGraph makes.
func syntheticIDs(nodes, edges int) ([]string, [][2]string) {
	r := rand.New(rand.NewPCG(1, 1))
	ids := make([]string, nodes)
	for i := range ids {
		ids[i] = "n" + strconv.Itoa(i)
	}
	es := make([][2]string, edges)
	for j := range es {
		es[j] = [2]string{ids[r.IntN(nodes)], ids[r.IntN(nodes)]}
	}
	return ids, es
}

// BenchmarkIDIndex is id mapping alone, the part of decoding that grows
// with edges: index every node id, then resolve both ends of every edge.
func BenchmarkIDIndex(b *testing.B) {
	for _, p := range benchPayloads {
		b.Run(p.name, func(b *testing.B) {
			ids, edges := syntheticIDs(p.nodes, p.edges)
			b.ReportAllocs()
			for b.Loop() {
				x := newIDIndex(make([]string, len(ids)))
				for i, id := range ids {
					x.ids[i] = id
					key, h := x.hash(id)
					if _, dup := x.insert(i, key, h); dup {
						b.Fatalf("duplicate %q", id)
					}
				}
				for _, e := range edges {
					if _, ok := x.lookup(e[0]); !ok {
						b.Fatal("missing source")
					}
					if _, ok := x.lookup(e[1]); !ok {
						b.Fatal("missing target")
					}
				}
			}
		})
	}
}

// sliceSource is a Source over plain slices.
type sliceSource struct {
	ids      []string
	features [][]float32
	ends     [][2]string
}

func (s sliceSource) NumNodes() int                  { return len(s.ids) }
func (s sliceSource) NumEdges() int                  { return len(s.ends) }
func (s sliceSource) Node(i int) (string, []float32) { return s.ids[i], s.features[i] }
func (s sliceSource) Edge(j int) (string, string)    { return s.ends[j][0], s.ends[j][1] }

// randomSource is a graph of n nodes, e edges and f features with ids of
// both kinds (short and long), in parts (n, e >= ParallelEdges) or not.
func randomSource(seed uint64, n, e, f int) sliceSource {
	r := rand.New(rand.NewPCG(seed, 1))
	s := sliceSource{ids: make([]string, n), features: make([][]float32, n), ends: make([][2]string, e)}
	for i := range n {
		s.ids[i] = "n" + strconv.Itoa(i)
		if i%5 == 0 {
			s.ids[i] = "a-much-longer-node-id-" + strconv.Itoa(i)
		}
		s.features[i] = make([]float32, f)
		for k := range f {
			s.features[i][k] = r.Float32()
		}
	}
	for j := range e {
		s.ends[j] = [2]string{s.ids[r.IntN(n)], s.ids[r.IntN(n)]}
	}
	return s
}

// TestFromSourceInReuse: graphs built one after another in the same
// Buffers (larger, smaller, one refused in between) are those FromSource
// builds in new memory, and Release drops the ids.
func TestFromSourceInReuse(t *testing.T) {
	var buf Buffers // fresh for the first, edgeless graph: its EdgeIndex must be empty, not nil
	bad := randomSource(9, 300, 500, 4)
	bad.ends[400][1] = "nope"
	for _, src := range []sliceSource{randomSource(4, 1, 0, 4), randomSource(1, 3*ParallelEdges, 5*ParallelEdges, 4),
		randomSource(2, 50, 120, 4), bad, randomSource(3, ParallelEdges+7, 2*ParallelEdges, 4)} {
		want, wantErr := FromSource(src, 4, Limits{})
		got, err := FromSourceIn(src, 4, Limits{}, &buf)
		if (err == nil) != (wantErr == nil) || err != nil && err.Error() != wantErr.Error() {
			t.Fatalf("%d nodes: error %v, want %v", len(src.ids), err, wantErr)
		}
		if len(src.ids) == 300 && (err == nil || !strings.Contains(err.Error(), `edge 400: target "nope"`)) {
			t.Fatalf("the graph with a bad edge: error %v, want edge 400's", err)
		}
		if err != nil {
			continue
		}
		if !slices.Equal(got.IDs, want.IDs) || !slices.Equal(got.Features, want.Features) || !slices.Equal(got.EdgeIndex, want.EdgeIndex) {
			t.Errorf("%d nodes, %d edges: the graph built in reused buffers differs", len(src.ids), len(src.ends))
		}
		if got.EdgeIndex == nil || got.IDs == nil {
			t.Errorf("%d nodes: nil IDs or EdgeIndex, want empty slices at worst", len(src.ids))
		}
		if buf.Bytes() == 0 {
			t.Errorf("%d nodes: Buffers hold 0 bytes after a graph", len(src.ids))
		}
		buf.Release()
		for i, id := range buf.ids[:cap(buf.ids)] {
			if id != "" {
				t.Fatalf("after Release: id %d is %q, want none kept", i, id)
			}
		}
	}
}
