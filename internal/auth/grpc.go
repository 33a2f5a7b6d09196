package auth

import (
	"context"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
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
	if reason := t.check(md.Get("authorization")); reason != "" {
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

// ServerOptions returns the interceptors as server options, for
// grpc.NewServer. Put them first in the chain: a refused call should cost
// nothing else (no admission, no decode).
func (t *Tokens) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(t.UnaryInterceptor()),
		grpc.ChainStreamInterceptor(t.StreamInterceptor()),
	}
}
