package gcn

import (
	"encoding/json"
	"fmt"
)

// MetadataLayers is the metadata_props key under which a model file
// describes its message-passing layers (a JSON LayersSpec). A model with it
// can run layer by layer natively (and keep per-layer state for stored
// graphs); the ONNX graph in the same file stays the whole truth and the
// portable form: the server checks at load that both compute the same
// probabilities before it trusts the description.
const MetadataLayers = "layers"

// MetadataReceptiveField is the metadata_props key that says how many hops
// information travels in the model (the number of message-passing layers).
// Scoring a subset of a stored graph exactly needs it.
const MetadataReceptiveField = "receptive_field"

// Aggregation is how a layer combines a node's closed neighbourhood. In
// every kind each listed edge u != v is one undirected link (both
// directions), a listed self loop counts for nothing, duplicate listings add
// up (multigraph) and every node gets exactly one self loop of weight 1.
// deg(d) is 1 + the number of links at d.
type Aggregation string

// Aggregation kinds. With h = in @ Weight:
const (
	// AggregationGCN is Kipf & Welling's symmetric normalisation
	// D^-1/2 (A+I) D^-1/2: a[d] = dinv[d] * (dinv[d]*h[d] + sum over links
	// (s,d) of dinv[s]*h[s]), dinv = deg^-1/2.
	AggregationGCN Aggregation = "gcn"
	// AggregationMean is the mean over the closed neighbourhood:
	// a[d] = (h[d] + sum over links (s,d) of h[s]) / deg(d).
	AggregationMean Aggregation = "mean"
	// AggregationSum is the plain sum over the closed neighbourhood (GIN
	// with eps = 0): a[d] = h[d] + sum over links (s,d) of h[s].
	AggregationSum Aggregation = "sum"
)

// Activation is the function applied to a layer's output.
type Activation string

// Activations.
const (
	ActivationNone Activation = "none"
	ActivationReLU Activation = "relu"
)

// InputNorm is what the model does to raw features before the first layer.
type InputNorm string

// Input normalisations.
const (
	// InputNormNone uses features as given.
	InputNormNone InputNorm = "none"
	// InputNormRow divides each row by its sum; a row summing to 0 stays 0.
	InputNormRow InputNorm = "row"
)

// OutputHead turns the last layer's output into probabilities.
type OutputHead string

// Output heads.
const (
	OutputSoftmax OutputHead = "softmax"
)

// LayersSpec is the JSON stored under MetadataLayers: the structure, with
// weights named by their ONNX initializer.
type LayersSpec struct {
	InputNorm InputNorm   `json:"input_norm"`
	Layers    []LayerSpec `json:"layers"`
	Output    OutputHead  `json:"output"`
}

// LayerSpec is one layer of a LayersSpec.
type LayerSpec struct {
	Aggregation Aggregation `json:"aggregation"`
	// Weight names a float32 [In, Out] initializer; Bias a float32 [Out]
	// initializer, or is empty for no bias.
	Weight     string     `json:"weight"`
	Bias       string     `json:"bias,omitempty"`
	Activation Activation `json:"activation"`
}

// ParseLayersSpec decodes and checks the MetadataLayers JSON. An error says
// what is wrong with it.
func ParseLayersSpec(s string) (LayersSpec, error) {
	var spec LayersSpec
	if err := json.Unmarshal([]byte(s), &spec); err != nil {
		return spec, fmt.Errorf("metadata %q: %w", MetadataLayers, err)
	}
	switch spec.InputNorm {
	case InputNormNone, InputNormRow:
	default:
		return spec, fmt.Errorf("metadata %q: input_norm %q, want %q or %q", MetadataLayers, spec.InputNorm, InputNormNone, InputNormRow)
	}
	if spec.Output != OutputSoftmax {
		return spec, fmt.Errorf("metadata %q: output %q, want %q", MetadataLayers, spec.Output, OutputSoftmax)
	}
	if len(spec.Layers) == 0 {
		return spec, fmt.Errorf("metadata %q: no layers", MetadataLayers)
	}
	for i, l := range spec.Layers {
		switch l.Aggregation {
		case AggregationGCN, AggregationMean, AggregationSum:
		default:
			return spec, fmt.Errorf("metadata %q: layer %d: aggregation %q, want gcn, mean or sum", MetadataLayers, i, l.Aggregation)
		}
		switch l.Activation {
		case ActivationNone, ActivationReLU:
		default:
			return spec, fmt.Errorf("metadata %q: layer %d: activation %q, want none or relu", MetadataLayers, i, l.Activation)
		}
		if l.Weight == "" {
			return spec, fmt.Errorf("metadata %q: layer %d: no weight", MetadataLayers, i)
		}
	}
	return spec, nil
}

// Network is a model's message-passing layers with their weights, in plain
// Go values: what the native path runs and what per-layer state (stored
// graphs, incremental inference) is built on. A Network is read-only once
// made; share it freely.
type Network struct {
	// FeatureDim is F, the first layer's In.
	FeatureDim int
	InputNorm  InputNorm
	Layers     []Layer
	Output     OutputHead
}

// Layer is one message-passing layer: out = act(aggregate(in @ Weight) + Bias).
// Transforming before aggregating is exact for every Aggregation (they are
// linear) and runs the aggregation on the narrower side.
type Layer struct {
	Aggregation Aggregation
	// In and Out are the layer's widths.
	In, Out int
	// Weight is row-major [In, Out]: Weight[i*Out+j].
	Weight []float32
	// Bias has Out values, or is nil.
	Bias       []float32
	Activation Activation
}

// NumClasses is the last layer's width, C.
func (n *Network) NumClasses() int { return n.Layers[len(n.Layers)-1].Out }

// ReceptiveField is the number of hops information travels: the number of
// layers.
func (n *Network) ReceptiveField() int { return len(n.Layers) }

// Check reports whether the layers chain (each In is the previous Out, the
// first In is FeatureDim) and every slice has its size.
func (n *Network) Check() error {
	if len(n.Layers) == 0 {
		return fmt.Errorf("network has no layers")
	}
	in := n.FeatureDim
	for i, l := range n.Layers {
		switch {
		case l.In != in:
			return fmt.Errorf("layer %d: %d inputs, previous layer gives %d", i, l.In, in)
		case l.Out <= 0:
			return fmt.Errorf("layer %d: %d outputs", i, l.Out)
		case len(l.Weight) != l.In*l.Out:
			return fmt.Errorf("layer %d: weight has %d values, want %d x %d", i, len(l.Weight), l.In, l.Out)
		case l.Bias != nil && len(l.Bias) != l.Out:
			return fmt.Errorf("layer %d: bias has %d values, want %d", i, len(l.Bias), l.Out)
		}
		in = l.Out
	}
	return nil
}
