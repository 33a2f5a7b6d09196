package server

import (
	"io"
	"strings"
	"testing"
	"time"
)

func TestParseConfigEnvironmentTwins(t *testing.T) {
	env := map[string]string{
		"GCNSERVE_ADDR":                   "127.0.0.1:7000",
		"GCNSERVE_MAX_NODES":              "50",
		"GCNSERVE_BATCH":                  "false",
		"GCNSERVE_BATCH_MAX_DELAY":        "1ms",
		"GCNSERVE_MODEL":                  "/nonexistent.onnx", // the flag below wins
		"GCNSERVE_REQUEST_READ_TIMEOUT":   "7s",
		"GCNSERVE_MAX_CONCURRENT_STREAMS": "12",
	}
	cfg, err := ParseFlags([]string{"--max-nodes", "70", "--model", "flags.go"},
		func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Addr != "127.0.0.1:7000" || cfg.MaxNodes != 70 || cfg.BatchEnabled ||
		cfg.Batch.MaxDelay != time.Millisecond || cfg.ModelPath != "flags.go" {
		t.Errorf("got addr %q, max nodes %d, batch %v, delay %v, model %q; want 127.0.0.1:7000, 70 (flag wins), false, 1ms, flags.go",
			cfg.Addr, cfg.MaxNodes, cfg.BatchEnabled, cfg.Batch.MaxDelay, cfg.ModelPath)
	}
	if cfg.RequestReadTimeout != 7*time.Second || cfg.MaxConcurrentStreams != 12 {
		t.Errorf("got request read timeout %v, max concurrent streams %d; want 7s, 12", cfg.RequestReadTimeout, cfg.MaxConcurrentStreams)
	}
}

func TestParseConfigErrors(t *testing.T) {
	tests := []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--model", "flags.go"}, map[string]string{"GCNSERVE_MAX_EDGES": "lots"}, `GCNSERVE_MAX_EDGES="lots"`},
		{[]string{"--model", "flags.go", "--log-level", "loud"}, nil, `--log-level "loud"`},
		{[]string{"--model", "flags.go", "--log-format", "xml"}, nil, `--log-format "xml"`},
		{[]string{"--model", "/nonexistent.onnx"}, nil, "model file"},
		{[]string{"--model", "flags.go", "extra"}, nil, `unexpected argument "extra"`},
	}
	for _, tt := range tests {
		_, err := ParseFlags(tt.args, func(k string) string { return tt.env[k] }, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseFlags(%q, %v): %v, want an error containing %q", tt.args, tt.env, err, tt.want)
		}
	}
}

func TestHelpShowsEnvironmentAndDefaults(t *testing.T) {
	var out strings.Builder
	ParseFlags([]string{"--help"}, func(string) string { return "" }, &out)
	for _, want := range []string{"--addr (env GCNSERVE_ADDR, default \":9999\")", "GCNSERVE_MAX_REQUEST_BYTES", "67108864"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--help lacks %q:\n%s", want, out.String())
		}
	}
}
