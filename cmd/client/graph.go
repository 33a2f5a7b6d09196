package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/gcnserve/gcnserve/client"
	gcnpb "github.com/gcnserve/gcnserve/gen"
)

// graphArgs is how many arguments each graph subcommand takes (min, max;
// -1: any number).
var graphArgs = map[string][2]int{
	"create": {1, 2}, "load": {2, 2}, "delta": {2, 2}, "score": {2, -1},
	"get": {1, 1}, "list": {0, 0}, "delete": {1, 1}, "export": {1, 1},
}

func checkGraphArgs(args []string) error {
	if len(args) == 0 {
		return usageError{fmt.Errorf("graph: want a subcommand: create, load, delta, score, get, list, delete or export")}
	}
	n, ok := graphArgs[args[0]]
	if !ok {
		return usageError{fmt.Errorf("graph %s: unknown subcommand (create, load, delta, score, get, list, delete, export)", args[0])}
	}
	if got := len(args) - 1; got < n[0] || n[1] >= 0 && got > n[1] {
		return usageError{fmt.Errorf("graph %s: %d arguments, see --help", args[0], got)}
	}
	return nil
}

var jsonOut = protojson.MarshalOptions{Multiline: true, EmitUnpopulated: true}

func printJSON(w io.Writer, m proto.Message) error {
	_, err := fmt.Fprintln(w, jsonOut.Format(m))
	return err
}

func runGraph(ctx context.Context, c *client.Client, f flags, args []string, stdin io.Reader, stdout io.Writer) error {
	cmd, args := args[0], args[1:]
	switch cmd {
	case "create", "load":
		var g *gcnpb.GraphData
		if len(args) == 2 {
			var err error
			if g, err = readGraph(f, args[1:], stdin); err != nil {
				return err
			}
		}
		var info *gcnpb.GraphInfo
		var err error
		if cmd == "create" {
			info, err = c.CreateGraph(ctx, args[0], g)
		} else {
			bar := newProgress(stdout, len(g.GetNodes()), len(g.GetEdges()))
			info, err = c.LoadGraph(ctx, args[0], g, bar.update)
			bar.done()
		}
		if err != nil {
			return err
		}
		return printJSON(stdout, info)
	case "delta":
		var data []byte
		var err error
		if args[1] == "-" {
			data, err = io.ReadAll(stdin)
		} else {
			data, err = os.ReadFile(args[1])
		}
		if err != nil {
			return err
		}
		d := new(gcnpb.DeltaRequest)
		if err := protojson.Unmarshal(data, d); err != nil {
			return fmt.Errorf("%s: not a JSON DeltaRequest: %w", args[1], err)
		}
		d.GraphId = args[0]
		res, err := c.ApplyDelta(ctx, d)
		if err != nil {
			return err
		}
		return printJSON(stdout, res)
	case "score":
		req := &gcnpb.ScoreRequest{GraphId: args[0], NodeIds: args[1:], IncludePredictions: true}
		res, err := c.ScoreNodes(ctx, req)
		if err != nil {
			return err
		}
		if f.output == "json" {
			if !f.predictions {
				res.Predictions = nil
			}
			return printJSON(stdout, res)
		}
		fmt.Fprintf(stdout, "# graph %s at revision %d, model %s version %s\n", args[0], res.Revision, res.ModelName, res.ModelVersion)
		sep := "\t"
		if f.output == "csv" {
			sep = ","
		}
		fmt.Fprintln(stdout, strings.Join([]string{"id", "score", "class"}, sep))
		for _, p := range res.Predictions {
			fmt.Fprintf(stdout, "%s%s%.6f%s%s\n", p.Id, sep, res.NodeScores[p.Id], sep, p.ClassName)
		}
		return nil
	case "get":
		info, err := c.GetGraph(ctx, args[0])
		if err != nil {
			return err
		}
		return printJSON(stdout, info)
	case "list":
		res, err := c.ListGraphs(ctx)
		if err != nil {
			return err
		}
		return printJSON(stdout, res)
	case "delete":
		return c.DeleteGraph(ctx, args[0])
	case "export":
		g, _, err := c.ExportGraph(ctx, args[0])
		if err != nil {
			return err
		}
		return printJSON(stdout, g)
	}
	return nil
}

// progress draws a one-line bar on stdout while LoadGraph sends, when
// stdout is a terminal; otherwise it draws nothing.
type progress struct {
	w            io.Writer
	total        int
	on           bool
	drawnPercent int
}

func newProgress(w io.Writer, nodes, edges int) *progress {
	p := &progress{w: w, total: max(nodes+edges, 1), drawnPercent: -1}
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			p.on = true
		}
	}
	return p
}

func (p *progress) update(nodes, edges int) {
	if !p.on {
		return
	}
	pct := 100 * (nodes + edges) / p.total
	if pct == p.drawnPercent {
		return
	}
	p.drawnPercent = pct
	const width = 40
	fill := width * pct / 100
	fmt.Fprintf(p.w, "\r[%s%s] %3d%%  %d nodes, %d edges sent", strings.Repeat("#", fill), strings.Repeat(".", width-fill), pct, nodes, edges)
}

func (p *progress) done() {
	if p.on && p.drawnPercent >= 0 {
		fmt.Fprintln(p.w)
	}
}
