package server

import (
	"errors"
	"io"
	"strings"
	"testing"
)

func TestDefaultConfigValid(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Errorf("DefaultConfig().Validate() = %v, want nil", err)
	}
}

// TestParseFlagsRanges: out-of-range values from flags or their environment
// twins are usage errors naming the setting, the value and the range.
func TestParseFlagsRanges(t *testing.T) {
	tests := []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--max-nodes", "-5"}, nil, "--max-nodes -5: out of range: want 0 to 2147483647 (0: unlimited)"},
		{[]string{"--max-request-bytes", "0"}, nil, "--max-request-bytes 0: out of range: want 1024 to 2147483647"},
		{[]string{"--max-inflight-bytes", "1000"}, nil, "--max-inflight-bytes 1000: out of range: want 0 or 1048576 to"},
		{[]string{"--queue-timeout", "-1s"}, nil, "--queue-timeout -1s: out of range: want 0s to 1h0m0s"},
		{[]string{"--intra-op-threads", "0"}, nil, "--intra-op-threads 0: out of range: want 1 to 1024"},
		{nil, map[string]string{"GCNSERVE_MAX_EDGES": "-1"}, "GCNSERVE_MAX_EDGES=-1 (--max-edges): out of range: want 0 to"},
		{nil, map[string]string{"GCNSERVE_DRAIN_DELAY": "1h"}, "GCNSERVE_DRAIN_DELAY=1h0m0s (--drain-delay): out of range: want 0s to 10m0s"},
		{[]string{"--request-read-timeout", "-1s"}, nil, "--request-read-timeout -1s: out of range: want 0s to 1h0m0s (0: never)"},
		{nil, map[string]string{"GCNSERVE_MAX_CONCURRENT_STREAMS": "0"}, "GCNSERVE_MAX_CONCURRENT_STREAMS=0 (--max-concurrent-streams): out of range: want 1 to 1048576"},
	}
	for _, tt := range tests {
		getenv := func(k string) string { return tt.env[k] }
		_, err := ParseFlags(append([]string{"--model", "../../model/karate.onnx"}, tt.args...), getenv, io.Discard)
		var r *RangeError
		if !errors.As(err, &r) || !strings.HasPrefix(err.Error(), tt.want) || ExitCode(err) != ExitUsage {
			t.Errorf("%v %v: err %v (exit %d), want a usage error starting %q", tt.args, tt.env, err, ExitCode(err), tt.want)
		}
	}
}
