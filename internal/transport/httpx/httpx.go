// Package httpx is what the HTTP transports (internal/transport/httpjson,
// the REST form of internal/transport/oip) share: the request prologue that
// reads a body under the server's limits (ReadBody), the bound on what a
// JSON body becomes once decoded (JSONCounts), the one JSON error body
// (WriteError, WriteJSON), and the default request size
// (DefaultMaxRequestBytes).
package httpx

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/gcnserve/gcnserve/internal/serving"
)

// DefaultMaxRequestBytes is the largest request body or message the server
// takes by default (--max-request-bytes): 64 MiB, which admits a
// Cora-sized request with dense features (15.6 MB).
const DefaultMaxRequestBytes = 64 << 20

// StatusError is a refusal whose HTTP status the one error table
// (serving.HTTPStatus) has no kind for, because only HTTP has it: 408 (the
// body did not arrive in time) and 415 (a Content-Encoding the server does
// not decode). Msg names the offending thing.
type StatusError struct {
	Code int
	Msg  string
}

func (e *StatusError) Error() string { return e.Msg }

// WriteError answers err as {"error": "..."}: a *StatusError with its own
// status, every other error with the status and message of the one error
// table (internal errors are logged there with their detail; the client
// gets a generic message). route names the request in that log.
func WriteError(w http.ResponseWriter, log *slog.Logger, route string, err error) {
	if se, ok := errors.AsType[*StatusError](err); ok {
		WriteJSON(w, se.Code, ErrorBody{Error: se.Msg})
		return
	}
	code, msg := serving.HTTPStatus(log, route, err)
	WriteJSON(w, code, ErrorBody{Error: msg})
}

// ErrorBody is the body of every HTTP error the server answers.
type ErrorBody struct {
	Error string `json:"error"`
}

// WriteJSON answers v as JSON with status code and its Content-Length. A
// value that does not marshal (a bug) answers 500 with an ErrorBody.
func WriteJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code, b = http.StatusInternalServerError, []byte(`{"error":"internal error: response did not encode"}`)
	}
	b = append(b, '\n')
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(code)
	_, _ = w.Write(b)
}
