package serving

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"unicode"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gcnserve/gcnserve/internal/gcnerr"
)

// The one error table. Every transport turns errors into gRPC statuses or
// HTTP statuses here, so a refusal gets the same class on every protocol.
// HTTP statuses follow the standard gRPC-to-HTTP mapping (google.rpc.Code),
// with 413 and 429 for the two kinds of RESOURCE_EXHAUSTED.
var kindCodes = map[gcnerr.Kind]struct {
	grpc codes.Code
	http int
}{
	gcnerr.InvalidArgument: {codes.InvalidArgument, http.StatusBadRequest},
	gcnerr.TooLarge:        {codes.ResourceExhausted, http.StatusRequestEntityTooLarge},
	gcnerr.NotFound:        {codes.NotFound, http.StatusNotFound},
	gcnerr.Overloaded:      {codes.ResourceExhausted, http.StatusTooManyRequests},
	gcnerr.Unavailable:     {codes.Unavailable, http.StatusServiceUnavailable},
	gcnerr.Unauthenticated: {codes.Unauthenticated, http.StatusUnauthorized},
	// Stored graphs (graphs.go): a removed model or one without
	// receptive_field; a delta's expected_revision conflict; an existing id.
	gcnerr.FailedPrecondition: {codes.FailedPrecondition, http.StatusBadRequest},
	gcnerr.Aborted:            {codes.Aborted, http.StatusConflict},
	gcnerr.AlreadyExists:      {codes.AlreadyExists, http.StatusConflict},
}

// internalMessage is what a client sees of an unexpected error.
const internalMessage = "internal error (details in the server log)"

// classify returns err's gRPC code and client message. An unexpected error
// gets Internal and a generic message; its detail is logged.
func classify(log *slog.Logger, method string, err error) (codes.Code, string) {
	var e *gcnerr.Error
	switch {
	case errors.As(err, &e):
		if c, ok := kindCodes[e.Kind]; ok {
			return c.grpc, gcnerr.Clip(e.Msg)
		}
	case errors.Is(err, context.Canceled):
		return codes.Canceled, "request canceled"
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded, "deadline exceeded before the model finished"
	}
	if s, ok := status.FromError(err); ok {
		return s.Code(), gcnerr.Clip(s.Message())
	}
	if log == nil {
		log = slog.Default()
	}
	log.Error("request failed", "method", method, "err", err)
	return codes.Internal, internalMessage
}

// GRPCStatus converts err to a gRPC status error (nil for nil). Typed
// refusals keep their message, which names the offending node, edge,
// tensor, limit or model.
func GRPCStatus(log *slog.Logger, method string, err error) error {
	if err == nil {
		return nil
	}
	code, msg := classify(log, method, err)
	return status.Error(code, msg)
}

// HTTPStatus converts err to an HTTP status and the message for the
// response body.
func HTTPStatus(log *slog.Logger, method string, err error) (int, string) {
	var e *gcnerr.Error
	if errors.As(err, &e) {
		if c, ok := kindCodes[e.Kind]; ok {
			return c.http, gcnerr.Clip(e.Msg)
		}
	}
	code, msg := classify(log, method, err)
	return HTTPStatusOf(code), msg
}

// HTTPStatusOf maps a gRPC code to its HTTP status (google.rpc.Code's
// documented mapping; 499 is the client-closed-request convention).
func HTTPStatusOf(c codes.Code) int {
	switch c {
	case codes.OK:
		return http.StatusOK
	case codes.Canceled:
		return 499
	case codes.InvalidArgument, codes.OutOfRange, codes.FailedPrecondition:
		return http.StatusBadRequest
	case codes.DeadlineExceeded:
		return http.StatusGatewayTimeout
	case codes.NotFound:
		return http.StatusNotFound
	case codes.AlreadyExists, codes.Aborted:
		return http.StatusConflict
	case codes.PermissionDenied:
		return http.StatusForbidden
	case codes.Unauthenticated:
		return http.StatusUnauthorized
	case codes.ResourceExhausted:
		return http.StatusTooManyRequests
	case codes.Unimplemented:
		return http.StatusNotImplemented
	case codes.Unavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// MaxModelNameBytes is the longest model name a request may give (a
// model's directory name, which file systems bound to 255 bytes).
const MaxModelNameBytes = 255

// maxVersionBytes is the longest version a request may give: a positive
// int64 has at most 19 digits.
const maxVersionBytes = 19

// CheckModelRef refuses, before any lookup, a model name or version that
// no served model can have: a name over MaxModelNameBytes, not UTF-8, or
// holding a control character; a version longer than an int64.
// Messages echo the input through gcnerr.Echo (at most 256 bytes, with its
// length).
func CheckModelRef(model, version string) error {
	if len(model) > MaxModelNameBytes {
		return gcnerr.New(gcnerr.InvalidArgument, "model name %s is longer than %d bytes", gcnerr.Echo(model), MaxModelNameBytes)
	}
	if !utf8.ValidString(model) {
		return gcnerr.New(gcnerr.InvalidArgument, "model name %s is not UTF-8", gcnerr.Echo(model))
	}
	for i, r := range model {
		if unicode.IsControl(r) {
			return gcnerr.New(gcnerr.InvalidArgument, "model name %s: byte %d is the control character %q", gcnerr.Echo(model), i, r)
		}
	}
	if len(version) > maxVersionBytes {
		return gcnerr.New(gcnerr.InvalidArgument, "model version %s is not a positive integer", gcnerr.Echo(version))
	}
	return nil
}
