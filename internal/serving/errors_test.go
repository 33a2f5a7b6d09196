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
