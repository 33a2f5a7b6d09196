package oip

// The model types are the public gcn package's. grpcStatus and httpStatus
// stand in for serving.GRPCStatus and serving.HTTPStatus (the one error
// table, PLAN.md) until internal/serving lands on main; then they become
// one-line calls to it and nothing else in the package changes.

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gcnserve/gcnserve/gcn"
)

type (
	// Tensors is one model input.
	Tensors = gcn.Tensors
	// Prediction is one model answer.
	Prediction = gcn.Prediction
	// Info describes a model.
	Info = gcn.Info
)

func invalidf(format string, args ...any) error {
	return gcn.Errorf(gcn.KindInvalidArgument, format, args...)
}

func tooLargef(format string, args ...any) error {
	return gcn.Errorf(gcn.KindTooLarge, format, args...)
}

// isUnavailable reports whether err says the model exists but cannot serve
// now (loading, draining).
func isUnavailable(err error) bool {
	var e *gcn.Error
	return errors.As(err, &e) && e.Kind == gcn.KindUnavailable
}

// grpcStatus is serving.GRPCStatus's stand-in.
func grpcStatus(log *slog.Logger, method string, err error) error {
	var e *gcn.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &e):
		code := map[gcn.ErrorKind]codes.Code{
			gcn.KindInvalidArgument: codes.InvalidArgument, gcn.KindTooLarge: codes.ResourceExhausted,
			gcn.KindNotFound: codes.NotFound, gcn.KindOverloaded: codes.ResourceExhausted,
			gcn.KindUnavailable: codes.Unavailable, gcn.KindUnauthenticated: codes.Unauthenticated,
		}[e.Kind]
		return status.Error(code, e.Msg)
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
	var e *gcn.Error
	switch {
	case errors.As(err, &e):
		return map[gcn.ErrorKind]int{
			gcn.KindInvalidArgument: http.StatusBadRequest, gcn.KindTooLarge: http.StatusRequestEntityTooLarge,
			gcn.KindNotFound: http.StatusNotFound, gcn.KindOverloaded: http.StatusTooManyRequests,
			gcn.KindUnavailable: http.StatusServiceUnavailable, gcn.KindUnauthenticated: http.StatusUnauthorized,
		}[e.Kind], e.Msg
	case errors.Is(err, context.Canceled):
		return 499, "request canceled"
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout, "deadline exceeded"
	}
	return http.StatusInternalServerError, "internal error (details in the server log)"
}
