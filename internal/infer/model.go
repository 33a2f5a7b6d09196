// Package infer runs a GCN exported to ONNX through ONNX Runtime.
//
// It is the only package that imports onnxruntime_go: it speaks plain Go
// types (a Graph in, a Prediction out) and no ORT type leaves it.
//
// The model contract: inputs "x" float32 [num_nodes, F] and "edge_index"
// int64 [2, num_edges] (row 0 source, row 1 target, indexes into x), one
// float32 output [num_nodes, C]. F and C are read from the model. Optional
// metadata_props describe the classes and the output (see Info).
package infer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	ort "github.com/yalue/onnxruntime_go"
)

// Input and output names of the model contract.
const (
	InputFeatures  = "x"
	InputEdgeIndex = "edge_index"
)

// Output kinds a model may declare in its "output_kind" metadata.
const (
	OutputProbabilities    = "probabilities"
	OutputLogits           = "logits"
	OutputLogProbabilities = "log_probabilities"
)

// Options tune how a model runs. The zero value is valid: every field's
// comment states its default.
type Options struct {
	// LibraryPath is the ONNX Runtime shared library to load. Default
	// "libonnxruntime.so", found by the dynamic loader's search path.
	LibraryPath string
	// IntraOpThreads is ORT's thread count inside one run. Default 1: the
	// server runs concurrent requests on their own goroutines, which uses the
	// cores better than splitting each small run (onnxruntime issue 16304).
	// A model whose metadata sets "max_intra_op_threads" gets at most that
	// many: ORT's ScatterND(reduction=add) kernel races with more than one
	// (onnxruntime issue 18048).
	IntraOpThreads int
	// InterOpThreads is ORT's thread count across independent graph nodes.
	// Default 1 (the GCN graph is a chain).
	InterOpThreads int
	// MaxConcurrentRuns bounds model runs in flight; further Predict calls
	// wait (and honour their context while waiting). It bounds the memory
	// that concurrent big graphs can take. Default runtime.NumCPU().
	MaxConcurrentRuns int
}

// Info describes a loaded model.
type Info struct {
	Name, Version string
	// SHA256 is the hex digest of the model file.
	SHA256 string
	// ORTVersion is the ONNX Runtime library's version.
	ORTVersion string
	// FeatureDim is F, the length of every node's feature vector.
	FeatureDim int
	// NumClasses is C, the width of the output.
	NumClasses int
	// ClassNames has NumClasses entries: the "class_names" metadata, else the
	// decimal class indexes.
	ClassNames []string
	// ScoreClass is the class whose probability is a node's score, or -1 for
	// the probability of the node's top class ("score_class" metadata).
	ScoreClass int
	// ScoreMeaning says in words what a score is.
	ScoreMeaning string
	// OutputKind is one of OutputProbabilities, OutputLogits and
	// OutputLogProbabilities; Predict always returns probabilities.
	OutputKind string
	// Dataset and TestAccuracy describe the training run (0 when unknown).
	Dataset      string
	TestAccuracy float64
	// Batchable is true when the model declares ("batchable" metadata) that
	// message passing stays within connected components, so the disjoint
	// union of several graphs gives each graph its own result.
	Batchable bool
	// Metadata holds every metadata_props entry verbatim.
	Metadata map[string]string
	// IntraOpThreads is the thread count the session really uses: the
	// option, capped by the model's "max_intra_op_threads".
	IntraOpThreads int
}

// Graph is one model input.
type Graph struct {
	// NumNodes is N.
	NumNodes int
	// Features is x, row-major [N, F]. Predict reads it in place, no copy.
	Features []float32
	// EdgeIndex is edge_index, row-major [2, E]: the E sources, then the E
	// targets, each an index in [0, N). Predict reads it in place.
	EdgeIndex []int64
}

// NumEdges is E.
func (g Graph) NumEdges() int { return len(g.EdgeIndex) / 2 }

// Prediction is the model's answer for one Graph.
type Prediction struct {
	// NumClasses is C.
	NumClasses int
	// Probabilities is [N, C] row-major; each row sums to 1.
	Probabilities []float32
	// ClassIndex is each node's argmax class (the lowest index wins a tie).
	ClassIndex []int32
	// Scores is each node's score: the probability of Info.ScoreClass, or of
	// the node's top class when ScoreClass is -1.
	Scores []float32
	// Timing says where the time went.
	Timing Timing
}

// Timing splits one prediction's wall time.
type Timing struct {
	// Queue is the time spent waiting for a run slot (and, when batching,
	// for the batch to fill).
	Queue time.Duration
	// Run is the ONNX Runtime run, tensor creation included.
	Run time.Duration
	// BatchGraphs is how many request graphs shared the run (0 or 1: alone).
	BatchGraphs int
}

// Model is a loaded ONNX model. Predict is safe for concurrent use.
type Model struct {
	info    Info
	session *ort.DynamicAdvancedSession
	// runSlots bounds concurrent runs: a run holds one token.
	runSlots chan struct{}
}

// Open loads the ONNX Runtime library (once per process) and the model at
// path, checks the model against the contract and creates the one session
// all Predict calls share.
func Open(path string, opts Options) (_ *Model, err error) {
	if opts.LibraryPath == "" {
		opts.LibraryPath = "libonnxruntime.so"
	}
	opts.IntraOpThreads = max(opts.IntraOpThreads, 1)
	opts.InterOpThreads = max(opts.InterOpThreads, 1)
	if opts.MaxConcurrentRuns <= 0 {
		opts.MaxConcurrentRuns = runtime.NumCPU()
	}

	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read model: %w", err)
	}
	if err := acquireRuntime(opts.LibraryPath); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, releaseRuntime())
		}
	}()

	inputs, outputs, err := ort.GetInputOutputInfoWithONNXData(data)
	if err != nil {
		return nil, fmt.Errorf("model %s: not a loadable ONNX model: %w", path, err)
	}
	featureDim, numClasses, outputName, err := checkContract(inputs, outputs)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", path, err)
	}

	session, meta, err := openSession(data, outputName, &opts)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, session.Destroy())
		}
	}()
	sum := sha256.Sum256(data)
	info, err := describe(meta, featureDim, numClasses)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", path, err)
	}
	info.SHA256 = hex.EncodeToString(sum[:])
	info.IntraOpThreads = opts.IntraOpThreads
	info.ORTVersion = ort.GetVersion()

	return &Model{
		info:     info,
		session:  session,
		runSlots: make(chan struct{}, opts.MaxConcurrentRuns),
	}, nil
}

// checkContract returns F, C and the output name, or an error saying how the
// model's signature differs from the contract.
func checkContract(inputs, outputs []ort.InputOutputInfo) (featureDim, numClasses int, outputName string, err error) {
	const want = `want inputs "x" float32 [N,F] and "edge_index" int64 [2,E], one output float32 [N,C]`
	if len(inputs) != 2 {
		return 0, 0, "", fmt.Errorf("has %d inputs, %s", len(inputs), want)
	}
	if len(outputs) != 1 {
		return 0, 0, "", fmt.Errorf("has %d outputs, %s", len(outputs), want)
	}
	byName := map[string]ort.InputOutputInfo{inputs[0].Name: inputs[0], inputs[1].Name: inputs[1]}
	x, okX := byName[InputFeatures]
	ei, okE := byName[InputEdgeIndex]
	if !okX || !okE {
		return 0, 0, "", fmt.Errorf("has inputs %q and %q, %s", inputs[0].Name, inputs[1].Name, want)
	}
	out := outputs[0]
	switch {
	case x.OrtValueType != ort.ONNXTypeTensor || x.DataType != ort.TensorElementDataTypeFloat || len(x.Dimensions) != 2:
		return 0, 0, "", fmt.Errorf("input x is %s, %s", &x, want)
	case x.Dimensions[1] <= 0:
		return 0, 0, "", fmt.Errorf("input x has no fixed feature dimension (%s), %s", x.Dimensions, want)
	case ei.OrtValueType != ort.ONNXTypeTensor || ei.DataType != ort.TensorElementDataTypeInt64 || len(ei.Dimensions) != 2:
		return 0, 0, "", fmt.Errorf("input edge_index is %s, %s", &ei, want)
	case ei.Dimensions[0] != 2 && ei.Dimensions[0] > 0:
		return 0, 0, "", fmt.Errorf("input edge_index has shape %s, %s", ei.Dimensions, want)
	case out.OrtValueType != ort.ONNXTypeTensor || out.DataType != ort.TensorElementDataTypeFloat || len(out.Dimensions) != 2:
		return 0, 0, "", fmt.Errorf("output is %s, %s", &out, want)
	case out.Dimensions[1] <= 0:
		return 0, 0, "", fmt.Errorf("output %q has no fixed class dimension (%s), %s", out.Name, out.Dimensions, want)
	}
	return int(x.Dimensions[1]), int(out.Dimensions[1]), out.Name, nil
}

// openSession creates the session and reads the model's metadata. When the
// metadata caps the intra-op threads below opts.IntraOpThreads, it lowers
// the option and creates the session again.
func openSession(data []byte, outputName string, opts *Options) (*ort.DynamicAdvancedSession, map[string]string, error) {
	session, err := newSession(data, outputName, *opts)
	if err != nil {
		return nil, nil, err
	}
	meta, err := readMetadata(session)
	if err != nil {
		return nil, nil, errors.Join(err, session.Destroy())
	}
	limit, ok := meta["max_intra_op_threads"]
	if !ok {
		return session, meta, nil
	}
	n, err := strconv.Atoi(limit)
	if err != nil || n < 1 {
		return nil, nil, errors.Join(fmt.Errorf("metadata max_intra_op_threads %q is not a positive integer", limit), session.Destroy())
	}
	if opts.IntraOpThreads <= n {
		return session, meta, nil
	}
	opts.IntraOpThreads = n
	if err := session.Destroy(); err != nil {
		return nil, nil, err
	}
	session, err = newSession(data, outputName, *opts)
	return session, meta, err
}

func newSession(data []byte, outputName string, opts Options) (_ *ort.DynamicAdvancedSession, err error) {
	so, err := ort.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("session options: %w", err)
	}
	defer func() { err = errors.Join(err, so.Destroy()) }()
	settings := []error{
		so.SetIntraOpNumThreads(opts.IntraOpThreads),
		so.SetInterOpNumThreads(opts.InterOpThreads),
		so.SetExecutionMode(ort.ExecutionModeSequential),
		so.SetGraphOptimizationLevel(ort.GraphOptimizationLevelEnableAll),
		// Spinning intra-op threads burn CPU while they wait for work: with
		// concurrent requests that is CPU taken from other runs.
		so.AddSessionConfigEntry("session.intra_op.allow_spinning", "0"),
		so.AddSessionConfigEntry("session.inter_op.allow_spinning", "0"),
	}
	if err := errors.Join(settings...); err != nil {
		return nil, fmt.Errorf("session options: %w", err)
	}
	s, err := ort.NewDynamicAdvancedSessionWithONNXData(data,
		[]string{InputFeatures, InputEdgeIndex}, []string{outputName}, so)
	if err != nil {
		return nil, fmt.Errorf("create session: %w", err)
	}
	return s, nil
}

func readMetadata(s *ort.DynamicAdvancedSession) (_ map[string]string, err error) {
	md, err := s.GetModelMetadata()
	if err != nil {
		return nil, fmt.Errorf("read metadata: %w", err)
	}
	defer func() { err = errors.Join(err, md.Destroy()) }()
	keys, err := md.GetCustomMetadataMapKeys()
	if err != nil {
		return nil, fmt.Errorf("read metadata: %w", err)
	}
	meta := make(map[string]string, len(keys)+2)
	for _, k := range keys {
		v, _, err := md.LookupCustomMetadataMap(k)
		if err != nil {
			return nil, fmt.Errorf("read metadata %q: %w", k, err)
		}
		meta[k] = v
	}
	// The graph name and model version are fallbacks for name and version.
	if graph, err := md.GetGraphName(); err == nil && meta["model_name"] == "" {
		meta["model_name"] = graph
	}
	if v, err := md.GetVersion(); err == nil && meta["model_version"] == "" && v != 0 {
		meta["model_version"] = strconv.FormatInt(v, 10)
	}
	return meta, nil
}

// describe reads the optional metadata and checks it against the signature.
func describe(meta map[string]string, featureDim, numClasses int) (Info, error) {
	info := Info{
		Name:       meta["model_name"],
		Version:    meta["model_version"],
		FeatureDim: featureDim,
		NumClasses: numClasses,
		ScoreClass: -1,
		OutputKind: OutputProbabilities,
		Dataset:    meta["dataset"],
		Batchable:  meta["batchable"] == "true",
		Metadata:   meta,
	}
	if s, ok := meta["feature_dim"]; ok && s != strconv.Itoa(featureDim) {
		return Info{}, fmt.Errorf("metadata feature_dim=%s, but input x has %d features", s, featureDim)
	}
	if s, ok := meta["num_classes"]; ok && s != strconv.Itoa(numClasses) {
		return Info{}, fmt.Errorf("metadata num_classes=%s, but the output has %d classes", s, numClasses)
	}
	if s, ok := meta["class_names"]; ok {
		if err := json.Unmarshal([]byte(s), &info.ClassNames); err != nil {
			return Info{}, fmt.Errorf("metadata class_names is not a JSON array of strings: %w", err)
		}
		if len(info.ClassNames) != numClasses {
			return Info{}, fmt.Errorf("metadata class_names has %d names, but the output has %d classes", len(info.ClassNames), numClasses)
		}
	} else {
		info.ClassNames = make([]string, numClasses)
		for i := range info.ClassNames {
			info.ClassNames[i] = strconv.Itoa(i)
		}
	}
	if s, ok := meta["score_class"]; ok && s != "" {
		info.ScoreClass = classByName(info.ClassNames, s)
		if info.ScoreClass < 0 {
			return Info{}, fmt.Errorf("metadata score_class %q names no class (classes: %s)", s, strings.Join(info.ClassNames, ", "))
		}
	}
	switch kind := meta["output_kind"]; kind {
	case "", OutputProbabilities, OutputLogits, OutputLogProbabilities:
		if kind != "" {
			info.OutputKind = kind
		}
	default:
		return Info{}, fmt.Errorf("metadata output_kind %q, want %s, %s or %s", kind, OutputProbabilities, OutputLogits, OutputLogProbabilities)
	}
	if s, ok := meta["test_accuracy"]; ok {
		acc, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return Info{}, fmt.Errorf("metadata test_accuracy %q is not a number", s)
		}
		info.TestAccuracy = acc
	}
	info.ScoreMeaning = meta["score_meaning"]
	if info.ScoreMeaning == "" {
		if info.ScoreClass >= 0 {
			info.ScoreMeaning = fmt.Sprintf("probability of class %q", info.ClassNames[info.ScoreClass])
		} else {
			info.ScoreMeaning = "probability of the node's predicted (top) class"
		}
	}
	return info, nil
}

// classByName finds a class by name, or by decimal index.
func classByName(names []string, s string) int {
	for i, n := range names {
		if n == s {
			return i
		}
	}
	if i, err := strconv.Atoi(s); err == nil && i >= 0 && i < len(names) {
		return i
	}
	return -1
}

// Info describes the loaded model. The caller must not modify it.
func (m *Model) Info() Info { return m.info }

// Predict runs the model on g. It returns the context's error when ctx ends
// first, while waiting for a run slot or during the run: the run is then
// terminated inside ONNX Runtime, not left to finish.
func (m *Model) Predict(ctx context.Context, g Graph) (Prediction, error) {
	f, c := m.info.FeatureDim, m.info.NumClasses
	if g.NumNodes <= 0 || len(g.Features) != g.NumNodes*f || len(g.EdgeIndex)%2 != 0 {
		return Prediction{}, fmt.Errorf("predict: graph of %d nodes has %d features (want %d per node) and %d edge index entries (want 2 per edge)",
			g.NumNodes, len(g.Features), f, len(g.EdgeIndex))
	}
	start := time.Now()
	select {
	case m.runSlots <- struct{}{}:
		defer func() { <-m.runSlots }()
	case <-ctx.Done():
		return Prediction{}, ctx.Err()
	}
	if err := ctx.Err(); err != nil {
		return Prediction{}, err
	}

	probs := make([]float32, g.NumNodes*c)
	running := time.Now()
	if err := m.run(ctx, g, probs); err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return Prediction{}, ctxErr
		}
		return Prediction{}, err
	}
	p := m.postprocess(g.NumNodes, probs)
	p.Timing = Timing{Queue: running.Sub(start), Run: time.Since(running)}
	return p, nil
}

// run executes one inference, writing the output into out. Every ORT value it
// creates is destroyed before it returns.
func (m *Model) run(ctx context.Context, g Graph, out []float32) (err error) {
	n, e := int64(g.NumNodes), int64(g.NumEdges())
	x, err := ort.NewTensor(ort.NewShape(n, int64(m.info.FeatureDim)), g.Features)
	if err != nil {
		return fmt.Errorf("features tensor: %w", err)
	}
	defer func() { err = errors.Join(err, x.Destroy()) }()
	edges, err := ort.NewTensor(ort.NewShape(2, e), g.EdgeIndex)
	if err != nil {
		return fmt.Errorf("edge_index tensor: %w", err)
	}
	defer func() { err = errors.Join(err, edges.Destroy()) }()
	y, err := ort.NewTensor(ort.NewShape(n, int64(m.info.NumClasses)), out)
	if err != nil {
		return fmt.Errorf("output tensor: %w", err)
	}
	defer func() { err = errors.Join(err, y.Destroy()) }()

	opts, err := ort.NewRunOptions()
	if err != nil {
		return fmt.Errorf("run options: %w", err)
	}
	defer func() { err = errors.Join(err, opts.Destroy()) }()
	// Terminate the run when ctx ends. The run options must outlive the
	// callback, so wait for a callback that already started.
	terminated := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(terminated)
		opts.Terminate()
	})
	defer func() {
		if !stop() {
			<-terminated
		}
	}()

	if err := m.session.RunWithOptions([]ort.Value{x, edges}, []ort.Value{y}, opts); err != nil {
		return fmt.Errorf("onnxruntime run (%d nodes, %d edges): %w", n, e, err)
	}
	return nil
}

// postprocess turns the raw output into probabilities, classes and scores.
func (m *Model) postprocess(n int, out []float32) Prediction {
	c := m.info.NumClasses
	p := Prediction{
		NumClasses:    c,
		Probabilities: out,
		ClassIndex:    make([]int32, n),
		Scores:        make([]float32, n),
	}
	for i := range n {
		row := out[i*c : (i+1)*c]
		switch m.info.OutputKind {
		case OutputLogits:
			softmax(row)
		case OutputLogProbabilities:
			for j, v := range row {
				row[j] = float32(math.Exp(float64(v)))
			}
		}
		top := 0
		for j := 1; j < c; j++ {
			if row[j] > row[top] {
				top = j
			}
		}
		p.ClassIndex[i] = int32(top)
		if m.info.ScoreClass >= 0 {
			p.Scores[i] = row[m.info.ScoreClass]
		} else {
			p.Scores[i] = row[top]
		}
	}
	return p
}

// softmax replaces row by its softmax, computed stably.
func softmax(row []float32) {
	hi := row[0]
	for _, v := range row[1:] {
		hi = max(hi, v)
	}
	var sum float64
	for j, v := range row {
		e := math.Exp(float64(v - hi))
		row[j] = float32(e)
		sum += e
	}
	for j := range row {
		row[j] = float32(float64(row[j]) / sum)
	}
}

// Close releases the session and this model's hold on the ONNX Runtime
// environment. Predict must not be called after Close.
func (m *Model) Close() error {
	return errors.Join(m.session.Destroy(), releaseRuntime())
}
