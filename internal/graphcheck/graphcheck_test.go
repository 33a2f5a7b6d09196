package graphcheck

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
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
