package oip

import (
	"context"
	"encoding/binary"
	"math"
	"slices"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	pb "github.com/gcnserve/gcnserve/gen/inferencepb"
	"github.com/gcnserve/gcnserve/internal/gcnerr"
	"github.com/gcnserve/gcnserve/internal/serving"
	"github.com/gcnserve/gcnserve/internal/transport/httpx"
)

// Register adds inference.GRPCInferenceService to a gRPC server. The
// methods the specification defines beyond the six served here (none in the
// KServe specification; Triton's repository, statistics, shared-memory and
// streaming extensions) answer UNIMPLEMENTED.
func (s *Server) Register(r grpc.ServiceRegistrar) {
	r.RegisterService(&serviceDesc, &grpcService{s: s})
}

// serviceDesc is the generated GRPCInferenceService, except that ModelInfer
// reads its request message only after memory admission (serving's Begin),
// as ProcessGraph does: grpc-go reads a unary message only when the handler
// calls dec, so a request waiting for memory holds no more than HTTP/2's
// flow-control window.
var serviceDesc = func() grpc.ServiceDesc {
	d := pb.GRPCInferenceService_ServiceDesc
	d.Methods = slices.Clone(d.Methods)
	small := map[string]grpc.MethodHandler{
		"ServerLive":     smallUnary(pb.GRPCInferenceService_ServerLive_FullMethodName, (*grpcService).ServerLive),
		"ServerReady":    smallUnary(pb.GRPCInferenceService_ServerReady_FullMethodName, (*grpcService).ServerReady),
		"ModelReady":     smallUnary(pb.GRPCInferenceService_ModelReady_FullMethodName, (*grpcService).ModelReady),
		"ServerMetadata": smallUnary(pb.GRPCInferenceService_ServerMetadata_FullMethodName, (*grpcService).ServerMetadata),
		"ModelMetadata":  smallUnary(pb.GRPCInferenceService_ModelMetadata_FullMethodName, (*grpcService).ModelMetadata),
	}
	for i := range d.Methods {
		if d.Methods[i].MethodName == "ModelInfer" {
			d.Methods[i].Handler = modelInferHandler
		} else if h, ok := small[d.Methods[i].MethodName]; ok {
			d.Methods[i].Handler = h
		}
	}
	return d
}()

// refusableRequest is a request message that takes the server codec's
// refusal (its RefuseRecv method: a message over the method's few-KB limit,
// malformed gzip), so the handler answers with that status's code instead
// of gRPC's INTERNAL for an Unmarshal error.
type refusableRequest struct {
	proto.Message
	err error
}

func (r *refusableRequest) RefuseRecv(err error) { r.err = err }

// smallUnary is the generated unary handler of a metadata method, receiving
// its request through refusableRequest.
func smallUnary[Req any, PReq interface {
	*Req
	proto.Message
}, Res any](method string, call func(*grpcService, context.Context, PReq) (*Res, error)) grpc.MethodHandler {
	return func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
		in := &refusableRequest{Message: PReq(new(Req))}
		if err := dec(in); err != nil {
			return nil, err
		}
		if in.err != nil {
			return nil, in.err
		}
		handle := func(ctx context.Context, req any) (any, error) {
			return call(srv.(*grpcService), ctx, req.(PReq))
		}
		if interceptor == nil {
			return handle(ctx, in.Message)
		}
		return interceptor(ctx, in.Message, &grpc.UnaryServerInfo{Server: srv, FullMethod: method}, handle)
	}
}

// modelInferHandler runs the interceptors (authentication, panic recovery)
// first, then admission, and only then decodes the request.
func modelInferHandler(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	g := srv.(*grpcService)
	handle := func(ctx context.Context, _ any) (any, error) {
		res, err := g.s.modelInferGRPC(ctx, dec)
		return res, serving.GRPCStatus(g.s.log, pb.GRPCInferenceService_ModelInfer_FullMethodName, err)
	}
	if interceptor == nil {
		return handle(ctx, nil)
	}
	info := &grpc.UnaryServerInfo{Server: srv, FullMethod: pb.GRPCInferenceService_ModelInfer_FullMethodName}
	return interceptor(ctx, (*pb.ModelInferRequest)(nil), info, handle)
}

// grpcService implements GRPCInferenceService; every error it returns is a
// status from the one error table.
type grpcService struct {
	pb.UnimplementedGRPCInferenceServiceServer
	s *Server
}

func (g *grpcService) ServerLive(context.Context, *pb.ServerLiveRequest) (*pb.ServerLiveResponse, error) {
	return &pb.ServerLiveResponse{Live: true}, nil
}

func (g *grpcService) ServerReady(context.Context, *pb.ServerReadyRequest) (*pb.ServerReadyResponse, error) {
	return &pb.ServerReadyResponse{Ready: g.s.backend.Ready()}, nil
}

func (g *grpcService) ModelReady(_ context.Context, req *pb.ModelReadyRequest) (*pb.ModelReadyResponse, error) {
	ready, err := g.s.modelReady(req.GetName(), req.GetVersion())
	if err != nil {
		return nil, serving.GRPCStatus(g.s.log, pb.GRPCInferenceService_ModelReady_FullMethodName, err)
	}
	return &pb.ModelReadyResponse{Ready: ready}, nil
}

func (g *grpcService) ServerMetadata(context.Context, *pb.ServerMetadataRequest) (*pb.ServerMetadataResponse, error) {
	return &pb.ServerMetadataResponse{Name: g.s.opts.ServerName, Version: g.s.opts.ServerVersion, Extensions: []string{}}, nil
}

func (g *grpcService) ModelMetadata(_ context.Context, req *pb.ModelMetadataRequest) (*pb.ModelMetadataResponse, error) {
	md, err := g.s.modelMetadata(req.GetName(), req.GetVersion())
	if err != nil {
		return nil, serving.GRPCStatus(g.s.log, pb.GRPCInferenceService_ModelMetadata_FullMethodName, err)
	}
	res := &pb.ModelMetadataResponse{Name: md.Name, Versions: md.Versions, Platform: md.Platform, Properties: md.Properties}
	for _, t := range md.Inputs {
		res.Inputs = append(res.Inputs, &pb.ModelMetadataResponse_TensorMetadata{Name: t.Name, Datatype: t.Datatype, Shape: t.Shape})
	}
	for _, t := range md.Outputs {
		res.Outputs = append(res.Outputs, &pb.ModelMetadataResponse_TensorMetadata{Name: t.Name, Datatype: t.Datatype, Shape: t.Shape})
	}
	return res, nil
}

// modelInferGRPC admits, decodes, runs and encodes one ModelInfer call:
// raw outputs when the request used raw inputs, typed contents otherwise.
func (s *Server) modelInferGRPC(ctx context.Context, dec func(any) error) (*pb.ModelInferResponse, error) {
	req, err := s.beginRead(ctx)
	if err != nil {
		return nil, err
	}
	defer req.Close()
	in, err := s.decodeModelInfer(ctx, req, dec)
	if err != nil {
		return nil, err
	}
	inputs, err := decodeGRPCInputs(in)
	if err != nil {
		return nil, err
	}
	d := &decodedRequest{model: in.GetModelName(), version: in.GetModelVersion(), inputs: inputs}
	for _, o := range in.GetOutputs() {
		d.outputs = append(d.outputs, o.GetName())
	}
	m, outputs, err := s.infer(ctx, req, d)
	if err != nil {
		return nil, err
	}
	res := &pb.ModelInferResponse{ModelName: m.Name(), ModelVersion: m.Version(), Id: in.GetId()}
	raw := len(in.GetRawInputContents()) > 0
	for _, o := range outputs {
		t := &pb.ModelInferResponse_InferOutputTensor{Name: o.name, Datatype: o.datatype, Shape: o.shape}
		switch {
		case raw:
			res.RawOutputContents = append(res.RawOutputContents, rawBytes(o))
		case o.datatype == typeFP32:
			t.Contents = &pb.InferTensorContents{Fp32Contents: o.fp32}
		default:
			t.Contents = &pb.InferTensorContents{Int64Contents: o.i64}
		}
		res.Outputs = append(res.Outputs, t)
	}
	req.Finish()
	return res, nil
}

// decodeModelInfer reads a ModelInferRequest's bytes, counts what it
// declares (countInferRequest) and refuses it past --max-nodes,
// --max-edges or the budget, grows the request's reservation to what
// decoding takes, and only then decodes it.
func (s *Server) decodeModelInfer(ctx context.Context, req Request, dec func(any) error) (*pb.ModelInferRequest, error) {
	lim := s.backend.Limits()
	raw := &rawInferRequest{check: func(wire int64, c inferCounts) error {
		if lim.MaxNodes > 0 && c.nodes > int64(lim.MaxNodes) {
			return tooLargef("request has %d nodes, limit is %d (--max-nodes)", c.nodes, lim.MaxNodes)
		}
		if lim.MaxEdges > 0 && c.edges > int64(lim.MaxEdges) {
			return tooLargef("request has %d edges, limit is %d (--max-edges)", c.edges, lim.MaxEdges)
		}
		// gRPC's receive buffers (the frames and the message they are
		// copied into) and the decoded message.
		return httpx.ReserveDecoded(ctx, req, 2*wire+c.decoded, lim.Budget)
	}}
	if err := dec(raw); err != nil {
		// gRPC's own status (message too large, bad compression).
		return nil, err
	}
	if raw.err != nil {
		return nil, raw.err
	}
	return raw.msg, nil
}

// decodeGRPCInputs reads each input from its typed contents or from
// raw_input_contents (then one entry per input, in order, and no contents).
func decodeGRPCInputs(req *pb.ModelInferRequest) ([]inputTensor, error) {
	raw := req.GetRawInputContents()
	if len(raw) > 0 && len(raw) != len(req.GetInputs()) {
		return nil, invalidf("raw_input_contents has %d entries for %d inputs (want one per input, in order)", len(raw), len(req.GetInputs()))
	}
	inputs := make([]inputTensor, len(req.GetInputs()))
	for i, in := range req.GetInputs() {
		t := &inputs[i]
		*t = inputTensor{name: in.GetName(), datatype: in.GetDatatype(), shape: in.GetShape()}
		if len(raw) > 0 {
			if hasContents(in.GetContents()) {
				return nil, invalidf("input %s: contents is set, but the request uses raw_input_contents (use one or the other)", gcnerr.Echo(t.name))
			}
			if err := decodeRaw(t, raw[i]); err != nil {
				return nil, err
			}
			continue
		}
		if err := decodeContents(t, in.GetContents()); err != nil {
			return nil, err
		}
	}
	return inputs, nil
}

// hasContents reports whether c holds any element (an empty contents
// message, as some clients send next to raw inputs, holds none).
func hasContents(c *pb.InferTensorContents) bool {
	return len(c.GetBoolContents())+len(c.GetIntContents())+len(c.GetInt64Contents())+len(c.GetUintContents())+
		len(c.GetUint64Contents())+len(c.GetFp32Contents())+len(c.GetFp64Contents())+len(c.GetBytesContents()) > 0
}

// decodeContents reads typed contents from the field the datatype names,
// refusing data in any other field.
func decodeContents(t *inputTensor, c *pb.InferTensorContents) error {
	if err := checkDatatype(t.name, t.datatype); err != nil {
		return err
	}
	want := map[string]string{typeFP32: "fp32_contents", typeINT32: "int_contents", typeINT64: "int64_contents"}[t.datatype]
	filled := ""
	for _, f := range []struct {
		field string
		n     int
	}{
		{"bool_contents", len(c.GetBoolContents())}, {"int_contents", len(c.GetIntContents())},
		{"int64_contents", len(c.GetInt64Contents())}, {"uint_contents", len(c.GetUintContents())},
		{"uint64_contents", len(c.GetUint64Contents())}, {"fp32_contents", len(c.GetFp32Contents())},
		{"fp64_contents", len(c.GetFp64Contents())}, {"bytes_contents", len(c.GetBytesContents())},
	} {
		if f.n > 0 && f.field != want && filled == "" {
			filled = f.field
		}
	}
	if filled != "" {
		return invalidf("input %s: datatype %s takes contents.%s, not contents.%s", gcnerr.Echo(t.name), t.datatype, want, filled)
	}
	switch t.datatype {
	case typeFP32:
		t.fp32 = c.GetFp32Contents()
		return checkCount(t, len(t.fp32), want)
	case typeINT32:
		ints := c.GetIntContents()
		if err := checkCount(t, len(ints), want); err != nil {
			return err
		}
		t.ints = make([]int64, len(ints))
		for i, v := range ints {
			t.ints[i] = int64(v)
		}
	default:
		t.ints = c.GetInt64Contents()
		return checkCount(t, len(t.ints), want)
	}
	return nil
}

// rawBytes encodes an output's elements little-endian.
func rawBytes(o outputTensor) []byte {
	if o.datatype == typeFP32 {
		b := make([]byte, 4*len(o.fp32))
		for i, v := range o.fp32 {
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
		}
		return b
	}
	b := make([]byte, 8*len(o.i64))
	for i, v := range o.i64 {
		binary.LittleEndian.PutUint64(b[8*i:], uint64(v))
	}
	return b
}

// beginRead admits a ModelInfer call before its message is read: with a
// backend that can (ServingBackend), reserving what reading holds
// (readBound) rather than Begin's decode bound of the largest message.
func (s *Server) beginRead(ctx context.Context) (Request, error) {
	if b, ok := s.backend.(interface {
		BeginRead(ctx context.Context, readBytes int64) (Request, error)
	}); ok {
		return b.BeginRead(ctx, readBound(ctx, s.opts.MaxRequestBytes))
	}
	return s.backend.Begin(ctx, s.opts.MaxRequestBytes)
}

// readBound is what a request message of up to maxBytes can hold while it
// is received and unmarshalled: gRPC's frame buffers and the message (twice
// its size), three times for a compressed call (grpc-encoding), which also
// holds the compressed bytes.
func readBound(ctx context.Context, maxBytes int64) int64 {
	if st, ok := grpc.ServerTransportStreamFromContext(ctx).(interface{ RecvCompress() string }); ok {
		if c := st.RecvCompress(); c != "" && c != "identity" {
			return 3 * maxBytes
		}
	}
	return 2 * maxBytes
}
