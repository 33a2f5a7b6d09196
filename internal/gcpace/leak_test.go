package gcpace

import (
	"testing"

	"github.com/gcnserve/gcnserve/internal/testenv"
)

// TestMain fails the package's tests when a goroutine they started is still
// running after the last test ends: a leak is a bug (grpc-go's discipline).
// testenv.LeakOptions lists the goroutines that live as long as the process.
func TestMain(m *testing.M) { testenv.VerifyTestMain(m) }
