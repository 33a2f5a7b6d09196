package gcn

import (
	"fmt"
	"sync"

	ort "github.com/yalue/onnxruntime_go"
)

// ortEnv is the process's one ONNX Runtime environment. It is created by the
// first Open and never destroyed: models come and go (hot reload), and
// creating and destroying the environment repeatedly grows RSS.
var ortEnv struct {
	mu      sync.Mutex
	libPath string // library the environment was created from; guarded by mu
}

// initRuntime loads the ONNX Runtime shared library at libPath and creates
// the environment, once per process.
func initRuntime(libPath string) error {
	ortEnv.mu.Lock()
	defer ortEnv.mu.Unlock()
	if ortEnv.libPath != "" {
		if libPath != ortEnv.libPath {
			return fmt.Errorf("onnxruntime already loaded from %s, cannot also load %s", ortEnv.libPath, libPath)
		}
		return nil
	}
	ort.SetSharedLibraryPath(libPath)
	if err := ort.InitializeEnvironment(ort.WithLogLevelError()); err != nil {
		return fmt.Errorf("load onnxruntime library %s: %w", libPath, err)
	}
	ortEnv.libPath = libPath
	return nil
}

// RuntimeVersion returns the loaded ONNX Runtime library's version, or ""
// before the first model is opened.
func RuntimeVersion() string {
	ortEnv.mu.Lock()
	defer ortEnv.mu.Unlock()
	if ortEnv.libPath == "" {
		return ""
	}
	return ort.GetVersion()
}
