package gcn

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/gcnserve/gcnserve/internal/testenv"
)

// TestReadInitializers reads the bundled model's weights: the four GCN
// tensors with their shapes (raw_data) and the small constants
// (float_data or raw_data, as onnx.numpy_helper writes them).
func TestReadInitializers(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "model", "karate.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	inits, err := readInitializers(data)
	if err != nil {
		t.Fatal(err)
	}
	for name, dims := range map[string][]int64{
		"conv1.weight": {34, 16}, "conv1.bias": {16}, "conv2.weight": {16, 2}, "conv2.bias": {2}, "one_f32": {},
	} {
		in, ok := inits[name]
		if !ok {
			t.Errorf("no initializer %q", name)
			continue
		}
		want := 1
		for _, d := range dims {
			want *= int(d)
		}
		if len(in.dims) != len(dims) || len(in.data) != want {
			t.Errorf("%s: dims %v with %d values, want %v", name, in.dims, len(in.data), dims)
		}
	}
	if v := inits["one_f32"].data; len(v) != 1 || v[0] != 1 {
		t.Errorf("one_f32 = %v, want [1]", v)
	}
	if _, ok := inits["zero_i64"]; ok {
		t.Error("an int64 initializer came back as float")
	}
}

// TestReadInitializersMalformed: truncations of a model file are errors or
// fewer tensors, never a panic.
func TestReadInitializersMalformed(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "model", "karate.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	failures := 0
	for cut := 0; cut < len(data); cut += 97 {
		if _, err := readInitializers(data[:cut]); err != nil {
			failures++
		}
	}
	if failures == 0 {
		t.Error("no truncation of the model file was reported as malformed")
	}
}

// FuzzReadInitializers: any bytes give initializers or an error.
func FuzzReadInitializers(f *testing.F) {
	f.Add([]byte{0x3a, 0x05, 0x2a, 0x03, 0x08, 0x02, 0x10})
	f.Add([]byte{0x3a, 0x0c, 0x2a, 0x0a, 0x08, 0x01, 0x10, 0x01, 0x4a, 0x04, 0, 0, 0x80, 0x3f})
	f.Fuzz(func(t *testing.T, b []byte) {
		inits, err := readInitializers(b)
		if err != nil {
			return
		}
		for name, in := range inits {
			n := 1
			for _, d := range in.dims {
				n *= int(d)
			}
			if n != len(in.data) {
				t.Errorf("%q: dims %v but %d values", name, in.dims, len(in.data))
			}
		}
	})
}
