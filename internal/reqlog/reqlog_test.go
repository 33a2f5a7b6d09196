package reqlog

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(b.b.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

func failed(i int) Request {
	return Request{Protocol: "grpc", Method: "GCNService/ProcessGraph", Code: "InvalidArgument",
		Peer: "127.0.0.1:5000", RequestBytes: int64(i), Duration: 1500 * time.Microsecond, Message: "edge 1: bad"}
}

// TestRateLimit: a flood of failures writes the burst, then one summary
// with the number suppressed; successes are never logged.
func TestRateLimit(t *testing.T) {
	buf := &syncBuffer{}
	log := slog.New(slog.NewJSONHandler(buf, &slog.HandlerOptions{ReplaceAttr: ReplaceAttr}))
	l := New(log, Options{PerSecond: 1, Burst: 5, SummaryEvery: 50 * time.Millisecond})
	clock := time.Unix(1000, 0)
	l.now = func() time.Time { return clock } // frozen: no refill during the flood

	l.Finished(Request{OK: true, Code: "OK"})
	for i := range 1000 {
		l.Finished(failed(i))
	}
	deadline := time.Now().Add(5 * time.Second)
	var lines []map[string]any
	for {
		lines = buf.lines(t)
		if len(lines) == 6 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(lines) != 6 {
		t.Fatalf("got %d log lines, want 5 failures and 1 summary: %v", len(lines), lines)
	}
	for _, line := range lines[:5] {
		if line["msg"] != "request failed" || line["level"] != "WARN" || line["code"] != "InvalidArgument" ||
			line["peer"] != "127.0.0.1:5000" || line["duration"] != "1.5ms" || line["error"] != "edge 1: bad" {
			t.Errorf("failure line %v: want WARN request failed with code, peer, duration 1.5ms, error", line)
		}
	}
	if s := lines[5]; s["msg"] != "failed-request log lines suppressed" || s["suppressed"] != float64(995) || s["window"] != "50ms" {
		t.Errorf("summary line %v: want suppressed 995, window 50ms", s)
	}

	// Tokens come back with time.
	clock = clock.Add(2 * time.Second)
	l.Finished(failed(0))
	l.Finished(failed(1))
	l.Finished(failed(2))
	if n := len(buf.lines(t)); n != 8 {
		t.Errorf("after 2s at 1/s: got %d lines, want 8 (2 more)", n)
	}
}

func TestReplaceAttrDurations(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{ReplaceAttr: ReplaceAttr}))
	log.Info("x", "load_time", 1234*time.Millisecond, slog.Group("g", slog.Duration("d", 3*time.Nanosecond)), "n", 7)
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	if m["load_time"] != "1.234s" {
		t.Errorf("load_time = %v, want \"1.234s\"", m["load_time"])
	}
	if g, _ := m["g"].(map[string]any); g["d"] != "3ns" {
		t.Errorf("g.d = %v, want \"3ns\"", m["g"])
	}
	if m["n"] != float64(7) {
		t.Errorf("n = %v, want 7 (only durations change)", m["n"])
	}
}

func TestNilLogger(t *testing.T) {
	var l *Logger
	l.Finished(failed(0)) // must not panic
}
