package oip

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/gcnserve/gcnserve/internal/serving"
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
type restRequest struct {
	ID         string         `json:"id"`
	Parameters map[string]any `json:"parameters"`
	Inputs     []restInput    `json:"inputs"`
	Outputs    []restOutput   `json:"outputs"`
}

type restInput struct {
	Name       string          `json:"name"`
	Shape      []int64         `json:"shape"`
	Datatype   string          `json:"datatype"`
	Parameters map[string]any  `json:"parameters"`
	Data       json.RawMessage `json:"data"`
}

type restOutput struct {
	Name       string         `json:"name"`
	Parameters map[string]any `json:"parameters"`
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
	// Admission before the body is read: for the declared length when the
	// client gave one (a larger body fails the read), else for the limit.
	tooLarge := tooLargef("request body is larger than the limit of %d bytes", s.opts.MaxRequestBytes)
	wire := s.opts.MaxRequestBytes
	if r.ContentLength > wire {
		s.writeError(w, r, tooLarge)
		return
	}
	if r.ContentLength >= 0 {
		wire = r.ContentLength
	}
	sreq, err := s.backend.Begin(r.Context(), wire)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer sreq.Close()
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.opts.MaxRequestBytes))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			err = tooLarge
		} else {
			err = invalidf("reading the request body: %v", err)
		}
		s.writeError(w, r, err)
		return
	}
	if err := sreq.SetWireBytes(r.Context(), int64(len(body))); err != nil {
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

// decodeRESTRequest parses an inference request body: JSON, or with
// headerLength set, a JSON header of that many bytes followed by the binary
// data of the inputs that declare "binary_data_size", in input order.
func decodeRESTRequest(body []byte, headerLength string) (*restRequest, []inputTensor, error) {
	head, binary := body, []byte(nil)
	if headerLength != "" {
		n, err := strconv.Atoi(headerLength)
		if err != nil || n < 0 || n > len(body) {
			return nil, nil, invalidf("%s: %q is not a length within the %d-byte body", headerContentLength, headerLength, len(body))
		}
		head, binary = body[:n], body[n:]
	}
	req := new(restRequest)
	dec := json.NewDecoder(bytes.NewReader(head))
	if err := dec.Decode(req); err != nil {
		return nil, nil, invalidf("malformed inference request: %v", err)
	}
	if dec.More() {
		return nil, nil, invalidf("malformed inference request: data after the JSON object")
	}
	inputs := make([]inputTensor, len(req.Inputs))
	for i, in := range req.Inputs {
		t := &inputs[i]
		*t = inputTensor{name: in.Name, datatype: in.Datatype, shape: in.Shape}
		if in.Shape == nil {
			return nil, nil, invalidf("input %q: shape is missing", in.Name)
		}
		if size, ok := in.Parameters["binary_data_size"]; ok {
			n, ok := size.(float64)
			if !ok || n < 0 || n != float64(int64(n)) {
				return nil, nil, invalidf("input %q: parameter binary_data_size must be a byte count", in.Name)
			}
			if int(n) > len(binary) {
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

// encodeRESTResponse builds the response object and, for the outputs asked
// for as binary data, their little-endian bytes in output order.
func encodeRESTResponse(m Model, req *restRequest, outputs []outputTensor) (*restResponse, [][]byte) {
	binaryAll, _ := req.Parameters["binary_data_output"].(bool)
	wantBinary := make(map[string]bool, len(req.Outputs))
	for _, o := range req.Outputs {
		b, _ := o.Parameters["binary_data"].(bool)
		wantBinary[o.Name] = b
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

// writeError answers {"error": msg} with the one error table's status;
// internal errors are logged there with their detail, and the client gets a
// generic message.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	code, msg := serving.HTTPStatus(s.log, r.Method+" "+r.URL.Path, err)
	writeJSON(w, code, map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code, b = http.StatusInternalServerError, []byte(`{"error":"internal error"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(code)
	_, _ = w.Write(b)
}
