package admission

import "github.com/gcnserve/gcnserve/internal/gcnerr"

// overloaded is the error every refusal returns: gcn.KindOverloaded, which
// the server answers with RESOURCE_EXHAUSTED (HTTP 429).
func overloaded(format string, args ...any) error {
	return gcnerr.New(gcnerr.Overloaded, format, args...)
}
