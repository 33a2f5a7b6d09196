package server

import (
	"fmt"
	"math"
	"strconv"
	"time"
)

// RangeError is a numeric setting outside its allowed range. ParseFlags
// names the environment variable instead of the flag when the value came
// from there.
type RangeError struct {
	// Flag is the flag's name without dashes ("max-nodes").
	Flag string
	// Value is the value as given.
	Value string
	// Want is the allowed range, e.g. "0 to 2147483647 (0: unlimited)".
	Want string
	// Env, when set, is the environment variable the value came from.
	Env string
}

func (e *RangeError) Error() string {
	if e.Env != "" {
		return fmt.Sprintf("%s=%s (--%s): out of range: want %s", e.Env, e.Value, e.Flag, e.Want)
	}
	return fmt.Sprintf("--%s %s: out of range: want %s", e.Flag, e.Value, e.Want)
}

// Validation bounds that are not a type's own limits.
const (
	// maxMessageBytes is protobuf's limit on one message (2 GiB - 1).
	maxMessageBytes = math.MaxInt32
	// minRequestBytes keeps --max-request-bytes from refusing everything:
	// the smallest useful request (karate, 34 nodes) is 1.3 KB.
	minRequestBytes = 1 << 10
	// minInflightBytes is the smallest budget worth running with.
	minInflightBytes = 1 << 20
)

// Validate range-checks every numeric setting and returns a *UsageError
// wrapping a *RangeError for the first one out of range. DefaultConfig
// passes.
func (c Config) Validate() error {
	ints := []struct {
		flag      string
		v, lo, hi int64
		note      string
	}{
		{"max-nodes", int64(c.MaxNodes), 0, math.MaxInt32, "0: unlimited"},
		{"max-edges", int64(c.MaxEdges), 0, math.MaxInt32, "0: unlimited"},
		{"max-request-bytes", int64(c.MaxRequestBytes), minRequestBytes, maxMessageBytes, "protobuf's limit is 2 GiB"},
		{"max-queue", int64(c.MaxQueue), 0, 1 << 20, "0: refuse what does not fit at once"},
		{"intra-op-threads", int64(c.IntraOpThreads), 1, 1024, ""},
		{"max-concurrent-runs", int64(c.MaxConcurrentRuns), 0, 1 << 16, "0: the number of CPUs"},
		{"batch-max-nodes", int64(c.Batch.MaxNodes), 1, math.MaxInt32, ""},
		{"batch-max-edges", int64(c.Batch.MaxEdges), 1, math.MaxInt32, ""},
		{"max-concurrent-streams", int64(c.MaxConcurrentStreams), 1, 1 << 20, ""},
		{"http-max-header-bytes", int64(c.HTTP.MaxHeaderBytes), 1 << 10, 16 << 20, ""},
		{"max-http-conns", int64(c.HTTP.MaxConns), 0, 1 << 20, "0: unlimited"},
		{"max-grpc-conns", int64(c.MaxGRPCConns), 0, 1 << 20, "0: unlimited"},
	}
	for _, r := range ints {
		if r.v < r.lo || r.v > r.hi {
			return rangeError(r.flag, strconv.FormatInt(r.v, 10), fmt.Sprintf("%d to %d", r.lo, r.hi), r.note)
		}
	}
	// 0 turns admission control off; otherwise at least 1 MiB.
	if b := c.MaxInflightBytes; b != 0 && b < minInflightBytes || b < 0 {
		return rangeError("max-inflight-bytes", strconv.FormatInt(b, 10),
			fmt.Sprintf("0 or %d to %d", int64(minInflightBytes), int64(math.MaxInt64)), "0: no admission control")
	}
	if c.GraphSnapshotBytes < 1024 {
		return rangeError("graph-snapshot-bytes", strconv.FormatInt(c.GraphSnapshotBytes, 10), "1024 or more", "")
	}
	if c.MaxGraphBytes < 0 {
		return rangeError("max-graph-bytes", strconv.FormatInt(c.MaxGraphBytes, 10), "0 or more", "0: unlimited")
	}
	durations := []struct {
		flag  string
		v, hi time.Duration
		note  string
	}{
		{"queue-timeout", c.QueueTimeout, time.Hour, "0: wait only for the request's deadline"},
		{"drain-delay", c.DrainDelay, 10 * time.Minute, "0: stop accepting at once"},
		{"shutdown-grace", c.ShutdownGrace, time.Hour, "0: cancel in-flight calls at once"},
		{"batch-max-delay", c.Batch.MaxDelay, time.Second, ""},
		{"repository-poll-interval", c.RepositoryPollInterval, 24 * time.Hour, "0: only on SIGHUP"},
		{"max-connection-age", c.MaxConnectionAge, 30 * 24 * time.Hour, "0: never"},
		{"grpc-idle-timeout", c.GRPCIdleTimeout, 30 * 24 * time.Hour, "0: never"},
		{"request-read-timeout", c.RequestReadTimeout, time.Hour, "0: never"},
		{"stream-send-timeout", c.StreamSendTimeout, time.Hour, "0: never"},
		{"graph-revision-wait", c.GraphRevisionWait, 10 * time.Minute, "0: the 10s default"},
		{"repository-min-file-age", c.RepositoryMinFileAge, time.Hour, "0: the 1s default"},
		{"http-read-header-timeout", c.HTTP.ReadHeaderTimeout, time.Hour, "0: no limit but --http-read-timeout"},
		{"http-read-timeout", c.HTTP.ReadTimeout, 24 * time.Hour, "0: no limit"},
		{"http-idle-timeout", c.HTTP.IdleTimeout, 24 * time.Hour, "0: --http-read-timeout"},
	}
	for _, r := range durations {
		if r.v < 0 || r.v > r.hi {
			return rangeError(r.flag, r.v.String(), fmt.Sprintf("0s to %s", r.hi), r.note)
		}
	}
	return nil
}

func rangeError(flag, value, want, note string) error {
	if note != "" {
		want += " (" + note + ")"
	}
	return &UsageError{Err: &RangeError{Flag: flag, Value: value, Want: want}}
}
