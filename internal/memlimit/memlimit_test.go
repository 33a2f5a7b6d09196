package memlimit

import (
	"math"
	"runtime/debug"
	"testing"
	"testing/fstest"
)

func TestFromCgroup(t *testing.T) {
	file := func(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s)} }
	tests := []struct {
		name       string
		files      fstest.MapFS
		procCgroup string
		want       Limit
		wantOK     bool
	}{
		{"v2 container root", fstest.MapFS{"sys/fs/cgroup/memory.max": file("2147483648\n")},
			"0::/\n", Limit{2 << 30, CgroupV2}, true},
		{"v2 unlimited", fstest.MapFS{"sys/fs/cgroup/memory.max": file("max\n")},
			"0::/\n", Limit{}, false},
		{"v2 nested, parent tighter", fstest.MapFS{
			"sys/fs/cgroup/system.slice/memory.max":             file("1000000\n"),
			"sys/fs/cgroup/system.slice/gcn.service/memory.max": file("max\n"),
		}, "0::/system.slice/gcn.service\n", Limit{1000000, CgroupV2}, true},
		{"v2 nested, own tighter", fstest.MapFS{
			"sys/fs/cgroup/system.slice/memory.max":             file("9000000\n"),
			"sys/fs/cgroup/system.slice/gcn.service/memory.max": file("5000000\n"),
		}, "0::/system.slice/gcn.service\n", Limit{5000000, CgroupV2}, true},
		{"v1 limited", fstest.MapFS{"sys/fs/cgroup/memory/memory.limit_in_bytes": file("536870912\n")},
			"4:memory:/\n", Limit{512 << 20, CgroupV1}, true},
		{"v1 unlimited", fstest.MapFS{"sys/fs/cgroup/memory/memory.limit_in_bytes": file("9223372036854771712\n")},
			"4:memory:/docker/abc\n0::/\n", Limit{}, false},
		{"v1 nested path", fstest.MapFS{
			"sys/fs/cgroup/memory/memory.limit_in_bytes":          file("9223372036854771712\n"),
			"sys/fs/cgroup/memory/kube/pod/memory.limit_in_bytes": file("268435456\n"),
		}, "4:memory,foo:/kube/pod\n", Limit{256 << 20, CgroupV1}, true},
		{"garbage", fstest.MapFS{"sys/fs/cgroup/memory.max": file("lots\n")}, "0::/\n", Limit{}, false},
		{"nothing", fstest.MapFS{}, "", Limit{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := FromCgroup(tt.files, tt.procCgroup)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("got %+v, %v; want %+v, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestDetect(t *testing.T) {
	l, err := Detect()
	if err != nil {
		t.Fatal(err)
	}
	if l.Bytes < 64<<20 {
		t.Errorf("Detect() = %+v: less than 64 MiB is not a machine that runs these tests", l)
	}
	if got := DefaultInflightBytes(l); got != l.Bytes/2 {
		t.Errorf("DefaultInflightBytes = %d, want half of %d", got, l.Bytes)
	}
}

func TestSetGoMemLimit(t *testing.T) {
	env := func(v string) func(string) string {
		return func(k string) string {
			if k == "GOMEMLIMIT" {
				return v
			}
			return ""
		}
	}
	if got := SetGoMemLimit(Limit{1 << 30, RAM}, env("")); got != 0 {
		t.Errorf("physical RAM: set %d, want nothing set", got)
	}
	if got := SetGoMemLimit(Limit{1 << 30, CgroupV2}, env("500MiB")); got != 0 {
		t.Errorf("GOMEMLIMIT given: set %d, want nothing set", got)
	}
	var tib int64 = 1 << 40
	// The one case that sets it: restore the limit afterwards.
	t.Cleanup(func() { debug.SetMemoryLimit(math.MaxInt64) })
	if got, want := SetGoMemLimit(Limit{tib, CgroupV1}, env("")), int64(float64(tib)*GoMemLimitShare); got != want {
		t.Errorf("cgroup limit: set %d, want %d", got, want)
	}
}
