// Command ortarena measures the memory of the large request in process when
// ONNX Runtime runs the model, with its CPU arena on and off (one process
// per setting: peak RSS is per process):
//
//	go run ./bench/ortarena --model .cache/bench/portable-f16.onnx --arena=true
//	go run ./bench/ortarena --model .cache/bench/portable-f16.onnx --arena=false
//
// It prints RSS once the model is loaded, the peak (VmHWM) over three runs
// of the large graph, and RSS after them (what the arena keeps).
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/gcnserve/gcnserve/gcn"
	"github.com/gcnserve/gcnserve/internal/infertest"
)

func status(key string) float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), key+":"); ok {
			kb, _ := strconv.ParseFloat(strings.Fields(rest)[0], 64)
			return kb / 1024
		}
	}
	return -1
}

func main() {
	model := flag.String("model", ".cache/bench/portable-f16.onnx", "model file")
	arena := flag.Bool("arena", true, "ONNX Runtime CPU memory arena")
	native := flag.Bool("native", false, "run natively when the model allows")
	nodes := flag.Int("nodes", 100_000, "nodes")
	edges := flag.Int("edges", 500_000, "edges")
	flag.Parse()
	m, err := gcn.Open(*model, gcn.WithCPUMemArena(*arena), gcn.WithNativeExecution(*native))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer m.Close()
	// Tensors made directly: building a protobuf message first would set
	// a peak of its own.
	t := infertest.RandomGraph(1, *nodes, *edges, m.Info().FeatureDim)
	runtime.GC()
	idle := status("VmRSS")
	hwm0 := status("VmHWM")
	start := time.Now()
	for range 3 {
		if _, err := m.Predict(context.Background(), t); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	took := time.Since(start) / 3
	runtime.GC()
	debug.FreeOSMemory()
	fmt.Printf("arena=%v native=%v: RSS loaded %.0f MB (peak so far %.0f), peak over three runs %.0f MB (+%.0f), RSS after %.0f MB (+%.0f), %v per run\n",
		*arena, m.Info().Native, idle, hwm0, status("VmHWM"), status("VmHWM")-idle, status("VmRSS"), status("VmRSS")-idle, took.Round(time.Millisecond))
}
