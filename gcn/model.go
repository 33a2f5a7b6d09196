package gcn

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	ort "github.com/yalue/onnxruntime_go"
)

// Input names of the model contract.
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

// Info describes a loaded model.
type Info struct {
	// Name and Version come from the metadata ("model_name",
	// "model_version"), else the ONNX graph name and model_version.
	Name, Version string
	// SHA256 is the hex digest of the model file's bytes.
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
	// Batching is true when this Model merges concurrent Predict calls
	// (WithBatching on a batchable model).
	Batching bool
	// Metadata holds every metadata_props entry verbatim.
	Metadata map[string]string
	// IntraOpThreads is the thread count the session really uses: the
	// option, capped by the model's "max_intra_op_threads".
	IntraOpThreads int
	// Limits are the bounds Predict enforces (WithLimits).
	Limits Limits
	// Native is true when Predict runs the model's message passing natively
	// in Go (Model.Network) instead of in ONNX Runtime: the model describes
	// its layers (metadata "layers"), the description gave the ONNX graph's
	// probabilities (within 1e-5) on a probe graph at load, and
	// WithNativeExecution is on.
	Native bool
	// NativeReason says why Native is what it is (e.g. the probe's largest
	// difference, or which part of the description does not fit).
	NativeReason string
}

// Prediction is the model's answer for one graph, rows in node order.
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
	// BatchGraphs is how many graphs shared the run (0 or 1: alone).
	BatchGraphs int
}

// Model is a loaded ONNX model: one ONNX Runtime session shared by every
// Predict call. Its methods are safe for concurrent use.
type Model struct {
	core *session
	// batch merges concurrent small graphs; nil when batching is off.
	batch *batcher
	info  Info
	// net is the verified layer description, also when ONNX Runtime runs
	// the model (WithNativeExecution(false)); nil when there is none.
	net *Network

	// mu is held for reading by every Predict call for its whole duration
	// and for writing by Close, so Close waits for calls in flight and no
	// call starts on a closed session. closed is guarded by mu.
	mu     sync.RWMutex
	closed bool
}

// session is the raw model: contract-checked, one ORT session, bounded runs.
// The batcher runs merged graphs on it.
type session struct {
	info *Info
	ort  *ort.DynamicAdvancedSession
	// net runs the model natively when the model's layer description
	// checked out at load (Info.Native); nil: ONNX Runtime runs it.
	net *Network
	// nativeWorkers is ForwardOptions.Workers (WithNativeWorkers).
	nativeWorkers int
	// scratch keeps native passes' working memory between requests
	// (WithScratchBytes); nil: none kept.
	scratch *scratchPool
	// runSlots bounds concurrent runs: a run holds one token.
	runSlots chan struct{}
}

// Open loads the model file at path. See OpenBytes.
func Open(path string, opts ...Option) (*Model, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read model: %w", err)
	}
	m, err := OpenBytes(data, opts...)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", path, err)
	}
	return m, nil
}

// OpenBytes loads a model from the bytes of an ONNX file: it loads the ONNX
// Runtime library on first use (the environment then lives as long as the
// process), checks the model against the contract (inputs "x" float32
// [N, F] and "edge_index" int64 [2, E], one float32 output [N, C]) and its
// metadata against the signature, and creates the one session every
// Predict call shares. An error says what is wrong with the model.
func OpenBytes(data []byte, opts ...Option) (_ *Model, err error) {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	if err := initRuntime(o.libraryPath); err != nil {
		return nil, err
	}
	inputs, outputs, err := ort.GetInputOutputInfoWithONNXData(data)
	if err != nil {
		return nil, fmt.Errorf("not a loadable ONNX model: %w", err)
	}
	featureDim, numClasses, outputName, err := checkContract(inputs, outputs)
	if err != nil {
		return nil, err
	}
	sess, meta, err := openSession(data, outputName, &o)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, sess.Destroy())
		}
	}()
	info, err := describe(meta, featureDim, numClasses)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(data)
	info.SHA256 = hex.EncodeToString(sum[:])
	info.IntraOpThreads = o.intraOpThreads
	info.ORTVersion = ort.GetVersion()
	info.Limits = o.limits

	m := &Model{info: info}
	m.core = &session{info: &m.info, ort: sess, runSlots: make(chan struct{}, o.maxConcurrentRuns)}
	net, reason := nativeNetwork(data, &m.info, func(t Tensors, out []float32) error {
		if err := m.core.run(context.Background(), t, out); err != nil {
			return err
		}
		m.core.postprocess(t.NumNodes, out)
		return nil
	})
	m.info.NativeReason = reason
	switch {
	case net != nil && o.native:
		m.core.net = net
		m.core.nativeWorkers = o.nativeWorkers
		m.core.scratch = newScratchPool(o.scratchBytes, scratchIdle)
		m.info.Native = true
		m.net = net
	case net != nil:
		m.net = net
		m.info.NativeReason = "WithNativeExecution(false): ONNX Runtime runs the whole graph (" + reason + ")"
	}
	if o.batching && info.Batchable {
		m.info.Batching = true
		m.batch = newBatcher(m.core, o.batch)
	}
	return m, nil
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
func openSession(data []byte, outputName string, opts *options) (*ort.DynamicAdvancedSession, map[string]string, error) {
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
	if opts.intraOpThreads <= n {
		return session, meta, nil
	}
	opts.intraOpThreads = n
	if err := session.Destroy(); err != nil {
		return nil, nil, err
	}
	session, err = newSession(data, outputName, *opts)
	return session, meta, err
}

func newSession(data []byte, outputName string, opts options) (_ *ort.DynamicAdvancedSession, err error) {
	so, err := ort.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("session options: %w", err)
	}
	defer func() { err = errors.Join(err, so.Destroy()) }()
	settings := []error{
		so.SetIntraOpNumThreads(opts.intraOpThreads),
		so.SetInterOpNumThreads(opts.interOpThreads),
		so.SetExecutionMode(ort.ExecutionModeSequential),
		so.SetGraphOptimizationLevel(ort.GraphOptimizationLevelEnableAll),
		// Spinning intra-op threads burn CPU while they wait for work: with
		// concurrent requests that is CPU taken from other runs.
		so.AddSessionConfigEntry("session.intra_op.allow_spinning", "0"),
		so.AddSessionConfigEntry("session.inter_op.allow_spinning", "0"),
		so.SetCpuMemArena(opts.cpuMemArena),
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

// Network is the model's message-passing layers, as its "layers" metadata
// describes them with its weights, checked at load against the ONNX graph;
// nil when the model has no such description or it did not check out
// (Info.NativeReason says why). The caller must not modify it.
func (m *Model) Network() *Network { return m.net }

// Predict runs the model on t, which it reads in place (no copy) and does not
// keep. It checks t first (shapes, node indexes in range, finite features,
// Limits) and returns an *Error of kind InvalidArgument or TooLarge naming
// the tensor and the offending entry. A graph of no nodes and no edges gives
// an empty Prediction without running the model.
//
// It returns the context's error when ctx ends first, while waiting for a
// run slot or a batch, or during the run: the run is then terminated inside
// ONNX Runtime, not left to finish. After Close it returns ErrClosed.
func (m *Model) Predict(ctx context.Context, t Tensors) (Prediction, error) {
	if err := t.check(m.info.FeatureDim, m.info.Limits); err != nil {
		return Prediction{}, err
	}
	return m.predict(ctx, t)
}

// predict runs a checked graph.
func (m *Model) predict(ctx context.Context, t Tensors) (Prediction, error) {
	p, _, err := m.predictIn(ctx, t, nil)
	return p, err
}

// predictIn is predict with the native pass working in sc (nil: scratch
// from the pool). done reports whether the run is over with t when it
// returns, so that t's memory may be reused: not when the batcher took t,
// since a worker may still read it after a cancelled call returned.
func (m *Model) predictIn(ctx context.Context, t Tensors, sc *scratch) (p Prediction, done bool, err error) {
	if t.NumNodes == 0 {
		return Prediction{NumClasses: m.info.NumClasses}, true, nil
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return Prediction{}, true, ErrClosed
	}
	if m.batch != nil {
		p, err := m.batch.predict(ctx, t)
		return p, false, err
	}
	p, err = m.core.predictIn(ctx, t, sc)
	return p, true, err
}

// predict runs t, waiting for a run slot first.
func (s *session) predict(ctx context.Context, t Tensors) (Prediction, error) {
	return s.predictIn(ctx, t, nil)
}

// predictIn is predict with the native pass working in sc (nil: scratch
// from the pool, given back after).
func (s *session) predictIn(ctx context.Context, t Tensors, sc *scratch) (Prediction, error) {
	start := time.Now()
	select {
	case s.runSlots <- struct{}{}:
		defer func() { <-s.runSlots }()
	case <-ctx.Done():
		return Prediction{}, ctx.Err()
	}
	if err := ctx.Err(); err != nil {
		return Prediction{}, err
	}

	running := time.Now()
	var probs []float32
	var err error
	if s.net != nil && s.net.nativePays(t) {
		own := sc == nil
		if own {
			sc = s.scratch.get()
		}
		var out Outputs
		out, err = s.net.forwardTensors(ctx, t, ForwardOptions{Workers: s.nativeWorkers}, sc)
		// Not deferred: the pass has returned, so none of its goroutines
		// reads sc any more (a cancelled one too). A pass that panics
		// leaves its buffers out of the pool for good rather than risk
		// their unmapping under a goroutine still reading them.
		if own {
			s.scratch.put(sc)
		}
		probs = out.Probabilities
	} else {
		probs = make([]float32, t.NumNodes*s.info.NumClasses)
		err = s.run(ctx, t, probs)
	}
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return Prediction{}, ctxErr
		}
		return Prediction{}, err
	}
	p := s.postprocess(t.NumNodes, probs)
	p.Timing = Timing{Queue: running.Sub(start), Run: time.Since(running)}
	return p, nil
}

// run executes one inference, writing the output into out. Every ORT value it
// creates is destroyed before it returns.
func (s *session) run(ctx context.Context, g Tensors, out []float32) (err error) {
	n, e := int64(g.NumNodes), int64(g.NumEdges())
	x, err := ort.NewTensor(ort.NewShape(n, int64(s.info.FeatureDim)), g.Features)
	if err != nil {
		return fmt.Errorf("features tensor: %w", err)
	}
	defer func() { err = errors.Join(err, x.Destroy()) }()
	edges, err := ort.NewTensor(ort.NewShape(2, e), g.EdgeIndex)
	if err != nil {
		return fmt.Errorf("edge_index tensor: %w", err)
	}
	defer func() { err = errors.Join(err, edges.Destroy()) }()
	y, err := ort.NewTensor(ort.NewShape(n, int64(s.info.NumClasses)), out)
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

	if err := s.ort.RunWithOptions([]ort.Value{x, edges}, []ort.Value{y}, opts); err != nil {
		return fmt.Errorf("onnxruntime run (%d nodes, %d edges): %w", n, e, err)
	}
	return nil
}

// postprocess turns the raw output into probabilities, classes and scores.
func (s *session) postprocess(n int, out []float32) Prediction {
	c := s.info.NumClasses
	p := Prediction{
		NumClasses:    c,
		Probabilities: out,
		ClassIndex:    make([]int32, n),
		Scores:        make([]float32, n),
	}
	for i := range n {
		row := out[i*c : (i+1)*c]
		switch s.info.OutputKind {
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
		if s.info.ScoreClass >= 0 {
			p.Scores[i] = row[s.info.ScoreClass]
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
		e := expNonPositive(float64(v - hi))
		row[j] = float32(e)
		sum += e
	}
	inv := 1 / sum
	for j := range row {
		row[j] = float32(float64(row[j]) * inv)
	}
}

// expNonPositive is e**x for x <= 0 (and NaN for NaN), within 1e-9
// relative: well below float32's resolution (6e-8), where softmax uses
// it. It is math.Exp without the special cases a softmax cannot meet,
// which made math.Exp most of the softmax's time (a large request takes
// 700k): x = k ln2 + r with |r| <= ln2/2, e**r by its Taylor polynomial of
// degree 8 evaluated in Estrin's scheme (short dependency chains), scaled
// by 2**k.
func expNonPositive(x float64) float64 {
	const (
		log2e  = 1.4426950408889634
		ln2Hi  = 6.93147180369123816490e-01
		ln2Lo  = 1.90821492927058770002e-10
		lowest = -708 // e**-708 is still a normal float64; float32 needs far less
	)
	if x < lowest {
		return 0
	}
	// k = x*log2e rounded to an integer: adding and subtracting 1.5*2**52
	// leaves no fraction bits (math.Round is a call without SSE4.1).
	const shift = 1 << 52 * 1.5
	k := (x*log2e + shift) - shift
	r := (x - k*ln2Hi) - k*ln2Lo
	r2 := r * r
	r4 := r2 * r2
	p := (1 + r) + r2*(1.0/2+r*(1.0/6)) +
		r4*((1.0/24+r*(1.0/120))+r2*(1.0/720+r*(1.0/5040))) + r4*r4*(1.0/40320)
	return p * math.Float64frombits(uint64(int64(k)+1023)<<52)
}

// Close waits for Predict calls in flight, stops the batcher and releases
// the session. Predict calls after Close return ErrClosed. The ONNX Runtime
// environment stays loaded for the next model. Close is idempotent.
func (m *Model) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	m.closed = true
	if m.batch != nil {
		m.batch.close()
	}
	m.core.scratch.close()
	return m.core.ort.Destroy()
}
