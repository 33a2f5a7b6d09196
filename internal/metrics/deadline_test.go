package metrics

import (
	"testing"
	"time"
)

func TestEndedByDeadline(t *testing.T) {
	begin := time.Unix(1000, 0)
	ms := time.Millisecond
	for _, tc := range []struct {
		name          string
		end, deadline time.Duration // after begin; deadline 0: none
		want          bool
	}{
		{"no deadline", 5 * ms, 0, false},
		{"after the deadline", 1001 * ms, 1000 * ms, true},
		{"reset a little before the server's timer", 990 * ms, 1000 * ms, true},
		{"cancelled early", 500 * ms, 1000 * ms, false},
		{"short timeout, cancelled early", 10 * ms, 40 * ms, false},
		{"short timeout, reset at the deadline", 30 * ms, 40 * ms, true},
	} {
		var deadline time.Time
		if tc.deadline > 0 {
			deadline = begin.Add(tc.deadline)
		}
		if got := endedByDeadline(begin, begin.Add(tc.end), deadline); got != tc.want {
			t.Errorf("%s: endedByDeadline = %v, want %v", tc.name, got, tc.want)
		}
	}
}
