// Package memlimit finds the memory this process may use: the cgroup limit
// when it runs in a container or a limited systemd unit, else the machine's
// physical RAM. The server sizes its default --max-inflight-bytes from it
// and sets the Go runtime's soft memory limit (GOMEMLIMIT) from a cgroup
// limit, so the garbage collector works harder before the kernel kills.
package memlimit

import (
	"bufio"
	"bytes"

	"fmt"
	"io/fs"
	"math"
	"os"
	"path"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
)

// Source says where a limit came from.
type Source string

// The sources of a limit.
const (
	CgroupV2 Source = "cgroup v2"
	CgroupV1 Source = "cgroup v1"
	RAM      Source = "physical RAM"
)

// Limit is the memory available to the process.
type Limit struct {
	Bytes  int64
	Source Source
}

// Cgroup reports whether the limit came from a cgroup.
func (l Limit) Cgroup() bool { return l.Source == CgroupV2 || l.Source == CgroupV1 }

// Detect returns the tightest cgroup memory limit on the path from this
// process's cgroup to the root (v2: memory.max; v1: memory.limit_in_bytes),
// or physical RAM when no cgroup sets one.
func Detect() (Limit, error) {
	if l, ok := FromCgroup(os.DirFS("/"), readFile("/proc/self/cgroup")); ok {
		return l, nil
	}
	var si syscall.Sysinfo_t
	if err := syscall.Sysinfo(&si); err != nil {
		return Limit{}, fmt.Errorf("memlimit: sysinfo: %w", err)
	}
	return Limit{Bytes: int64(si.Totalram) * int64(si.Unit), Source: RAM}, nil
}

func readFile(name string) string {
	data, _ := os.ReadFile(name)
	return string(data)
}

// FromCgroup finds the cgroup limit in root (a view of "/") for a process
// whose /proc/self/cgroup reads procCgroup. ok is false when no cgroup
// limits memory. Exported for tests.
func FromCgroup(root fs.FS, procCgroup string) (l Limit, ok bool) {
	v2, v1 := cgroupPaths(procCgroup)
	if v2 != "" || procCgroup == "" {
		// Inside a container the process's own cgroup is usually mounted at
		// the root, whatever /proc/self/cgroup names: look at both.
		if n, ok := tightest(root, "sys/fs/cgroup", v2, "memory.max"); ok {
			return Limit{Bytes: n, Source: CgroupV2}, true
		}
	}
	if n, ok := tightest(root, "sys/fs/cgroup/memory", v1, "memory.limit_in_bytes"); ok {
		return Limit{Bytes: n, Source: CgroupV1}, true
	}
	return Limit{}, false
}

// cgroupPaths returns the process's v2 cgroup path and its v1 memory
// controller path from /proc/self/cgroup lines "id:controllers:path".
func cgroupPaths(procCgroup string) (v2, v1 string) {
	sc := bufio.NewScanner(strings.NewReader(procCgroup))
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		switch {
		case parts[0] == "0" && parts[1] == "":
			v2 = parts[2]
		case strings.Contains(","+parts[1]+",", ",memory,"):
			v1 = parts[2]
		}
	}
	return v2, v1
}

// tightest returns the smallest limit in file over mount/rel and its
// parents up to mount, and mount itself.
func tightest(root fs.FS, mount, rel, file string) (int64, bool) {
	best, found := int64(math.MaxInt64), false
	dir := path.Join(mount, path.Clean("/" + rel)[1:])
	for {
		if n, ok := readLimit(root, path.Join(dir, file)); ok && n < best {
			best, found = n, true
		}
		if dir == mount || !strings.HasPrefix(dir, mount+"/") {
			break
		}
		dir = path.Dir(dir)
	}
	return best, found
}

// readLimit reads one limit file: a byte count, or "max" (v2) or a huge
// number (v1's "unlimited", 2^63 rounded down to a page) for no limit.
func readLimit(root fs.FS, name string) (int64, bool) {
	data, err := fs.ReadFile(root, name)
	if err != nil {
		return 0, false
	}
	s := string(bytes.TrimSpace(data))
	if s == "max" {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 || n >= 1<<62 {
		return 0, false
	}
	return n, true
}

// DefaultInflightShare is the share of the memory limit that
// --max-inflight-bytes defaults to: the other half is for the model,
// ONNX Runtime's working memory, the Go runtime and what the budget's cost
// estimate misses.
const DefaultInflightShare = 0.5

// DefaultInflightBytes returns the default --max-inflight-bytes for l.
func DefaultInflightBytes(l Limit) int64 {
	return int64(float64(l.Bytes) * DefaultInflightShare)
}

// GoMemLimitShare is the share of a cgroup limit given to the Go runtime as
// its soft limit: the rest covers memory Go does not manage (ONNX
// Runtime's allocations, the model, thread stacks).
const GoMemLimitShare = 0.9

// SetGoMemLimit sets the Go runtime's soft memory limit to GoMemLimitShare
// of l when l is a cgroup limit and the user has not set GOMEMLIMIT (read
// through getenv). It returns the limit it set, or 0 when it set none.
func SetGoMemLimit(l Limit, getenv func(string) string) int64 {
	if !l.Cgroup() || getenv("GOMEMLIMIT") != "" {
		return 0
	}
	n := int64(float64(l.Bytes) * GoMemLimitShare)
	debug.SetMemoryLimit(n)
	return n
}
