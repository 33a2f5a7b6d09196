package graphwire

import (
	"fmt"
	"math"
	"slices"
	"strconv"

	"google.golang.org/protobuf/encoding/protowire"
)

// Predictions is the per-node model output that AppendResult encodes as
// GCNResult.predictions, one NodePrediction per node in request order.
type Predictions struct {
	// NumClasses is C, the length of each node's probability vector.
	NumClasses int
	// Probabilities is the len(ids) x C probability matrix, row-major.
	Probabilities []float32
	// ClassIndex is each node's predicted class.
	ClassIndex []int32
	// ClassNames names the classes: ClassNames[c] names class c. A class
	// index it does not cover is named by its decimal index.
	ClassNames []string
}

// Tags of the fields AppendResult writes: field number << 3 | wire type.
// Each fits in one byte.
const (
	tagResultScore      = 1<<3 | byte(protowire.BytesType)   // GCNResult.node_scores entry
	tagResultPrediction = 2<<3 | byte(protowire.BytesType)   // GCNResult.predictions
	tagEntryKey         = 1<<3 | byte(protowire.BytesType)   // map entry key
	tagEntryValue       = 2<<3 | byte(protowire.Fixed32Type) // map entry value (float)
	tagPredID           = 1<<3 | byte(protowire.BytesType)   // NodePrediction.id
	tagPredClassIndex   = 2<<3 | byte(protowire.VarintType)  // NodePrediction.class_index
	tagPredClassName    = 3<<3 | byte(protowire.BytesType)   // NodePrediction.class_name
	tagPredProbs        = 4<<3 | byte(protowire.BytesType)   // NodePrediction.probabilities, packed
)

// AppendResult appends the wire bytes of a GCNResult to dst and returns the
// extended slice: node_scores maps ids[i] to scores[i] for every i, and, when
// pred is not nil, predictions holds one NodePrediction per id in order. It
// grows dst at most once, to ResultSize(ids, pred) more bytes.
//
// Map entries are written in ids order, and fields holding proto3 default
// values are left out of each NodePrediction, as protobuf-go does. It panics
// if scores, or pred's slices, are shorter than ids needs: that is a bug in
// the caller, not bad input.
func AppendResult(dst []byte, ids []string, scores []float32, pred *Predictions) []byte {
	if len(scores) != len(ids) {
		panic(fmt.Sprintf("graphwire: AppendResult got %d scores for %d ids", len(scores), len(ids)))
	}
	dst = slices.Grow(dst, ResultSize(ids, pred))
	for i, id := range ids {
		dst = append(dst, tagResultScore)
		dst = protowire.AppendVarint(dst, uint64(scoreEntrySize(id)))
		dst = append(dst, tagEntryKey)
		dst = protowire.AppendString(dst, id)
		dst = append(dst, tagEntryValue)
		dst = protowire.AppendFixed32(dst, math.Float32bits(scores[i]))
	}
	if pred == nil {
		return dst
	}
	c := pred.NumClasses
	for i, id := range ids {
		dst = append(dst, tagResultPrediction)
		dst = protowire.AppendVarint(dst, uint64(pred.predictionSize(i, id)))
		if id != "" {
			dst = append(dst, tagPredID)
			dst = protowire.AppendString(dst, id)
		}
		class := pred.ClassIndex[i]
		if class != 0 {
			dst = append(dst, tagPredClassIndex)
			dst = protowire.AppendVarint(dst, uint64(int64(class))) // int32 sign-extends
		}
		if name, ok := pred.className(class); !ok {
			dst = append(dst, tagPredClassName)
			dst = protowire.AppendVarint(dst, uint64(decimalLen(class)))
			dst = strconv.AppendInt(dst, int64(class), 10)
		} else if name != "" {
			dst = append(dst, tagPredClassName)
			dst = protowire.AppendString(dst, name)
		}
		if c > 0 {
			dst = append(dst, tagPredProbs)
			dst = protowire.AppendVarint(dst, uint64(4*c))
			for _, p := range pred.Probabilities[i*c : (i+1)*c] {
				dst = protowire.AppendFixed32(dst, math.Float32bits(p))
			}
		}
	}
	return dst
}

// ResultSize returns the exact number of bytes AppendResult appends for ids
// and pred, so that callers can allocate the response once.
func ResultSize(ids []string, pred *Predictions) int {
	n := 0
	for _, id := range ids {
		n += 1 + protowire.SizeBytes(scoreEntrySize(id))
	}
	if pred == nil {
		return n
	}
	if len(pred.ClassIndex) < len(ids) || len(pred.Probabilities) < len(ids)*pred.NumClasses {
		panic(fmt.Sprintf("graphwire: Predictions for %d ids has %d class indexes and %d probabilities, want %d and %d",
			len(ids), len(pred.ClassIndex), len(pred.Probabilities), len(ids), len(ids)*pred.NumClasses))
	}
	for i, id := range ids {
		n += 1 + protowire.SizeBytes(pred.predictionSize(i, id))
	}
	return n
}

// scoreEntrySize is the size of one node_scores map entry's payload. Both
// key and value are written even when empty or zero, as protobuf-go writes
// map entries.
func scoreEntrySize(id string) int {
	return 1 + protowire.SizeBytes(len(id)) + 1 + 4
}

// predictionSize is the size of node i's NodePrediction payload.
func (p *Predictions) predictionSize(i int, id string) int {
	n := 0
	if id != "" {
		n += 1 + protowire.SizeBytes(len(id))
	}
	class := p.ClassIndex[i]
	if class != 0 {
		n += 1 + protowire.SizeVarint(uint64(int64(class)))
	}
	if name, ok := p.className(class); ok {
		if name != "" {
			n += 1 + protowire.SizeBytes(len(name))
		}
	} else {
		n += 1 + protowire.SizeBytes(decimalLen(class))
	}
	if p.NumClasses > 0 {
		n += 1 + protowire.SizeBytes(4*p.NumClasses)
	}
	return n
}

// className returns ClassNames[class], or false when ClassNames does not
// cover class and the name is its decimal index.
func (p *Predictions) className(class int32) (string, bool) {
	if class >= 0 && int(class) < len(p.ClassNames) {
		return p.ClassNames[class], true
	}
	return "", false
}

// decimalLen is len(strconv.Itoa(int(v))), without allocating.
func decimalLen(v int32) int {
	n := 1
	u := int64(v)
	if u < 0 {
		n++
		u = -u
	}
	for ; u >= 10; u /= 10 {
		n++
	}
	return n
}

// Tags of GCNResult.model_name and model_version.
const (
	tagResultModelName    = 3<<3 | byte(protowire.BytesType)
	tagResultModelVersion = 4<<3 | byte(protowire.BytesType)
)

// AppendModel appends GCNResult.model_name and model_version (fields left
// out when empty, as protobuf-go does). A message is the concatenation of
// its fields, so AppendResult then AppendModel is one GCNResult.
func AppendModel(dst []byte, name, version string) []byte {
	if name != "" {
		dst = append(dst, tagResultModelName)
		dst = protowire.AppendString(dst, name)
	}
	if version != "" {
		dst = append(dst, tagResultModelVersion)
		dst = protowire.AppendString(dst, version)
	}
	return dst
}

// ModelSize is the number of bytes AppendModel appends.
func ModelSize(name, version string) int {
	n := 0
	if name != "" {
		n += 1 + protowire.SizeBytes(len(name))
	}
	if version != "" {
		n += 1 + protowire.SizeBytes(len(version))
	}
	return n
}
