package server

import (
	"context"
	"errors"
	"log/slog"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gcnserve/gcnserve/internal/gcnerr"
)

// toStatus is the one place where errors become gRPC statuses. Bad input and
// limits keep their message, which names the offending node, edge or limit;
// anything else is logged with its detail and reaches the client as a
// generic Internal error.
func toStatus(log *slog.Logger, method string, err error) error {
	var e *gcnerr.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &e) && e.Kind == gcnerr.InvalidArgument:
		return status.Error(codes.InvalidArgument, e.Msg)
	case errors.As(err, &e) && e.Kind == gcnerr.TooLarge:
		return status.Error(codes.ResourceExhausted, e.Msg)
	case errors.As(err, &e) && e.Kind == gcnerr.Unavailable:
		return status.Error(codes.Unavailable, e.Msg)
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "request canceled")
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "deadline exceeded before the model finished")
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	log.Error("request failed", "method", method, "err", err)
	return status.Error(codes.Internal, "internal error (details in the server log)")
}
