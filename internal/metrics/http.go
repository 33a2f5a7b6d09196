package metrics

import (
	"io"
	"net/http"
	"time"

	"github.com/gcnserve/gcnserve/internal/reqlog"
)

// UnmatchedRoute is the method label of HTTP requests no route matched
// (404s, 405s): the path is the client's choice and would grow the label
// set without bound.
const UnmatchedRoute = "unmatched"

// HTTPMiddleware counts, times and sizes every HTTP request that next
// serves. The method label is the pattern of the routes entry that matches
// the request ("POST /v1/process-graph", "GET /v2/models/{name}"), so the
// label set stays the routes' size; routes is consulted, not served, so next
// may be routes itself or routes wrapped in other middleware (auth, TLS
// redirects). The code label is the HTTP status written (200 when the
// handler wrote none).
func (m *Metrics) HTTPMiddleware(routes *http.ServeMux, next http.Handler) http.Handler {
	if m == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		route := UnmatchedRoute
		if _, pattern := routes.Handler(r); pattern != "" {
			route = pattern
		}
		inFlight := m.inFlight.WithLabelValues(ProtocolHTTP)
		inFlight.Inc()
		body := &countingBody{ReadCloser: r.Body}
		r2 := r.WithContext(r.Context())
		r2.Body = body
		rw := &statusWriter{ResponseWriter: w}
		defer func() {
			inFlight.Dec()
			status := rw.status
			if status == 0 {
				status = http.StatusOK
			}
			m.finish(reqlog.Request{
				Protocol:      ProtocolHTTP,
				Method:        route,
				Code:          httpCode(status),
				OK:            status < 400,
				Peer:          r.RemoteAddr,
				RequestBytes:  body.n,
				ResponseBytes: rw.n,
				Duration:      time.Since(start),
			})
		}()
		next.ServeHTTP(rw, r2)
	})
}

// countingBody counts the request body bytes the handler read.
type countingBody struct {
	io.ReadCloser
	n int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	return n, err
}

// statusWriter records the status and the body bytes written.
type statusWriter struct {
	http.ResponseWriter
	status int
	n      int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.n += int64(n)
	return n, err
}

// Flush passes through, for handlers that stream.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the underlying writer
// (deadlines, hijacking).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
