package testenv

import "go.uber.org/goleak"

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
