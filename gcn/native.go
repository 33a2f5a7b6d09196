package gcn

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
)

// nativeTolerance is the largest difference of any probability between the
// native path and ONNX Runtime on the probe graph for the model's "layers"
// description to be trusted.
const nativeTolerance = 1e-5

// NewNetwork builds the Network that spec describes, with the weights of
// the ONNX model file model (its float initializers), for featureDim input
// features. An error says which layer or weight does not fit.
func NewNetwork(spec LayersSpec, model []byte, featureDim int) (*Network, error) {
	inits, err := readInitializers(model)
	if err != nil {
		return nil, err
	}
	net := &Network{FeatureDim: featureDim, InputNorm: spec.InputNorm, Output: spec.Output}
	in := featureDim
	for i, ls := range spec.Layers {
		w, ok := inits[ls.Weight]
		if !ok {
			return nil, fmt.Errorf("layer %d: weight %q is not a float initializer of the model", i, ls.Weight)
		}
		if len(w.dims) != 2 || int(w.dims[0]) != in {
			return nil, fmt.Errorf("layer %d: weight %q has dims %v, want [%d, out]", i, ls.Weight, w.dims, in)
		}
		l := Layer{Aggregation: ls.Aggregation, In: in, Out: int(w.dims[1]), Weight: w.data, Activation: ls.Activation}
		if ls.Bias != "" {
			b, ok := inits[ls.Bias]
			if !ok {
				return nil, fmt.Errorf("layer %d: bias %q is not a float initializer of the model", i, ls.Bias)
			}
			if len(b.dims) != 1 || int(b.dims[0]) != l.Out {
				return nil, fmt.Errorf("layer %d: bias %q has dims %v, want [%d]", i, ls.Bias, b.dims, l.Out)
			}
			l.Bias = b.data
		}
		net.Layers = append(net.Layers, l)
		in = l.Out
	}
	if err := net.Check(); err != nil {
		return nil, err
	}
	return net, nil
}

// nativeNetwork returns the model's Network when its metadata describes one
// that computes what the ONNX graph computes, else nil and why not.
// runORT runs the ONNX graph (probabilities out).
func nativeNetwork(model []byte, info *Info, runORT func(Tensors, []float32) error) (*Network, string) {
	s, ok := info.Metadata[MetadataLayers]
	if !ok {
		return nil, fmt.Sprintf("no %q metadata: ONNX Runtime runs the whole graph", MetadataLayers)
	}
	if info.OutputKind != OutputProbabilities {
		return nil, fmt.Sprintf("output_kind %q: the native path computes probabilities only", info.OutputKind)
	}
	spec, err := ParseLayersSpec(s)
	if err != nil {
		return nil, err.Error()
	}
	if rf, ok := info.Metadata[MetadataReceptiveField]; ok && rf != strconv.Itoa(len(spec.Layers)) {
		return nil, fmt.Sprintf("metadata %s=%s, but %q describes %d layers", MetadataReceptiveField, rf, MetadataLayers, len(spec.Layers))
	}
	net, err := NewNetwork(spec, model, info.FeatureDim)
	if err != nil {
		return nil, fmt.Sprintf("metadata %q: %v", MetadataLayers, err)
	}
	if c := net.NumClasses(); c != info.NumClasses {
		return nil, fmt.Sprintf("metadata %q: last layer has %d outputs, the model %d classes", MetadataLayers, c, info.NumClasses)
	}
	probe := probeGraph(info.FeatureDim)
	want := make([]float32, probe.NumNodes*info.NumClasses)
	if err := runORT(probe, want); err != nil {
		return nil, fmt.Sprintf("probe run in ONNX Runtime: %v", err)
	}
	got, err := net.Forward(context.Background(), probe)
	if err != nil {
		return nil, fmt.Sprintf("probe run natively: %v", err)
	}
	worst := 0.0
	for i := range want {
		d := math.Abs(float64(got[i]) - float64(want[i]))
		if !(d <= worst) { // NaN counts as worst
			worst = d
			if math.IsNaN(d) {
				worst = math.Inf(1)
			}
		}
	}
	if worst > nativeTolerance {
		return nil, fmt.Sprintf("metadata %q does not match the ONNX graph: probabilities differ by up to %.3g on the probe graph (tolerance %g)", MetadataLayers, worst, nativeTolerance)
	}
	return net, fmt.Sprintf("native: %q metadata matches the ONNX graph on a %d-node probe graph (max difference %.2g)", MetadataLayers, probe.NumNodes, worst)
}

// probeGraph is the fixed graph the native path is checked on at load: 50
// nodes with features of three kinds so that every hidden unit sees both
// signs (a description that drops a ReLU must show): one-hot rows (as
// identity features are), sparse non-negative rows (bag of words) and dense
// rows of mixed sign that sum to 1 (few entries); node 0 is all zero. Random edges with a
// duplicate, a reversed duplicate and a self loop, and an isolated node.
func probeGraph(featureDim int) Tensors {
	const n, e = 50, 120
	f := featureDim
	rng := rand.New(rand.NewPCG(17, 2026))
	x := make([]float32, n*f)
	for v := 1; v < n; v++ {
		row := x[v*f : (v+1)*f]
		switch v % 3 {
		case 0:
			row[(v*7)%f] = 1
		case 1:
			for range 3 {
				row[rng.IntN(f)] = rng.Float32()
			}
		default:
			// A few entries, so that wide inputs (Cora's 1433) do not add
			// up to logits so large that float32 rounding alone exceeds
			// the tolerance.
			var sum float32
			for range min(f, 8) {
				j := rng.IntN(f)
				sum -= row[j]
				row[j] = 2*rng.Float32() - 1
				sum += row[j]
			}
			row[0] += 1 - sum
		}
	}
	src := make([]int64, 0, e+3)
	dst := make([]int64, 0, e+3)
	for range e {
		// Node n-1 stays isolated.
		src = append(src, int64(rng.IntN(n-1)))
		dst = append(dst, int64(rng.IntN(n-1)))
	}
	src = append(src, src[0], dst[1], 7)
	dst = append(dst, dst[0], src[1], 7)
	return Tensors{NumNodes: n, Features: x, EdgeIndex: append(src, dst...)}
}

// denseMatMulAdvantage is how many times faster ONNX Runtime's MatMul
// (MLAS, vectorised) runs the first layer's multiply-adds than the native
// scalar loop, measured on a Cora-shaped request with dense features
// (2,708 x 1,433 x 16): native 56 ms, ONNX Runtime 24 ms of server CPU per
// request, where the aggregation is a few percent of the work.
const denseMatMulAdvantage = 8

// nativePays reports whether the native path beats ONNX Runtime on t: it
// does unless the first layer's dense multiply-adds (its nonzero inputs
// times its width) outweigh the aggregation's adds (entries and self loops
// times the widest layer) by more than denseMatMulAdvantage, as on wide
// dense features. Bag-of-words features (Cora's 98.7% zeros) and the
// aggregation-heavy large graphs stay native. Both paths give the same
// probabilities within 1e-5 (checked at load).
func (n *Network) nativePays(t Tensors) bool {
	first := n.Layers[0]
	widest := 0
	for _, l := range n.Layers {
		widest = max(widest, l.Out)
	}
	aggregation := (2*t.NumEdges() + t.NumNodes) * widest * len(n.Layers)
	if len(t.Features)*first.Out <= denseMatMulAdvantage*aggregation {
		return true // even fully dense, the transform does not dominate
	}
	nonzero := 0
	for _, v := range t.Features {
		if v != 0 {
			nonzero++
		}
	}
	return nonzero*first.Out <= denseMatMulAdvantage*aggregation
}
