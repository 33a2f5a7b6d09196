package main

import (
	"math/rand/v2"
	"testing"
)

// TestRemoveEdge checks the harness's O(1) edge removal: after random
// inserts and deletes every edge sits where it says in both endpoints'
// lists, every listed entry names its edge, and the lists hold exactly the
// edges (duplicates included).
func TestRemoveEdge(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	g := newGraph(rng, 200, 1500, 2, gamma)
	for step := range 20_000 {
		if rng.IntN(2) == 0 {
			u, v := g.draw(rng), g.draw(rng)
			for u == v {
				v = g.draw(rng)
			}
			g.addEdge(u, v)
		} else {
			want := g.edges[rng.IntN(len(g.edges))]
			i := 0
			for g.edges[i] != want {
				i++
			}
			if u, v := g.removeEdge(i); u != want.u || v != want.v {
				t.Fatalf("step %d: removeEdge(%d) = %d-%d, want %d-%d", step, i, u, v, want.u, want.v)
			}
		}
		if step%997 != 0 {
			continue
		}
		listed := 0
		for x, a := range g.adj {
			listed += len(a)
			for j, y := range a {
				e := g.edges[g.adjEdge[x][j]]
				at := e.pv
				if e.u == int32(x) {
					at = e.pu
				}
				if at != int32(j) || (e.u != int32(x) && e.v != int32(x)) || (e.u != y && e.v != y) {
					t.Fatalf("step %d: adj[%d][%d] = %d names edge %+v", step, x, j, y, e)
				}
			}
		}
		if listed != 2*len(g.edges) {
			t.Fatalf("step %d: %d entries listed, want 2 x %d edges", step, listed, len(g.edges))
		}
	}
}
