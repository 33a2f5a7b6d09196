// Package reqlog logs failed requests, one warn line each, rate-limited so a
// flood of bad requests cannot fill a disk: past the limit, lines are counted
// and a single "suppressed" summary says how many were dropped.
//
// The instrumentation layer (internal/metrics' gRPC stats handler and HTTP
// middleware) builds a Request when each request ends and hands it to
// (*Logger).Finished; this package knows nothing about gRPC or HTTP.
package reqlog

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/gcnserve/gcnserve/internal/gcnerr"
)

// Request is what the instrumentation layer saw of one finished request.
type Request struct {
	// Protocol is "grpc" or "http".
	Protocol string
	// Method is the gRPC method ("GCNService/ProcessGraph") or the HTTP
	// route pattern ("POST /v1/process-graph").
	Method string
	// Code is the gRPC code name ("InvalidArgument") or the HTTP status
	// ("400"); OK reports whether the request succeeded.
	Code string
	OK   bool
	// Peer is the client's address, "" when unknown.
	Peer string
	// RequestBytes and ResponseBytes are the message sizes (for gRPC as
	// the codec receives them: uncompressed, except a gzip request, which
	// the server's codec inflates itself; body bytes for HTTP); 0 when
	// none was read or written.
	RequestBytes, ResponseBytes int64
	// Duration is from the request's start to its end.
	Duration time.Duration
	// Message is the error message sent to the client ("" for HTTP, whose
	// body the middleware does not keep).
	Message string
}

// Options tune the rate limit. The zero value means the defaults.
type Options struct {
	// PerSecond is the sustained rate of failure lines. Default 10.
	PerSecond float64
	// Burst is how many lines may be written at once after a quiet spell.
	// Default 20.
	Burst int
	// SummaryEvery is how long after the first suppressed line the summary
	// is written. Default 1s.
	SummaryEvery time.Duration
}

// Logger writes failed requests to a slog.Logger under a token bucket.
type Logger struct {
	log   *slog.Logger
	rate  float64 // tokens per second
	burst float64
	every time.Duration

	mu         sync.Mutex // guards the fields below
	tokens     float64
	last       time.Time // when tokens was last refilled
	suppressed int64     // lines dropped since the last summary
	pending    bool      // a summary is scheduled
	now        func() time.Time
}

// New returns a Logger writing to log (slog.Default() when nil).
func New(log *slog.Logger, opts Options) *Logger {
	if log == nil {
		log = slog.Default()
	}
	if opts.PerSecond <= 0 {
		opts.PerSecond = 10
	}
	if opts.Burst <= 0 {
		opts.Burst = 20
	}
	if opts.SummaryEvery <= 0 {
		opts.SummaryEvery = time.Second
	}
	return &Logger{
		log: log, rate: opts.PerSecond, burst: float64(opts.Burst), every: opts.SummaryEvery,
		tokens: float64(opts.Burst), now: time.Now,
	}
}

// Finished logs r at warn if it failed and the rate limit allows; successful
// requests are not logged. A nil Logger does nothing. Safe for concurrent use.
func (l *Logger) Finished(r Request) {
	if l == nil || r.OK {
		return
	}
	if !l.allow() {
		return
	}
	attrs := []slog.Attr{
		slog.String("protocol", r.Protocol),
		slog.String("method", r.Method),
		slog.String("code", r.Code),
		slog.String("peer", r.Peer),
		slog.Int64("request_bytes", r.RequestBytes),
		slog.Int64("response_bytes", r.ResponseBytes),
		slog.Duration("duration", r.Duration),
	}
	if r.Message != "" {
		// A message may repeat client input: at most 4 KiB of it.
		attrs = append(attrs, slog.String("error", gcnerr.Clip(r.Message)))
	}
	l.log.LogAttrs(context.Background(), slog.LevelWarn, "request failed", attrs...)
}

// allow takes a token, or counts the line as suppressed and makes sure a
// summary will follow.
func (l *Logger) allow() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if !l.last.IsZero() {
		l.tokens = min(l.burst, l.tokens+now.Sub(l.last).Seconds()*l.rate)
	}
	l.last = now
	if l.tokens >= 1 {
		l.tokens--
		return true
	}
	l.suppressed++
	if !l.pending {
		l.pending = true
		// AfterFunc starts no goroutine until it fires, so an idle Logger
		// holds nothing open and needs no Close.
		time.AfterFunc(l.every, l.summarize)
	}
	return false
}

// summarize writes how many lines were dropped since the last summary.
func (l *Logger) summarize() {
	l.mu.Lock()
	n := l.suppressed
	l.suppressed, l.pending = 0, false
	l.mu.Unlock()
	if n > 0 {
		l.log.LogAttrs(context.Background(), slog.LevelWarn, "failed-request log lines suppressed",
			slog.Int64("suppressed", n), slog.Duration("window", l.every))
	}
}

// ReplaceAttr is a slog.HandlerOptions.ReplaceAttr that writes durations as
// Go duration strings ("1.5ms") instead of slog.JSONHandler's integer
// nanoseconds, so a JSON log reads like the text one. Use it for every
// handler the server builds.
func ReplaceAttr(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		return slog.String(a.Key, a.Value.Duration().String())
	}
	return a
}
