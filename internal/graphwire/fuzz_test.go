package graphwire

import (
	"encoding/binary"
	"math"
	"strings"
	"testing"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	gcnpb "github.com/gcnserve/gcnserve/gen"
	"github.com/gcnserve/gcnserve/internal/gcnerr"
)

// fuzzFeatureDim is small so that random bytes can make valid nodes;
// fuzzWideFeatureDim makes rows long enough (36 bytes) for the word-at-a-time
// NaN scan.
const (
	fuzzFeatureDim     = 3
	fuzzWideFeatureDim = 9
)

// decodeSeeds are inputs FuzzDecode starts from, besides the committed
// corpus in testdata/fuzz/FuzzDecode.
func decodeSeeds() [][]byte {
	n := func(id string) wire { return node(id, 1, 2, 3) }
	valid := graphOf([]wire{n("n0"), n("n1"), n("n2")}, []wire{edge("n0", "n1"), edge("n2", "n0")})
	return [][]byte{
		nil,
		valid,
		valid.varint(3, 1),
		valid[:len(valid)-3],
		graphOf(nil, []wire{edge("a", "b")}).msg(1, n("a")).msg(1, n("b")),
		wire(nil).msg(1, wire(nil).str(1, "a").unpacked(2, 1, 2).packed(2, 3)),
		wire(nil).group(11, wire(nil).varint(1, 1)).msg(1, wire(nil).fixed64(9, 1).str(1, "a").packed(2, 1, 2, 3)).str(12, "x"),
		wire(nil).varint(1, 1).msg(1, wire(nil).varint(1, 1).str(1, "a").varint(2, 1).packed(2, 1, 2, 3)),
		graphOf([]wire{n("a"), n("a")}, nil),
		graphOf([]wire{node("a", 1, float32(math.NaN()), 3)}, nil),
		graphOf([]wire{node("a", 1, 2)}, nil),
		graphOf([]wire{n("\xff")}, nil),
		graphOf([]wire{n("a")}, []wire{edge("a", "z")}),
		wire(nil).raw(0x0a, 0x05, 0x0a),
		wire(nil).tag(5, protowire.StartGroupType).tag(6, protowire.EndGroupType),
		graphOf([]wire{node("w", 1, 2, 3, 4, 5, 6, 7, float32(math.Inf(1)), 9)}, nil),
		valid.str(4, "karate").str(5, "2"),
		valid.str(4, "\xff"),
		valid.str(5, "x").str(4, "a").str(4, "b"),
		// Ids over 8 bytes (kept in the id index's arena), sharing a prefix.
		graphOf([]wire{n("a-long-node-id-0"), n("a-long-node-id-1")},
			[]wire{edge("a-long-node-id-0", "a-long-node-id-1"), edge("a-long-node-id-1", "a-long-node-id-2")}),
		// Non-ASCII ids: edges leave the canonical fast path.
		graphOf([]wire{n("é"), n("ü")}, []wire{edge("é", "ü"), edge("ü", "e")}),
	}
}

// FuzzDecodeRouted checks model routing on arbitrary bytes: the resolver
// sees exactly the model name and version the generated decoder reads (the
// last of each, valid UTF-8), its error comes back unchanged, and a known
// name decodes as Decode does.
func FuzzDecodeRouted(f *testing.F) {
	for _, s := range decodeSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var m gcnpb.GraphData
		refErr := proto.Unmarshal(b, &m)
		var gotName, gotVersion string
		calls := 0
		notFound := gcnerr.New(gcnerr.NotFound, "no such model")
		_, err := DecodeRouted(b, func(name, version string) (int, error) {
			calls++
			gotName, gotVersion = name, version
			if name == "b" {
				return 0, notFound
			}
			return fuzzFeatureDim, nil
		}, Limits{})
		if refErr != nil {
			if err == nil {
				t.Fatalf("proto.Unmarshal failed (%v) but DecodeRouted accepted", refErr)
			}
			return
		}
		if calls == 1 && (gotName != m.GetModelName() || gotVersion != m.GetModelVersion()) {
			t.Fatalf("resolver saw %q/%q, the message holds %q/%q", gotName, gotVersion, m.GetModelName(), m.GetModelVersion())
		}
		if m.GetModelName() == "b" && err != notFound {
			t.Fatalf("resolver's error not returned as is: %v", err)
		}
		if m.GetModelName() != "b" {
			_, want := Decode(b, fuzzFeatureDim, Limits{})
			if (err == nil) != (want == nil) || (err != nil && err.Error() != want.Error()) {
				t.Fatalf("DecodeRouted: %v, Decode: %v", err, want)
			}
		}
	})
}

// FuzzDecode holds Decode to the reference on arbitrary bytes: it must not
// panic, must reject what proto.Unmarshal rejects, and must otherwise agree
// with FromMessage exactly (checkAgainstReference), with and without
// limits.
func FuzzDecode(f *testing.F) {
	for _, s := range decodeSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkAgainstReference(t, b, fuzzFeatureDim, Limits{})
		checkAgainstReference(t, b, fuzzFeatureDim, Limits{MaxNodes: 3, MaxEdges: 3})
		checkAgainstReference(t, b, fuzzWideFeatureDim, Limits{})
	})
}

// FuzzAppendResult checks that arbitrary ids, scores and predictions
// round-trip through proto.Unmarshal and that ResultSize is exact. ids are
// split from idList on '\n', class names from names on '\n'; the floats and
// class indexes come from numbers.
func FuzzAppendResult(f *testing.F) {
	f.Add("a\nb\nc", "x\ny", []byte{1, 2, 3, 4, 5, 6, 7, 8}, uint8(2), true)
	f.Add("", "", []byte{}, uint8(0), false)
	f.Add(strings.Repeat("long", 40), "", []byte{0xff, 0xff, 0xff, 0xff}, uint8(5), true)
	f.Fuzz(func(t *testing.T, idList, names string, numbers []byte, numClasses uint8, withPred bool) {
		if !utf8.ValidString(idList) || !utf8.ValidString(names) {
			t.Skip("proto3 strings are UTF-8; ids come from a validated request")
		}
		ids := strings.Split(idList, "\n")
		seen := make(map[string]bool, len(ids))
		for _, id := range ids {
			if seen[id] {
				t.Skip("ids come from a validated request and are unique")
			}
			seen[id] = true
		}
		// next returns the next 4 bytes of numbers, cycling.
		pos := 0
		next := func() uint32 {
			if len(numbers) == 0 {
				return 0
			}
			var w [4]byte
			for k := range w {
				w[k] = numbers[pos%len(numbers)]
				pos++
			}
			return binary.LittleEndian.Uint32(w[:])
		}
		scores := make([]float32, len(ids))
		for i := range scores {
			scores[i] = math.Float32frombits(next())
		}
		var pred *Predictions
		if withPred {
			c := int(numClasses % 8)
			pred = &Predictions{NumClasses: c, Probabilities: make([]float32, c*len(ids)), ClassIndex: make([]int32, len(ids))}
			if names != "" {
				pred.ClassNames = strings.Split(names, "\n")
			}
			for i := range pred.Probabilities {
				pred.Probabilities[i] = math.Float32frombits(next())
			}
			for i := range pred.ClassIndex {
				pred.ClassIndex[i] = int32(next()) % 10
			}
		}
		out := AppendResult(nil, ids, scores, pred)
		if got, want := len(out), ResultSize(ids, pred); got != want {
			t.Fatalf("AppendResult wrote %d bytes, ResultSize said %d", got, want)
		}
		checkResult(t, out, ids, scores, pred)
	})
}
