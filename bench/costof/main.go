// Command costof prints serving.Cost's estimate, in bytes, for one request
// shape (bench/calibrate.sh compares it with measured peaks).
package main

import (
	"flag"
	"fmt"

	"github.com/gcnserve/gcnserve/gcn"
	"github.com/gcnserve/gcnserve/internal/serving"
)

func main() {
	wire := flag.Int64("wire", 0, "request bytes")
	nodes := flag.Int("nodes", 0, "nodes")
	edges := flag.Int("edges", 0, "edges")
	features := flag.Int("features", 0, "features per node")
	classes := flag.Int("classes", 7, "classes")
	ort := flag.Bool("ort", false, "the model runs in ONNX Runtime (not natively)")
	flag.Parse()
	info := gcn.Info{FeatureDim: *features, NumClasses: *classes, Native: !*ort}
	fmt.Println(serving.CostFor(info, *wire, *nodes, *edges))
}
