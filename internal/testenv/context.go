package testenv

import (
	"context"
	"testing"
	"time"
)

// CallTimeout bounds one call a test makes (an RPC, a prediction) through
// Context: long enough for a loaded CI machine, short next to go test's
// -timeout, so a hung call fails its own test with DeadlineExceeded.
const CallTimeout = time.Minute

// Context returns a context that ends after CallTimeout or when the test
// ends, whichever comes first.
func Context(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), CallTimeout)
	t.Cleanup(cancel)
	return ctx
}
