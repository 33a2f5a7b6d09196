package bufpool

import (
	"testing"

	"github.com/gcnserve/gcnserve/internal/testenv"
)

// TestMain fails the package's tests when a goroutine they started (the
// idle timer's) is still running after the last test ends.
func TestMain(m *testing.M) { testenv.VerifyTestMain(m) }
