package auth

import (
	"context"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"
)

// Exempt reports whether a gRPC method is served without a token: health
// checking and server reflection (v1 and v1alpha).
func Exempt(fullMethod string) bool {
	for _, prefix := range []string{
		"/grpc.health.v1.Health/",
		"/grpc.reflection.v1.ServerReflection/",
		"/grpc.reflection.v1alpha.ServerReflection/",
	} {
		if strings.HasPrefix(fullMethod, prefix) {
			return true
		}
	}
	return false
}

// checkGRPC returns an UNAUTHENTICATED status for a call without an
// accepted token.
func (t *Tokens) checkGRPC(ctx context.Context, fullMethod string) error {
	if Exempt(fullMethod) {
		return nil
	}
	md, _ := metadata.FromIncomingContext(ctx)
	if reason := t.check(ProtocolGRPC, md.Get("authorization")); reason != "" {
		return status.Error(codes.Unauthenticated, reason.message())
	}
	return nil
}

// UnaryInterceptor refuses unary calls without an accepted token.
func (t *Tokens) UnaryInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if err := t.checkGRPC(ctx, info.FullMethod); err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// StreamInterceptor refuses streaming calls without an accepted token.
func (t *Tokens) StreamInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if err := t.checkGRPC(ss.Context(), info.FullMethod); err != nil {
			return err
		}
		return handler(srv, ss)
	}
}

// TapHandle refuses a call without an accepted token before its stream
// exists: before a handler runs and before a byte of the message is read
// (a unary handler reads the message before its interceptors run, so an
// interceptor alone would let anyone make the server read
// --max-request-bytes). It runs on the connection's reader goroutine; the
// check is a stat and a hash.
func (t *Tokens) TapHandle() tap.ServerInHandle {
	return func(ctx context.Context, info *tap.Info) (context.Context, error) {
		if Exempt(info.FullMethodName) {
			return ctx, nil
		}
		if reason := t.check(ProtocolGRPC, info.Header.Get("authorization")); reason != "" {
			return ctx, status.Error(codes.Unauthenticated, reason.message())
		}
		return ctx, nil
	}
}

// ServerOption guards a gRPC server: grpc.InTapHandle(t.TapHandle()). A
// server has one tap handle; one that needs its own calls TapHandle from it,
// or uses UnaryInterceptor and StreamInterceptor instead (they check after
// the message is read).
func (t *Tokens) ServerOption() grpc.ServerOption {
	return grpc.InTapHandle(t.TapHandle())
}
