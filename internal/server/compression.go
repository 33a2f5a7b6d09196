package server

// Registering gRPC's gzip compressor lets the server accept requests a
// client compressed with gzip (grpc-encoding: gzip) and answer them in kind;
// without it such a request fails with UNIMPLEMENTED before any handler
// runs. Compressing responses is the client's choice: a plain request gets a
// plain answer.
import _ "google.golang.org/grpc/encoding/gzip"
