package testenv

import (
	"flag"
	"os"
	"testing"

	"go.uber.org/goleak"
)

// LeakOptions are the options of every package's goroutine leak check
// (goleak.VerifyTestMain in its TestMain, servertest.Main): they ignore only
// the goroutines gcnserve keeps for the life of the process by design.
func LeakOptions() []goleak.Option {
	return []goleak.Option{
		// internal/modelrepo's load thread: every model load runs on one
		// locked OS thread, so a session's memory comes from one malloc
		// arena (see onLoadThread); started by the first load, never ended.
		goleak.IgnoreAnyFunction("github.com/gcnserve/gcnserve/internal/modelrepo.onLoadThread.func1.1"),
	}
}

// VerifyTestMain is a package's TestMain with the goroutine leak check:
// goleak.VerifyTestMain with LeakOptions, except when the run is fuzzing
// (-test.fuzz, or a fuzzing worker process). The fuzzing engine's own
// goroutines are alive when the worker's m.Run returns, and goleak's
// retries then hold the worker past the coordinator's deadline ("context
// deadline exceeded" with 0 execs/s at the end of a -fuzztime run).
func VerifyTestMain(m *testing.M) {
	flag.Parse()
	fuzz := flag.Lookup("test.fuzz")
	worker := flag.Lookup("test.fuzzworker")
	if fuzz != nil && fuzz.Value.String() != "" || worker != nil && worker.Value.String() == "true" {
		os.Exit(m.Run())
	}
	goleak.VerifyTestMain(m, LeakOptions()...)
}
