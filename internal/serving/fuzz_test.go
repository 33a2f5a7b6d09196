package serving

import (
	"errors"
	"strconv"
	"testing"

	"github.com/gcnserve/gcnserve/internal/gcnerr"
)

// FuzzParseVersion: a model_version from a request is either "" (0, the
// highest served), a positive integer that prints back as exactly the input,
// or an INVALID_ARGUMENT naming the value; nothing else.
func FuzzParseVersion(f *testing.F) {
	for _, s := range []string{"", "1", "3", "0", "-1", "+2", "007", "1e3", "9223372036854775808", " 1", "v1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, version string) {
		v, err := ParseVersion(version)
		if err != nil {
			var e *gcnerr.Error
			if !errors.As(err, &e) || e.Kind != gcnerr.InvalidArgument || e.Msg == "" {
				t.Fatalf("ParseVersion(%q) error %v is not an InvalidArgument gcn.Error", version, err)
			}
			if v != 0 {
				t.Fatalf("ParseVersion(%q) = %d with an error", version, v)
			}
			return
		}
		if version == "" {
			if v != 0 {
				t.Fatalf(`ParseVersion("") = %d, want 0`, v)
			}
			return
		}
		// Strict decimal: the accepted spelling is the number's only one.
		if v <= 0 || strconv.FormatInt(v, 10) != version {
			t.Fatalf("ParseVersion(%q) = %d, want a positive integer that prints back as the input", version, v)
		}
	})
}
