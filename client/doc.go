// Package client is the Go client of gcnserve: a gRPC connection with
// production defaults, and readers for the graph formats gcnserve works with.
//
// It imports only the generated protocol package (gen, imported as gcnpb)
// and grpc-go, never the inference library, so programs that only call a
// server build without cgo and without ONNX Runtime.
//
// # Connecting
//
// Dial returns a Client whose defaults suit real graphs and real clusters:
//
//   - send and receive limits of 64 MiB (DefaultMaxMessageBytes) instead of
//     grpc-go's 4 MiB receive limit, which breaks responses above about
//     110,000 nodes;
//   - keepalive pings after 30 s without traffic while a call is in flight,
//     so a dead peer is noticed within 40 s (DefaultKeepalive);
//   - the service config DefaultServiceConfig: round_robin over every address
//     the target resolves to (use a "dns:///host:port" target naming a
//     headless Kubernetes service to spread calls over all pods), client-side
//     health checking (a draining server gets no new calls), and retries of
//     calls that fail with UNAVAILABLE (a server starting, draining on
//     SIGTERM, or unreachable), which is safe because ProcessGraph and
//     GetModelInfo have no side effects;
//   - plaintext, unless WithTLS, WithClientCertificate or WithTLSConfig
//     ask for TLS; a bearer token with WithToken or WithTokenFile.
//
// Client.ProcessGraph and Client.GetModelInfo ask for the model chosen with
// WithModel (by default the server's default model, highest version), unless
// the request names one; Client.ListModels lists what the server serves.
// Errors are gRPC status errors: status.Code(err) says which kind.
//
// # Graphs
//
// A request is a *gcnpb.GraphData. Build one from Go values with
// GraphData(Graph{...}) (Graph is package graph's, the type gcn.Graph is too), or
// read one with ReadJSONFile (the tutorial's JSON form, as in
// examples/karate.json) or ReadCSVFiles / ReadCSVDir (nodes.csv and
// edges.csv, the layout scripts/export_onnx.py trains from; gzip-compressed
// files are read too).
//
// # Output
//
// Table holds a scored graph in request order; WriteTable and WriteCSV print
// it. gcnclient prints with them, and so can a program that runs the model
// in-process with package gcn, so both print the same bytes.
package client
