package oip

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"

	"github.com/gcnserve/gcnserve/internal/transport/httpx"
)

// Routes adds the REST form of the protocol to mux:
//
//	GET  /v2                                             server metadata
//	GET  /v2/health/live, /v2/health/ready               200 when live / ready, else 503
//	GET  /v2/models/{name}[/versions/{version}]          model metadata
//	GET  /v2/models/{name}[/versions/{version}]/ready    200 when ready, else 503 (404: no such model)
//	POST /v2/models/{name}[/versions/{version}]/infer    inference
//
// Errors are {"error": "..."} with the status of the one error table (400
// bad request, 404 no such model, 413 too large, 429 overloaded, 503
// unavailable, 504 deadline, 500 internal).
//
// Inference accepts the JSON form (each input's "data" a flat or nested
// array, row-major) and Triton's binary tensor data extension (an
// Inference-Header-Content-Length header, inputs with parameter
// "binary_data_size", outputs with parameter "binary_data"), which Triton's
// HTTP client uses by default.
func (s *Server) Routes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v2", s.serverMetadataHTTP)
	mux.HandleFunc("GET /v2/{$}", s.serverMetadataHTTP)
	mux.HandleFunc("GET /v2/health/live", s.liveHTTP)
	mux.HandleFunc("GET /v2/health/ready", s.readyHTTP)
	mux.HandleFunc("GET /v2/models/{name}", s.modelMetadataHTTP)
	mux.HandleFunc("GET /v2/models/{name}/versions/{version}", s.modelMetadataHTTP)
	mux.HandleFunc("GET /v2/models/{name}/ready", s.modelReadyHTTP)
	mux.HandleFunc("GET /v2/models/{name}/versions/{version}/ready", s.modelReadyHTTP)
	mux.HandleFunc("POST /v2/models/{name}/infer", s.inferHTTP)
	mux.HandleFunc("POST /v2/models/{name}/versions/{version}/infer", s.inferHTTP)
}

// headerContentLength is the binary tensor data extension's header: the
// length of the JSON part of a body that binary tensor data follows.
const headerContentLength = "Inference-Header-Content-Length"

func (s *Server) serverMetadataHTTP(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, struct {
		Name       string   `json:"name"`
		Version    string   `json:"version"`
		Extensions []string `json:"extensions"`
	}{s.opts.ServerName, s.opts.ServerVersion, []string{"binary_tensor_data"}})
}

func (s *Server) liveHTTP(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]bool{"live": true})
}

func (s *Server) readyHTTP(w http.ResponseWriter, _ *http.Request) {
	ready := s.backend.Ready()
	code := http.StatusOK
	if !ready {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, map[string]bool{"ready": ready})
}

func (s *Server) modelReadyHTTP(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	ready, err := s.modelReady(name, r.PathValue("version"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	code := http.StatusOK
	if !ready {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, struct {
		Name  string `json:"name"`
		Ready bool   `json:"ready"`
	}{name, ready})
}

func (s *Server) modelMetadataHTTP(w http.ResponseWriter, r *http.Request) {
	md, err := s.modelMetadata(r.PathValue("name"), r.PathValue("version"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, md)
}

// restRequest is the inference request JSON object.
//
// Parameters stay raw JSON: boxed into interfaces, a parameter holding a
// long array would cost 24 bytes and more per 2-byte element.
type restRequest struct {
	ID         string                     `json:"id"`
	Parameters map[string]json.RawMessage `json:"parameters"`
	Inputs     []restInput                `json:"inputs"`
	Outputs    []restOutput               `json:"outputs"`
}

type restInput struct {
	Name       string                     `json:"name"`
	Shape      json.RawMessage            `json:"shape"` // parsed by parseShape
	Datatype   string                     `json:"datatype"`
	Parameters map[string]json.RawMessage `json:"parameters"`
	Data       json.RawMessage            `json:"data"`
}

type restOutput struct {
	Name       string                     `json:"name"`
	Parameters map[string]json.RawMessage `json:"parameters"`
}

// restResponse is the inference response JSON object.
type restResponse struct {
	ModelName    string           `json:"model_name"`
	ModelVersion string           `json:"model_version,omitempty"`
	ID           string           `json:"id,omitempty"`
	Outputs      []restOutputData `json:"outputs"`
}

type restOutputData struct {
	Name       string          `json:"name"`
	Datatype   string          `json:"datatype"`
	Shape      []int64         `json:"shape"`
	Parameters map[string]any  `json:"parameters,omitempty"`
	Data       json.RawMessage `json:"data,omitempty"`
}

func (s *Server) inferHTTP(w http.ResponseWriter, r *http.Request) {
	sreq, body, err := httpx.ReadBody(w, r, s.opts.MaxRequestBytes, s.backend.Begin)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer sreq.Close()
	// The JSON part is bounded by its tokens before encoding/json sees it;
	// binary tensor data becomes at most twice its bytes (INT32 widened).
	need := int64(len(body)) + 2*int64(len(body))
	if head, ok := jsonHead(body, r.Header.Get(headerContentLength)); ok {
		need = httpx.CountJSON(head).RESTInferBytes() + 3*int64(len(body)-len(head))
	}
	if err := httpx.ReserveDecoded(r.Context(), sreq, need, s.backend.Limits().Budget); err != nil {
		s.writeError(w, r, err)
		return
	}
	req, inputs, err := decodeRESTRequest(body, r.Header.Get(headerContentLength))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	d := &decodedRequest{model: r.PathValue("name"), version: r.PathValue("version"), inputs: inputs}
	for _, o := range req.Outputs {
		d.outputs = append(d.outputs, o.Name)
	}
	m, outputs, err := s.infer(r.Context(), sreq, d)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	res, binary := encodeRESTResponse(m, req, outputs)
	head, err := json.Marshal(res)
	if err != nil {
		s.writeError(w, r, fmt.Errorf("encoding the response: %w", err))
		return
	}
	sreq.Finish()
	if len(binary) == 0 {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(head)))
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(head)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set(headerContentLength, strconv.Itoa(len(head)))
	size := len(head)
	for _, b := range binary {
		size += len(b)
	}
	w.Header().Set("Content-Length", strconv.Itoa(size))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(head)
	for _, b := range binary {
		_, _ = w.Write(b)
	}
}

// jsonHead is the JSON part of a body: all of it, or with the binary tensor
// data extension's header set, its first headerLength bytes. ok is false
// when headerLength is not a valid length for body.
func jsonHead(body []byte, headerLength string) (head []byte, ok bool) {
	if headerLength == "" {
		return body, true
	}
	n, ok := parseLength(headerLength)
	if !ok || n > int64(len(body)) {
		return nil, false
	}
	return body[:n], true
}

// parseLength reads a byte count in strict decimal, as HTTP writes
// Content-Length: digits only (no sign, no space), at most 18 of them.
func parseLength(s string) (int64, bool) {
	if s == "" || len(s) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = 10*n + int64(c-'0')
	}
	return n, true
}

// decodeRESTRequest parses an inference request body: JSON, or with
// headerLength set, a JSON header of that many bytes followed by the binary
// data of the inputs that declare "binary_data_size", in input order.
func decodeRESTRequest(body []byte, headerLength string) (*restRequest, []inputTensor, error) {
	head, ok := jsonHead(body, headerLength)
	if !ok {
		shown := headerLength
		if len(shown) > 32 {
			shown = shown[:32] + "..."
		}
		return nil, nil, invalidf("%s: %q is not a length (decimal digits) within the %d-byte body", headerContentLength, shown, len(body))
	}
	binary := body[len(head):]
	req := new(restRequest)
	// Unmarshal validates the whole text before it allocates (a Decoder
	// would first copy it into its own buffer).
	if err := json.Unmarshal(head, req); err != nil {
		return nil, nil, invalidf("malformed inference request: %v", err)
	}
	inputs := make([]inputTensor, len(req.Inputs))
	for i, in := range req.Inputs {
		t := &inputs[i]
		if len(in.Shape) == 0 || string(in.Shape) == "null" {
			return nil, nil, invalidf("input %q: shape is missing", in.Name)
		}
		shape, err := parseShape(in.Shape)
		if err != nil {
			return nil, nil, invalidf("input %q: shape: %v", in.Name, err)
		}
		*t = inputTensor{name: in.Name, datatype: in.Datatype, shape: shape}
		if size, ok := in.Parameters["binary_data_size"]; ok {
			n, ok := parseLength(string(size))
			if !ok {
				return nil, nil, invalidf("input %q: parameter binary_data_size must be a byte count", in.Name)
			}
			if n > int64(len(binary)) {
				return nil, nil, invalidf("input %q: binary_data_size is %d bytes, only %d remain in the body", in.Name, int(n), len(binary))
			}
			if len(in.Data) > 0 {
				return nil, nil, invalidf("input %q: both data and binary_data_size are set", in.Name)
			}
			if err := decodeRaw(t, binary[:int(n)]); err != nil {
				return nil, nil, err
			}
			binary = binary[int(n):]
			continue
		}
		if len(in.Data) == 0 || string(in.Data) == "null" {
			return nil, nil, invalidf("input %q: data is missing", in.Name)
		}
		if err := decodeJSONData(t, in.Data); err != nil {
			return nil, nil, err
		}
	}
	if len(binary) > 0 {
		return nil, nil, invalidf("%d bytes of binary data follow the inputs that declare binary_data_size", len(binary))
	}
	return req, inputs, nil
}

// parseShape reads a shape, a JSON array of integers, into a slice of
// exactly its length (encoding/json would grow one as it goes, 35 bytes
// allocated per 2-byte "1,").
func parseShape(raw json.RawMessage) ([]int64, error) {
	n := int(httpx.CountJSON(raw).Scalars)
	return parseIntData(raw, []int64{int64(n)}, n, false)
}

// encodeRESTResponse builds the response object and, for the outputs asked
// for as binary data, their little-endian bytes in output order.
func encodeRESTResponse(m Model, req *restRequest, outputs []outputTensor) (*restResponse, [][]byte) {
	binaryAll := isTrue(req.Parameters["binary_data_output"])
	wantBinary := make(map[string]bool, len(req.Outputs))
	for _, o := range req.Outputs {
		wantBinary[o.Name] = isTrue(o.Parameters["binary_data"])
	}
	res := &restResponse{ModelName: m.Name(), ModelVersion: m.Version(), ID: req.ID, Outputs: make([]restOutputData, len(outputs))}
	var binary [][]byte
	for i, o := range outputs {
		d := restOutputData{Name: o.name, Datatype: o.datatype, Shape: o.shape}
		if b, named := wantBinary[o.name]; b || (!named && binaryAll) {
			raw := rawBytes(o)
			d.Parameters = map[string]any{"binary_data_size": len(raw)}
			binary = append(binary, raw)
		} else if o.datatype == typeFP32 {
			d.Data = appendFloat32s(nil, o.fp32)
		} else {
			d.Data = appendInt64s(nil, o.i64)
		}
		res.Outputs[i] = d
	}
	return res, binary
}

// isTrue reports whether a raw JSON parameter is the literal true.
func isTrue(v json.RawMessage) bool { return string(bytes.TrimSpace(v)) == "true" }

// writeError answers {"error": msg} with the one error table's status
// (httpx.WriteError).
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	httpx.WriteError(w, s.log, r.Method+" "+r.URL.Path, err)
}

func writeJSON(w http.ResponseWriter, code int, v any) { httpx.WriteJSON(w, code, v) }
