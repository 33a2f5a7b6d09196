package oip

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"strconv"
	"strings"
)

// Datatype names of the protocol's tensor data types that the mapping uses.
const (
	typeFP32  = "FP32"
	typeINT32 = "INT32"
	typeINT64 = "INT64"
)

// inputTensor is one decoded request input: its declared name, datatype and
// shape, and its elements in fp32 (FP32) or ints (INT32 and INT64, widened).
type inputTensor struct {
	name, datatype string
	shape          []int64
	fp32           []float32
	ints           []int64
}

// outputTensor is one response output: fp32 for FP32, i64 for INT64.
type outputTensor struct {
	name, datatype string
	shape          []int64
	fp32           []float32
	i64            []int64
}

// outputNames are the outputs a model gives, in the order a response lists
// them when the request names none.
var outputNames = []string{OutputScores, OutputProbabilities, OutputPredictions}

// maxElements bounds one tensor's declared element count before any data is
// looked at, so that shape arithmetic cannot overflow.
const maxElements = 1 << 40

// elementCount returns the number of elements shape declares.
func elementCount(name string, shape []int64) (int, error) {
	n := int64(1)
	for _, d := range shape {
		if d < 0 {
			return 0, invalidf("input %q: shape %s has a negative dimension", name, formatShape(shape))
		}
		if d > 0 && n > maxElements/d {
			return 0, invalidf("input %q: shape %s has too many elements", name, formatShape(shape))
		}
		n *= d
	}
	return int(n), nil
}

// formatShape writes a shape as the protocol's JSON does: [2, 78].
func formatShape(shape []int64) string {
	var b strings.Builder
	b.WriteByte('[')
	for i, d := range shape {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.FormatInt(d, 10))
	}
	b.WriteByte(']')
	return b.String()
}

// elementSize is the byte size of one element of datatype in raw form, 0 for
// datatypes the mapping never takes.
func elementSize(datatype string) int {
	switch datatype {
	case typeFP32, typeINT32:
		return 4
	case typeINT64:
		return 8
	}
	return 0
}

// checkDatatype rejects datatypes no input takes, before any data is read.
func checkDatatype(name, datatype string) error {
	if elementSize(datatype) == 0 {
		return invalidf("input %q: datatype %q is not one this model takes (x: FP32, edge_index: INT64 or INT32)", name, datatype)
	}
	return nil
}

// decodeRaw decodes one input's raw little-endian bytes.
func decodeRaw(t *inputTensor, raw []byte) error {
	if err := checkDatatype(t.name, t.datatype); err != nil {
		return err
	}
	n, err := elementCount(t.name, t.shape)
	if err != nil {
		return err
	}
	size := elementSize(t.datatype)
	if int64(len(raw)) != int64(n)*int64(size) {
		return invalidf("input %q: raw contents have %d bytes; shape %s of %s needs %d",
			t.name, len(raw), formatShape(t.shape), t.datatype, int64(n)*int64(size))
	}
	switch t.datatype {
	case typeFP32:
		t.fp32 = make([]float32, n)
		for i := range t.fp32 {
			t.fp32[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		}
	case typeINT32:
		t.ints = make([]int64, n)
		for i := range t.ints {
			t.ints[i] = int64(int32(binary.LittleEndian.Uint32(raw[4*i:])))
		}
	case typeINT64:
		t.ints = make([]int64, n)
		for i := range t.ints {
			t.ints[i] = int64(binary.LittleEndian.Uint64(raw[8*i:]))
		}
	}
	return nil
}

// decodeJSONData decodes one REST input's "data": a JSON array, flat or
// nested, of numbers.
func decodeJSONData(t *inputTensor, data json.RawMessage) error {
	if err := checkDatatype(t.name, t.datatype); err != nil {
		return err
	}
	n, err := elementCount(t.name, t.shape)
	if err != nil {
		return err
	}
	// Every element takes at least one byte of JSON: a shape that claims
	// more elements than the data has bytes cannot match, and is refused
	// before anything is allocated for it.
	if n > len(data) {
		return invalidf("input %q: shape %s needs %d elements, data has fewer", t.name, formatShape(t.shape), n)
	}
	switch t.datatype {
	case typeFP32:
		t.fp32, err = parseFloat32Data(data, t.shape, n)
	default:
		t.ints, err = parseIntData(data, t.shape, n, t.datatype == typeINT32)
	}
	if err != nil {
		return invalidf("input %q: data: %v", t.name, err)
	}
	if got := max(len(t.fp32), len(t.ints)); got != n {
		return invalidf("input %q: shape %s needs %d elements, data has %d", t.name, formatShape(t.shape), n, got)
	}
	return nil
}

// checkCount verifies that typed contents hold exactly the elements the
// shape declares.
func checkCount(t *inputTensor, got int, field string) error {
	n, err := elementCount(t.name, t.shape)
	if err != nil {
		return err
	}
	if got != n {
		return invalidf("input %q: shape %s needs %d elements, contents.%s has %d", t.name, formatShape(t.shape), n, field, got)
	}
	return nil
}

// buildTensors checks the decoded inputs' names, datatypes and shapes
// against the model and returns the model's input. Every message names the
// offending tensor. The values (finite features, node indices in range)
// are the model's contract: gcn.Model.Predict checks them, as it does for
// ProcessGraph, and its messages name the tensor and the entry.
func buildTensors(info Info, inputs []inputTensor) (Tensors, error) {
	var x, edges *inputTensor
	for i := range inputs {
		in := &inputs[i]
		switch in.name {
		case InputFeatures:
			if x != nil {
				return Tensors{}, invalidf("input %q given twice", in.name)
			}
			x = in
		case InputEdgeIndex:
			if edges != nil {
				return Tensors{}, invalidf("input %q given twice", in.name)
			}
			edges = in
		case InputEdgeWeight:
			return Tensors{}, invalidf("input %q: this model takes no edge weights (inputs: x, edge_index); every listed edge counts once", in.name)
		default:
			return Tensors{}, invalidf("unknown input %q: the model takes x (FP32 [N, %d]) and edge_index (INT64 or INT32 [2, E])", in.name, info.FeatureDim)
		}
	}
	if x == nil {
		return Tensors{}, invalidf("input %q is missing (FP32 [N, %d], node features)", InputFeatures, info.FeatureDim)
	}
	if edges == nil {
		return Tensors{}, invalidf("input %q is missing (INT64 or INT32 [2, E], node indices; shape [2, 0] for no edges)", InputEdgeIndex)
	}

	if x.datatype != typeFP32 {
		return Tensors{}, invalidf("input %q: datatype %q, want FP32", x.name, x.datatype)
	}
	if len(x.shape) != 2 || x.shape[1] != int64(info.FeatureDim) {
		return Tensors{}, invalidf("input %q: shape %s, want [N, %d]", x.name, formatShape(x.shape), info.FeatureDim)
	}
	numNodes, f := int(x.shape[0]), info.FeatureDim
	if len(x.fp32) != numNodes*f {
		return Tensors{}, invalidf("input %q: shape %s needs %d elements, got %d", x.name, formatShape(x.shape), numNodes*f, len(x.fp32))
	}

	if edges.datatype != typeINT64 && edges.datatype != typeINT32 {
		return Tensors{}, invalidf("input %q: datatype %q, want INT64 or INT32", edges.name, edges.datatype)
	}
	if len(edges.shape) != 2 || edges.shape[0] != 2 {
		return Tensors{}, invalidf("input %q: shape %s, want [2, E]", edges.name, formatShape(edges.shape))
	}
	numEdges := int(edges.shape[1])
	if len(edges.ints) != 2*numEdges {
		return Tensors{}, invalidf("input %q: shape %s needs %d elements, got %d", edges.name, formatShape(edges.shape), 2*numEdges, len(edges.ints))
	}
	return Tensors{NumNodes: numNodes, Features: x.fp32, EdgeIndex: edges.ints}, nil
}

// selectOutputs checks the requested output names (none: all outputs).
func selectOutputs(requested []string) ([]string, error) {
	if len(requested) == 0 {
		return outputNames, nil
	}
	seen := make(map[string]bool, len(requested))
	for _, name := range requested {
		switch name {
		case OutputScores, OutputProbabilities, OutputPredictions:
		default:
			return nil, invalidf("unknown output %q: the model gives scores (FP32 [N]), probabilities (FP32 [N, C]) and predictions (INT64 [N])", name)
		}
		if seen[name] {
			return nil, invalidf("output %q requested twice", name)
		}
		seen[name] = true
	}
	return requested, nil
}

// buildOutputs turns a prediction into the named output tensors.
func buildOutputs(names []string, numNodes int, p Prediction, numClasses int) []outputTensor {
	out := make([]outputTensor, 0, len(names))
	for _, name := range names {
		switch name {
		case OutputScores:
			out = append(out, outputTensor{name: name, datatype: typeFP32, shape: []int64{int64(numNodes)}, fp32: nonNil(p.Scores)})
		case OutputProbabilities:
			out = append(out, outputTensor{name: name, datatype: typeFP32,
				shape: []int64{int64(numNodes), int64(numClasses)}, fp32: nonNil(p.Probabilities)})
		case OutputPredictions:
			classes := make([]int64, len(p.ClassIndex))
			for i, c := range p.ClassIndex {
				classes[i] = int64(c)
			}
			out = append(out, outputTensor{name: name, datatype: typeINT64, shape: []int64{int64(numNodes)}, i64: classes})
		}
	}
	return out
}

func nonNil(s []float32) []float32 {
	if s == nil {
		return []float32{}
	}
	return s
}

// tensorMetadata describes one input or output for ModelMetadata.
type tensorMetadata struct {
	Name     string  `json:"name"`
	Datatype string  `json:"datatype"`
	Shape    []int64 `json:"shape"`
}

// modelMetadata is ModelMetadata's answer, shared by gRPC and REST.
type modelMetadata struct {
	Name       string            `json:"name"`
	Versions   []string          `json:"versions"`
	Platform   string            `json:"platform"`
	Inputs     []tensorMetadata  `json:"inputs"`
	Outputs    []tensorMetadata  `json:"outputs"`
	Properties map[string]string `json:"properties,omitempty"`
}

// describeModel builds the metadata of a leased model; -1 marks the
// dynamic dimensions (nodes, edges).
func describeModel(m Model, versions []string) modelMetadata {
	info := m.Info()
	f, c := int64(info.FeatureDim), int64(info.NumClasses)
	classNames, _ := json.Marshal(info.ClassNames)
	props := map[string]string{
		"feature_dim":   strconv.FormatInt(f, 10),
		"num_classes":   strconv.FormatInt(c, 10),
		"class_names":   string(classNames),
		"score_class":   strconv.Itoa(info.ScoreClass),
		"score_meaning": info.ScoreMeaning,
		"sha256":        info.SHA256,
	}
	if info.Dataset != "" {
		props["dataset"] = info.Dataset
	}
	if len(versions) == 0 {
		versions = []string{m.Version()}
	}
	return modelMetadata{
		Name:     m.Name(),
		Versions: versions,
		Platform: Platform,
		Inputs: []tensorMetadata{
			{Name: InputFeatures, Datatype: typeFP32, Shape: []int64{-1, f}},
			{Name: InputEdgeIndex, Datatype: typeINT64, Shape: []int64{2, -1}},
		},
		Outputs: []tensorMetadata{
			{Name: OutputScores, Datatype: typeFP32, Shape: []int64{-1}},
			{Name: OutputProbabilities, Datatype: typeFP32, Shape: []int64{-1, c}},
			{Name: OutputPredictions, Datatype: typeINT64, Shape: []int64{-1}},
		},
		Properties: props,
	}
}
