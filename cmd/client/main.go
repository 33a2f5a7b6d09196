// Command gcnclient sends a graph to gcnserve and prints each node's score
// and predicted class.
//
//	gcnclient [--addr localhost:9999] [--timeout 30s] request.json
//	gcnclient --info
//
// request.json is a GraphData message in protobuf's JSON form (protojson),
// e.g. examples/karate.json.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"

	gcnpb "github.com/gcnserve/gcnserve/gen"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "gcnclient:", err)
		}
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("gcnclient", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "localhost:9999", "gcnserve address")
	timeout := fs.Duration("timeout", 30*time.Second, "deadline for the call")
	infoOnly := fs.Bool("info", false, "print the model's description (GetModelInfo) and exit")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: gcnclient [flags] request.json | gcnclient --info")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if !*infoOnly && fs.NArg() != 1 {
		fs.Usage()
		return errors.New("want one request file")
	}

	conn, err := grpc.NewClient(*addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256<<20), grpc.MaxCallSendMsgSize(256<<20)))
	if err != nil {
		return err
	}
	defer conn.Close()
	client := gcnpb.NewGCNServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()

	if *infoOnly {
		info, err := client.GetModelInfo(ctx, &gcnpb.ModelInfoRequest{})
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, protojson.MarshalOptions{Multiline: true, EmitUnpopulated: true}.Format(info))
		return nil
	}

	data, err := os.ReadFile(fs.Arg(0))
	if err != nil {
		return err
	}
	req := &gcnpb.GraphData{}
	if err := protojson.Unmarshal(data, req); err != nil {
		return fmt.Errorf("%s: not a GraphData in JSON form: %w", fs.Arg(0), err)
	}
	req.IncludePredictions = true
	res, err := client.ProcessGraph(ctx, req)
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "node\tscore\tclass")
	for _, p := range res.GetPredictions() {
		fmt.Fprintf(w, "%s\t%.4f\t%s\n", p.GetId(), res.GetNodeScores()[p.GetId()], p.GetClassName())
	}
	return w.Flush()
}
