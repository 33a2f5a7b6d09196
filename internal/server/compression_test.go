package server

import (
	"testing"

	"google.golang.org/grpc/encoding"
)

// The test binary imports only what package server imports, so this checks
// that the server itself registers gzip (the tests that send gzip requests
// import the compressor themselves, which would hide a missing import).
func TestGzipCompressorRegistered(t *testing.T) {
	if c := encoding.GetCompressor("gzip"); c == nil {
		t.Fatal(`encoding.GetCompressor("gzip") = nil: the server would answer gzip requests with UNIMPLEMENTED`)
	}
}
