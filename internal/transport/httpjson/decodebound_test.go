package httpjson

import (
	"strconv"
	"strings"
	"testing"

	"github.com/gcnserve/gcnserve/internal/graphwire"
	"github.com/gcnserve/gcnserve/internal/testenv"
	"github.com/gcnserve/gcnserve/internal/transport/httpx"
)

// amplifyingGraphs are /v1/process-graph bodies built so that each byte
// becomes as much memory as it can: empty nodes ("{}," is a whole Node),
// short ids, 2-byte features, short edges, long ids; n sets their size.
func amplifyingGraphs(n int) map[string]struct {
	body       string
	featureDim int
} {
	rep := func(s string, k int) string { return strings.TrimSuffix(strings.Repeat(s, k), ",") }
	ids := func(k int) string {
		var b strings.Builder
		for i := range k {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(`{"id":"`)
			b.WriteString(strings.Repeat("a", 1+i%3))
			b.WriteString(strconv.Itoa(i))
			b.WriteString(`"}`)
		}
		return b.String()
	}
	edges := func(k, nodes int) string {
		var b strings.Builder
		for i := range k {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(`{"sourceId":"a`)
			b.WriteString(strconv.Itoa(0))
			b.WriteString(`","targetId":"a`)
			b.WriteString(strconv.Itoa(i % nodes))
			b.WriteString(`"}`)
		}
		return b.String()
	}
	return map[string]struct {
		body       string
		featureDim int
	}{
		"empty nodes":     {`{"nodes":[` + rep("{},", n) + `]}`, 0},
		"id-only nodes":   {`{"nodes":[` + ids(n) + `]}`, 0},
		"zero features":   {`{"nodes":[{"id":"a","features":[` + rep("0,", n) + `]}]}`, n},
		"many edges":      {`{"nodes":[{"id":"a0"}],"edges":[` + edges(n, 1) + `]}`, 0},
		"empty edges":     {`{"nodes":[{"id":"a0"}],"edges":[` + rep("{},", n) + `]}`, 0},
		"short rows":      {`{"nodes":[` + rep(`{"id":"x","features":[0]},`, n) + `]}`, 1},
		"escaped ids":     {`{"nodes":[{"id":"` + strings.Repeat(`\u00e9`, n) + `"}]}`, 0},
		"long ids":        {`{"nodes":[{"id":"` + strings.Repeat("a", 8*n) + `"}]}`, 0},
		"model name only": {`{"modelName":"` + strings.Repeat("m", 8*n) + `","modelVersion":"1"}`, 0},
	}
}

// TestGraphBytesBoundsDecoding: GraphBytes, computed from the body's
// tokens before decoding, bounds all the memory protojson and graphwire
// allocate for the body, on bodies built to amplify (issue 16, defect 4:
// 5 x 58.7 MB bodies used to peak at 3.6 GB while admission counted
// 942 MB).
func TestGraphBytesBoundsDecoding(t *testing.T) {
	for name, c := range amplifyingGraphs(20000) {
		t.Run(name, func(t *testing.T) {
			body := []byte(c.body)
			bound := httpx.CountJSON(body).GraphBytes()
			var err error
			got := testenv.Allocated(func() {
				m, uerr := unmarshalGraph(body)
				if uerr != nil {
					err = uerr
					return
				}
				_, err = graphwire.FromMessage(m, c.featureDim, graphwire.Limits{})
			})
			// Body bytes themselves are part of the bound (they are held).
			got += int64(len(body))
			t.Logf("%d-byte body: allocated %d (%.1fx), bound %d (%.1fx), decode err %v",
				len(body), got, float64(got)/float64(len(body)), bound, float64(bound)/float64(len(body)), err)
			if got > bound {
				t.Errorf("decoding allocated %d bytes, more than the bound %d", got, bound)
			}
		})
	}
}
