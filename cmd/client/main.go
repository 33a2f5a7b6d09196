// Command gcnclient sends a graph to gcnserve and prints each node's score
// and predicted class.
//
//	gcnclient [flags] request.json        the tutorial's JSON (protojson GraphData)
//	gcnclient [flags] DIR                 DIR/nodes.csv and DIR/edges.csv (or .csv.gz)
//	gcnclient [flags] --nodes F --edges F the same CSV files named one by one
//	gcnclient [flags] --info              describe the served model
//
// Output (--output): an aligned table (the default), csv, or json (the
// GCNResult in protobuf's JSON form, zero values included). Exit status: 0 on
// success, 2 for a usage error (bad flag or arguments), 1 for anything else
// (an unreadable input, an unreachable server, an error status from the
// server). Errors are printed once, on stderr.
//
// It is built on package client, so it gets that package's defaults: 64 MiB
// message limits, keepalive, round_robin over every address of --addr and
// retries of UNAVAILABLE.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/gcnserve/gcnserve/client"
	gcnpb "github.com/gcnserve/gcnserve/gen"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// usageError is a mistake on the command line: exit status 2.
type usageError struct{ error }

// run is gcnclient; it returns the exit status.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	err := runErr(args, stdin, stdout)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	}
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(stderr, "gcnclient: %v\nRun 'gcnclient --help' for usage.\n", ue.error)
		return 2
	}
	if st, ok := status.FromError(err); ok {
		fmt.Fprintf(stderr, "gcnclient: server: %s: %s\n", st.Code(), st.Message())
		return 1
	}
	fmt.Fprintln(stderr, "gcnclient:", err)
	return 1
}

type flags struct {
	addr, model, version    string
	timeout                 time.Duration
	info, predictions       bool
	top                     int
	output                  string
	nodes, edges            string
	useTLS                  bool
	tlsCA, tlsCert, tlsKey  string
	tlsServerName           string
	tokenFile               string
	maxSendMB, maxReceiveMB int
}

const usageText = `Usage:
  gcnclient [flags] request.json          the tutorial's JSON form of GraphData ("-": stdin)
  gcnclient [flags] DIR                   DIR/nodes.csv and DIR/edges.csv (.csv.gz too)
  gcnclient [flags] --nodes F --edges F   the CSV files by name
  gcnclient [flags] --info                describe the served model
  gcnclient [flags] graph SUBCOMMAND ...  stored graphs (docs/STATEFUL.md):
      graph create ID [GRAPH]     create graph ID (bound to --model), GRAPH as above, one message
      graph load ID GRAPH         the same, streamed in chunks (a progress bar on a terminal)
      graph delta ID DELTA.json   apply a delta (JSON DeltaRequest; "-": stdin); prints the revision
      graph score ID NODE...      score nodes of graph ID (--predictions, --output)
      graph get ID | graph list | graph delete ID
      graph export ID             print the graph as JSON GraphData (graph load takes it back)

nodes.csv: a header id,f0,f1,... (columns named label and split are skipped),
then one node per line. edges.csv: a header source,target, then one edge per line.

Exit status: 0 success, 2 usage error, 1 any other error (input, connection, server).

Flags:
`

func parse(args []string, stdout io.Writer) (flags, []string, error) {
	var f flags
	fs := flag.NewFlagSet("gcnclient", flag.ContinueOnError)
	// The flag package prints errors itself; run prints them, once.
	fs.SetOutput(io.Discard)
	fs.StringVar(&f.addr, "addr", "localhost:9999", `gcnserve's gRPC target: host:port, or dns:///host:port to balance over every address of host`)
	fs.DurationVar(&f.timeout, "timeout", 30*time.Second, "deadline for the whole call, retries included")
	fs.BoolVar(&f.info, "info", false, "print the served model's description (GetModelInfo) as JSON and exit")
	fs.StringVar(&f.model, "model", "", "model name to ask for (default: the server's default model)")
	fs.StringVar(&f.version, "model-version", "", "model version to ask for (default: the highest served)")
	fs.IntVar(&f.top, "top", 0, "print only the K highest-scoring nodes, highest first (0: every node, in request order)")
	fs.BoolVar(&f.predictions, "predictions", false, "also print each node's class probabilities (json: include GCNResult.predictions)")
	fs.StringVar(&f.output, "output", "table", "table, csv or json")
	fs.StringVar(&f.nodes, "nodes", "", "nodes CSV file (with --edges)")
	fs.StringVar(&f.edges, "edges", "", "edges CSV file (with --nodes)")
	fs.BoolVar(&f.useTLS, "tls", false, "connect with TLS, verifying the server against the system's roots (implied by the other --tls-* flags)")
	fs.StringVar(&f.tlsCA, "tls-ca", "", "PEM CA bundle to verify the server's certificate with")
	fs.StringVar(&f.tlsCert, "tls-cert", "", "PEM client certificate, for servers that require one (with --tls-key)")
	fs.StringVar(&f.tlsKey, "tls-key", "", "PEM private key of --tls-cert")
	fs.StringVar(&f.tlsServerName, "tls-server-name", "", "name to verify the server's certificate against (default: the host of --addr)")
	fs.StringVar(&f.tokenFile, "token-file", "", `send "authorization: Bearer <token>" with the token in this file (for gcnserve --auth-token-file)`)
	fs.IntVar(&f.maxSendMB, "max-send-mb", client.DefaultMaxMessageBytes>>20, "largest request to send, in MiB")
	fs.IntVar(&f.maxReceiveMB, "max-receive-mb", client.DefaultMaxMessageBytes>>20, "largest response to accept, in MiB")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stdout)
			fmt.Fprint(stdout, usageText)
			fs.PrintDefaults()
		}
		if !errors.Is(err, flag.ErrHelp) {
			err = usageError{err}
		}
		return f, nil, err
	}
	rest := fs.Args()
	bad := func(format string, a ...any) (flags, []string, error) {
		return f, nil, usageError{fmt.Errorf(format, a...)}
	}
	switch f.output {
	case "table", "csv", "json":
	default:
		return bad("--output %q: want table, csv or json", f.output)
	}
	if f.top < 0 {
		return bad("--top %d: want 0 (every node) or more", f.top)
	}
	if f.maxSendMB <= 0 || f.maxReceiveMB <= 0 {
		return bad("--max-send-mb and --max-receive-mb must be positive")
	}
	if (f.tlsCert == "") != (f.tlsKey == "") {
		return bad("--tls-cert and --tls-key go together")
	}
	if len(rest) > 0 && rest[0] == "graph" {
		return f, rest, nil // stored graphs: graph.go checks its own arguments
	}
	csvFiles := f.nodes != "" || f.edges != ""
	switch {
	case csvFiles && (f.nodes == "" || f.edges == ""):
		return bad("--nodes and --edges go together")
	case f.info && (len(rest) > 0 || csvFiles):
		return bad("--info takes no graph")
	case csvFiles && len(rest) > 0:
		return bad("give a graph either as an argument or with --nodes and --edges, not both")
	case !f.info && !csvFiles && len(rest) != 1:
		if len(rest) == 0 {
			return bad("no graph: give request.json, a CSV directory, or --nodes and --edges")
		}
		return bad("one graph at a time; got %d arguments", len(rest))
	}
	return f, rest, nil
}

func runErr(args []string, stdin io.Reader, stdout io.Writer) error {
	f, rest, err := parse(args, stdout)
	if err != nil {
		return err
	}
	var g *gcnpb.GraphData
	graphCmd := len(rest) > 0 && rest[0] == "graph"
	if graphCmd {
		if err := checkGraphArgs(rest[1:]); err != nil {
			return err
		}
	}
	if !f.info && !graphCmd {
		if g, err = readGraph(f, rest, stdin); err != nil {
			return err
		}
	}

	opts := []client.Option{
		client.WithModel(f.model, f.version),
		client.WithMaxSendBytes(f.maxSendMB << 20),
		client.WithMaxReceiveBytes(f.maxReceiveMB << 20),
	}
	if f.useTLS || f.tlsCA != "" || f.tlsCert != "" || f.tlsServerName != "" {
		opts = append(opts, client.WithTLS(f.tlsCA))
	}
	if f.tlsServerName != "" {
		opts = append(opts, client.WithServerName(f.tlsServerName))
	}
	if f.tlsCert != "" {
		opts = append(opts, client.WithClientCertificate(f.tlsCert, f.tlsKey))
	}
	if f.tokenFile != "" {
		opts = append(opts, client.WithTokenFile(f.tokenFile))
	}
	c, err := client.Dial(f.addr, opts...)
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), f.timeout)
	defer cancel()

	if graphCmd {
		return runGraph(ctx, c, f, rest[1:], stdin, stdout)
	}
	if f.info {
		info, err := c.GetModelInfo(ctx)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(stdout, protojson.MarshalOptions{Multiline: true, EmitUnpopulated: true}.Format(info))
		return err
	}

	// The table and CSV always show the class; JSON carries predictions
	// only when asked, as the server sends them.
	g.IncludePredictions = f.predictions || f.output != "json"
	res, err := c.ProcessGraph(ctx, g)
	if err != nil {
		return err
	}
	t, err := client.TableFromResult(g, res)
	if err != nil {
		return err
	}
	t = t.Top(f.top)
	switch f.output {
	case "json":
		return writeJSON(stdout, res, t)
	case "csv", "table":
		if !f.predictions {
			t = t.WithoutProbabilities()
		} else if info, err := c.GetModelInfo(ctx); err == nil {
			t.ClassNames = info.GetClassNames()
		} // else: columns named by class index
		if f.output == "csv" {
			return client.WriteCSV(stdout, t)
		}
		return client.WriteTable(stdout, t)
	}
	return nil
}

func readGraph(f flags, rest []string, stdin io.Reader) (*gcnpb.GraphData, error) {
	if f.nodes != "" {
		return client.ReadCSVFiles(f.nodes, f.edges)
	}
	path := rest[0]
	if path == "-" {
		g, err := client.ReadJSON(stdin)
		if err != nil {
			return nil, fmt.Errorf("stdin: %w", err)
		}
		return g, nil
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.IsDir() {
		return client.ReadCSVDir(path)
	}
	if base := strings.TrimSuffix(filepath.Base(path), ".gz"); strings.HasSuffix(base, ".csv") {
		return nil, usageError{fmt.Errorf("%s: a CSV graph is two files: give its directory, or --nodes and --edges", path)}
	}
	return client.ReadJSONFile(path)
}

// writeJSON prints res restricted to t's rows (the --top nodes, in t's
// order for predictions).
func writeJSON(w io.Writer, res *gcnpb.GCNResult, t client.Table) error {
	if len(t.IDs) < len(res.GetNodeScores()) {
		byID := make(map[string]*gcnpb.NodePrediction, len(res.Predictions))
		for _, p := range res.Predictions {
			byID[p.GetId()] = p
		}
		top := &gcnpb.GCNResult{NodeScores: map[string]float32{}, ModelName: res.ModelName, ModelVersion: res.ModelVersion}
		for _, id := range t.IDs {
			top.NodeScores[id] = res.NodeScores[id]
			if p, ok := byID[id]; ok {
				top.Predictions = append(top.Predictions, p)
			}
		}
		res = top
	}
	_, err := fmt.Fprintln(w, protojson.MarshalOptions{Multiline: true, EmitUnpopulated: true}.Format(res))
	return err
}
