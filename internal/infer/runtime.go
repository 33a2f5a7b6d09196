package infer

import (
	"fmt"
	"sync"

	ort "github.com/yalue/onnxruntime_go"
)

// ORT keeps one process-wide environment. Models share it: the first Open
// loads the shared library and creates it, the last Close destroys it.
var ortEnv struct {
	mu      sync.Mutex
	refs    int    // open models; guarded by mu
	libPath string // library the environment was created from; guarded by mu
}

// acquireRuntime loads the ONNX Runtime shared library at libPath (once per
// process) and takes a reference on the environment.
func acquireRuntime(libPath string) error {
	ortEnv.mu.Lock()
	defer ortEnv.mu.Unlock()
	if ortEnv.refs > 0 {
		if libPath != ortEnv.libPath {
			return fmt.Errorf("onnxruntime already loaded from %s, cannot also load %s", ortEnv.libPath, libPath)
		}
		ortEnv.refs++
		return nil
	}
	ort.SetSharedLibraryPath(libPath)
	if err := ort.InitializeEnvironment(ort.WithLogLevelError()); err != nil {
		return fmt.Errorf("load onnxruntime library %s: %w", libPath, err)
	}
	ortEnv.refs, ortEnv.libPath = 1, libPath
	return nil
}

// releaseRuntime drops a reference taken by acquireRuntime.
func releaseRuntime() error {
	ortEnv.mu.Lock()
	defer ortEnv.mu.Unlock()
	ortEnv.refs--
	if ortEnv.refs > 0 {
		return nil
	}
	ortEnv.libPath = ""
	if err := ort.DestroyEnvironment(); err != nil {
		return fmt.Errorf("destroy onnxruntime environment: %w", err)
	}
	return nil
}
