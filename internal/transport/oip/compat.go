package oip

// Stand-ins until the public gcn package and internal/serving land on main:
// the same meaning as PLAN.md's gcn.Tensors / gcn.Prediction / gcn.Info,
// gcn.Errorf(kind, ...) and serving.GRPCStatus / serving.HTTPStatus. When they
// land this file shrinks to the aliases and the error helpers call them; the
// rest of the package does not change.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gcnserve/gcnserve/internal/infer"
)

type (
	// Tensors is one model input (gcn.Tensors).
	Tensors = infer.Graph
	// Prediction is one model answer (gcn.Prediction).
	Prediction = infer.Prediction
	// Info describes a model (gcn.Info).
	Info = infer.Info
)

// errorKind is gcn.ErrorKind's stand-in.
type errorKind int

const (
	kindInvalidArgument errorKind = iota + 1
	kindTooLarge
	kindNotFound
	kindOverloaded
	kindUnavailable
)

// kindError is gcn.Error's stand-in: Msg is meant for the client.
type kindError struct {
	kind errorKind
	msg  string
}

func (e *kindError) Error() string { return e.msg }

func invalidf(format string, args ...any) error {
	return &kindError{kindInvalidArgument, fmt.Sprintf(format, args...)}
}

func tooLargef(format string, args ...any) error {
	return &kindError{kindTooLarge, fmt.Sprintf(format, args...)}
}

func notFoundf(format string, args ...any) error {
	return &kindError{kindNotFound, fmt.Sprintf(format, args...)}
}

func unavailablef(format string, args ...any) error {
	return &kindError{kindUnavailable, fmt.Sprintf(format, args...)}
}

// grpcStatus is serving.GRPCStatus's stand-in: the one error table.
func grpcStatus(log *slog.Logger, method string, err error) error {
	var ke *kindError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ke):
		code := map[errorKind]codes.Code{
			kindInvalidArgument: codes.InvalidArgument, kindTooLarge: codes.ResourceExhausted,
			kindNotFound: codes.NotFound, kindOverloaded: codes.ResourceExhausted,
			kindUnavailable: codes.Unavailable,
		}[ke.kind]
		return status.Error(code, ke.msg)
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "request canceled")
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "deadline exceeded")
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	log.Error("request failed", "method", method, "err", err)
	return status.Error(codes.Internal, "internal error (details in the server log)")
}

// httpStatus is serving.HTTPStatus's stand-in.
func httpStatus(err error) (int, string) {
	var ke *kindError
	switch {
	case errors.As(err, &ke):
		return map[errorKind]int{
			kindInvalidArgument: http.StatusBadRequest, kindTooLarge: http.StatusRequestEntityTooLarge,
			kindNotFound: http.StatusNotFound, kindOverloaded: http.StatusTooManyRequests,
			kindUnavailable: http.StatusServiceUnavailable,
		}[ke.kind], ke.msg
	case errors.Is(err, context.Canceled):
		return 499, "request canceled"
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout, "deadline exceeded"
	}
	return http.StatusInternalServerError, "internal error (details in the server log)"
}

// isUnavailable reports whether err says the model exists but cannot serve
// now (loading, draining).
func isUnavailable(err error) bool {
	var ke *kindError
	return errors.As(err, &ke) && ke.kind == kindUnavailable
}
