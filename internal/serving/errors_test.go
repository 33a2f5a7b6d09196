package serving

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gcnserve/gcnserve/gcn"
)

// TestErrorTable: every kind of refusal gets its one gRPC code and HTTP
// status on every transport, keeps its message (wrapped or not), and an
// unexpected error hides its detail.
func TestErrorTable(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	tests := []struct {
		err      error
		code     codes.Code
		httpCode int
		msg      string
	}{
		{gcn.Errorf(gcn.KindInvalidArgument, "node 5: empty id"), codes.InvalidArgument, 400, "node 5: empty id"},
		{fmt.Errorf("decode: %w", gcn.Errorf(gcn.KindInvalidArgument, "x: NaN")), codes.InvalidArgument, 400, "x: NaN"},
		{gcn.Errorf(gcn.KindTooLarge, "request has 9 nodes, limit is 8 (--max-nodes)"), codes.ResourceExhausted, 413, "request has 9 nodes, limit is 8 (--max-nodes)"},
		{gcn.Errorf(gcn.KindNotFound, `model "z" not found; models: a`), codes.NotFound, 404, `model "z" not found; models: a`},
		{gcn.Errorf(gcn.KindOverloaded, "memory budget in use"), codes.ResourceExhausted, 429, "memory budget in use"},
		{gcn.ErrClosed, codes.Unavailable, 503, "model closed"},
		{gcn.Errorf(gcn.KindUnauthenticated, "missing bearer token"), codes.Unauthenticated, 401, "missing bearer token"},
		{context.Canceled, codes.Canceled, 499, "request canceled"},
		{fmt.Errorf("run: %w", context.DeadlineExceeded), codes.DeadlineExceeded, 504, "deadline exceeded before the model finished"},
		{status.Error(codes.ResourceExhausted, "grpc: received message larger than max"), codes.ResourceExhausted, 429, "grpc: received message larger than max"},
		{errors.New("onnxruntime: secret internals"), codes.Internal, 500, internalMessage},
	}
	for _, tt := range tests {
		st := status.Convert(GRPCStatus(quiet, "m", tt.err))
		if st.Code() != tt.code || st.Message() != tt.msg {
			t.Errorf("GRPCStatus(%v) = %v %q, want %v %q", tt.err, st.Code(), st.Message(), tt.code, tt.msg)
		}
		code, msg := HTTPStatus(quiet, "m", tt.err)
		if code != tt.httpCode || msg != tt.msg {
			t.Errorf("HTTPStatus(%v) = %d %q, want %d %q", tt.err, code, msg, tt.httpCode, tt.msg)
		}
		if strings.Contains(msg, "secret") {
			t.Errorf("HTTPStatus leaks the detail of %v", tt.err)
		}
	}
	if GRPCStatus(quiet, "m", nil) != nil {
		t.Error("GRPCStatus(nil) is not nil")
	}
}

func TestParseVersion(t *testing.T) {
	for in, want := range map[string]int64{"": 0, "1": 1, "42": 42} {
		if got, err := ParseVersion(in); err != nil || got != want {
			t.Errorf("ParseVersion(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"0", "-1", "x", "1.5", " 1", "+1", "00001", "01", "-0", "1 ", "9223372036854775808"} {
		var e *gcn.Error
		if _, err := ParseVersion(in); !errors.As(err, &e) || e.Kind != gcn.KindInvalidArgument {
			t.Errorf("ParseVersion(%q) = %v, want InvalidArgument", in, err)
		}
	}
}

// TestCheckModelRef: a name or version no model can have is refused
// before lookup, echoing at most 256 bytes of it with its length.
func TestCheckModelRef(t *testing.T) {
	long := strings.Repeat("m", 1<<20)
	tests := []struct {
		name, model, version string
		want                 string // "" accepted; else a substring of the message
	}{
		{"empty: the default model", "", "", ""},
		{"ordinary", "gcn-karate", "3", ""},
		{"255 bytes", strings.Repeat("n", 255), "", ""},
		{"unicode", "modèle", "", ""},
		{"256 bytes", strings.Repeat("n", 256), "", "longer than 255 bytes"},
		{"1 MiB name", long, "", `... (1048576 bytes) is longer than 255 bytes`},
		{"control character", "kar\x00ate", "", `byte 3 is the control character '\x00'`},
		{"newline", "a\nb", "", "control character"},
		{"not UTF-8", "a\xffb", "", "is not UTF-8"},
		{"1 MiB version", "karate", long, `model version "mmm`},
	}
	for _, tt := range tests {
		err := CheckModelRef(tt.model, tt.version)
		if tt.want == "" {
			if err != nil {
				t.Errorf("%s: %v, want accepted", tt.name, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %.200v, want an error containing %q", tt.name, err, tt.want)
			continue
		}
		if st := GRPCStatus(nil, "m", err); status.Code(st) != codes.InvalidArgument || len(status.Convert(st).Message()) > 400 {
			t.Errorf("%s: %v with a %d-byte message, want INVALID_ARGUMENT of at most 400 bytes", tt.name, status.Code(st), len(status.Convert(st).Message()))
		}
	}
}

// TestStatusClipped: a message that repeats a huge client string (an id
// in a graphwire error) reaches the client cut to 4 KiB, with its length.
func TestStatusClipped(t *testing.T) {
	err := gcn.Errorf(gcn.KindInvalidArgument, "node 1: duplicate id %q", strings.Repeat("i", 1<<20))
	msg := status.Convert(GRPCStatus(nil, "m", err)).Message()
	if len(msg) > 4200 || !strings.Contains(msg, "bytes cut") {
		t.Errorf("gRPC message of %d bytes (%.60q...), want at most 4200 saying it was cut", len(msg), msg)
	}
	code, hmsg := HTTPStatus(nil, "m", err)
	if code != 400 || len(hmsg) > 4200 {
		t.Errorf("HTTP %d with %d bytes, want 400 with at most 4200", code, len(hmsg))
	}
}
