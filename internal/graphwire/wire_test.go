package graphwire

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"slices"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	gcnpb "github.com/gcnserve/gcnserve/gen"
	"github.com/gcnserve/gcnserve/internal/bufpool"
	"github.com/gcnserve/gcnserve/internal/gcnerr"
)

// wire builds protobuf bytes field by field, for encodings proto.Marshal
// never produces (unpacked features, fields out of order, unknown fields,
// broken bytes).
type wire []byte

func (w wire) tag(num protowire.Number, typ protowire.Type) wire {
	return protowire.AppendTag(w, num, typ)
}

func (w wire) str(num protowire.Number, s string) wire {
	return protowire.AppendString(w.tag(num, protowire.BytesType), s)
}

func (w wire) msg(num protowire.Number, m wire) wire {
	return protowire.AppendBytes(w.tag(num, protowire.BytesType), m)
}

func (w wire) varint(num protowire.Number, v uint64) wire {
	return protowire.AppendVarint(w.tag(num, protowire.VarintType), v)
}

func (w wire) fixed32(num protowire.Number, v uint32) wire {
	return protowire.AppendFixed32(w.tag(num, protowire.Fixed32Type), v)
}

func (w wire) fixed64(num protowire.Number, v uint64) wire {
	return protowire.AppendFixed64(w.tag(num, protowire.Fixed64Type), v)
}

// packed appends one packed chunk of floats.
func (w wire) packed(num protowire.Number, fs ...float32) wire {
	var p []byte
	for _, f := range fs {
		p = protowire.AppendFixed32(p, math.Float32bits(f))
	}
	return protowire.AppendBytes(w.tag(num, protowire.BytesType), p)
}

// unpacked appends one fixed32 field per float.
func (w wire) unpacked(num protowire.Number, fs ...float32) wire {
	for _, f := range fs {
		w = w.fixed32(num, math.Float32bits(f))
	}
	return w
}

// group appends a group holding inner under field num.
func (w wire) group(num protowire.Number, inner wire) wire {
	w = append(w.tag(num, protowire.StartGroupType), inner...)
	return w.tag(num, protowire.EndGroupType)
}

func (w wire) raw(b ...byte) wire { return append(w, b...) }

// node is a Node with id and features packed in one chunk.
func node(id string, fs ...float32) wire {
	return wire(nil).str(1, id).packed(2, fs...)
}

func edge(source, target string) wire {
	return wire(nil).str(1, source).str(2, target)
}

// graphOf is a GraphData holding the given nodes, then the given edges.
func graphOf(nodes []wire, edges []wire) wire {
	var w wire
	for _, n := range nodes {
		w = w.msg(1, n)
	}
	for _, e := range edges {
		w = w.msg(2, e)
	}
	return w
}

// errKind names the kind of err for comparisons and messages.
func errKind(err error) string {
	var e *gcnerr.Error
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &e) && e.Kind == gcnerr.InvalidArgument:
		return "invalid"
	case errors.As(err, &e) && e.Kind == gcnerr.TooLarge:
		return "limit"
	default:
		return "other"
	}
}

// diffGraph describes how got differs from want, or returns "". Features
// are compared bit for bit, and nil equals empty.
func diffGraph(got, want *Graph) string {
	switch {
	case !slices.Equal(got.IDs, want.IDs):
		return fmt.Sprintf("IDs: got %q, want %q", got.IDs, want.IDs)
	case !slices.EqualFunc(got.Features, want.Features, func(a, b float32) bool {
		return math.Float32bits(a) == math.Float32bits(b)
	}):
		return fmt.Sprintf("Features: got %v, want %v", got.Features, want.Features)
	case !slices.Equal(got.EdgeIndex, want.EdgeIndex):
		return fmt.Sprintf("EdgeIndex: got %v, want %v", got.EdgeIndex, want.EdgeIndex)
	case got.IncludePredictions != want.IncludePredictions:
		return fmt.Sprintf("IncludePredictions: got %v, want %v", got.IncludePredictions, want.IncludePredictions)
	case got.ModelName != want.ModelName || got.ModelVersion != want.ModelVersion:
		return fmt.Sprintf("model: got %q/%q, want %q/%q", got.ModelName, got.ModelVersion, want.ModelName, want.ModelVersion)
	}
	return ""
}

// testPool pools every tensor, however small, so that every reference
// check also decodes into mapped memory an earlier check left dirty.
var testPool = bufpool.New(bufpool.Options{MinBytes: 1, MaxIdleBytes: 1 << 20})

// checkAgainstReference holds Decode to the reference on b: when
// proto.Unmarshal rejects b, Decode must return an *InvalidError; when it
// accepts b, Decode and FromMessage of the unmarshaled message must return
// equal graphs, or errors of the same kind with the same message. It
// returns Decode's results.
func checkAgainstReference(t *testing.T, b []byte, featureDim int, lim Limits) (*Graph, error) {
	t.Helper()
	orig := bytes.Clone(b)
	got, err := Decode(b, featureDim, lim)
	if !bytes.Equal(b, orig) {
		t.Fatalf("Decode changed its input")
	}
	if (got == nil) == (err == nil) {
		t.Fatalf("Decode returned graph %v and error %v, want exactly one", got, err)
	}
	// Big requests decode in parts: split this one as finely as possible,
	// and in threes, and want the same answer.
	for _, per := range []int{1, 3} {
		split, serr := decode(b, Fixed(featureDim), lim, func(n int) int { return min(maxParts, max(1, n/per)) }, nil)
		switch {
		case (err == nil) != (serr == nil) || (err != nil && err.Error() != serr.Error()):
			t.Fatalf("Decode in parts of %d: error %v, in one part: %v", per, serr, err)
		case err == nil && diffGraph(split, got) != "":
			t.Fatalf("Decode in parts of %d differs from one part: %s", per, diffGraph(split, got))
		}
	}
	// And into pooled memory that still holds an earlier input's values
	// (testPool keeps it from check to check).
	pooled, perr := DecodePooled(b, Fixed(featureDim), lim, func() *bufpool.Pool { return testPool })
	switch {
	case (err == nil) != (perr == nil) || (err != nil && err.Error() != perr.Error()):
		t.Fatalf("DecodePooled: error %v, Decode: %v", perr, err)
	case err == nil && diffGraph(pooled, got) != "":
		t.Fatalf("DecodePooled differs from Decode: %s", diffGraph(pooled, got))
	}
	Recycle(pooled, testPool)
	var m gcnpb.GraphData
	if uerr := proto.Unmarshal(b, &m); uerr != nil {
		if errKind(err) != "invalid" {
			t.Fatalf("proto.Unmarshal failed (%v) but Decode returned error %v (kind %s), want an InvalidError", uerr, err, errKind(err))
		}
		return got, err
	}
	want, werr := FromMessage(&m, featureDim, lim)
	if errKind(err) != errKind(werr) {
		t.Fatalf("Decode error %v (kind %s), FromMessage error %v (kind %s): want the same kind", err, errKind(err), werr, errKind(werr))
	}
	if err != nil {
		if err.Error() != werr.Error() {
			t.Fatalf("Decode error %q, FromMessage error %q: want the same message", err, werr)
		}
		return got, err
	}
	if d := diffGraph(got, want); d != "" {
		t.Fatalf("Decode and FromMessage disagree: %s", d)
	}
	return got, err
}
