package hostilegraphs

import (
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gcnserve/gcnserve/internal/servertest"
	"github.com/gcnserve/gcnserve/internal/testenv"
)

// launchStore starts gcnserve on store (its --graph-store) and returns it
// without waiting for SERVING.
func launchStore(t *testing.T, binary, store string) *servertest.Server {
	t.Helper()
	return servertest.Launch(t, servertest.Options{
		Binary: binary,
		Env:    []string{"GCNSERVE_ORT_LIB=" + testenv.ORTLibrary(t)},
		Args:   []string{"--graph-store", store, "--drain-delay", "0"},
	})
}

// refused checks that p exits non-zero within 20s with a log naming every
// sub, and no Go panic.
func refused(t *testing.T, what string, p *servertest.Server, subs ...string) {
	t.Helper()
	began := time.Now()
	code := 0
	select {
	case <-p.Exited():
		var ee *exec.ExitError
		if err := p.ExitErr(); errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			code = -1
		}
	case <-time.After(20 * time.Second):
		t.Errorf("%s: gcnserve still running (or hung) after 20s, want it to exit with a clear error", what)
		return
	}
	log := p.Log()
	last := log
	if i := strings.LastIndex(strings.TrimRight(log, "\n"), "\n"); i >= 0 {
		last = log[i+1:]
	}
	t.Logf("%s: exit %d after %v: %s", what, code, time.Since(began).Round(time.Millisecond), strings.TrimSpace(last))
	if code == 0 {
		t.Errorf("%s: exit status 0, want a failure", what)
	}
	if strings.Contains(log, "panic:") || strings.Contains(log, "goroutine 1 [") {
		t.Errorf("%s: the server panicked:\n%s", what, log)
	}
	for _, sub := range subs {
		if !strings.Contains(log, sub) {
			t.Errorf("%s: the log does not name %q:\n%s", what, sub, log)
		}
	}
}

// TestHostileStoreDir: a --graph-store that is a file, holds a corrupted
// store, a FIFO or a symlink to a device named like the store file, is
// read-only, or is in use by another gcnserve, stops the server at start,
// fast, with a message naming the path and what is wrong; a symlinked
// directory is followed.
func TestHostileStoreDir(t *testing.T) {
	bin := os.Getenv("HOSTILEGRAPHS_BINARY")
	if bin == "" {
		bin = servertest.Binary(t)
	}
	tmp := t.TempDir()

	file := filepath.Join(tmp, "a-file")
	os.WriteFile(file, []byte("not a directory"), 0o600)
	refused(t, "--graph-store is a file", launchStore(t, bin, file), file, "not a directory")

	garbage := filepath.Join(tmp, "garbage")
	os.MkdirAll(garbage, 0o700)
	junk := make([]byte, 64<<10)
	for i := range junk {
		junk[i] = byte(i*7 + i>>8)
	}
	os.WriteFile(filepath.Join(garbage, "graphs.db"), junk, 0o600)
	refused(t, "graphs.db of 64 KiB of junk", launchStore(t, bin, garbage), filepath.Join(garbage, "graphs.db"))

	fifo := filepath.Join(tmp, "fifo")
	os.MkdirAll(fifo, 0o700)
	if err := syscall.Mkfifo(filepath.Join(fifo, "graphs.db"), 0o600); err != nil {
		t.Fatal(err)
	}
	refused(t, "graphs.db is a FIFO", launchStore(t, bin, fifo), filepath.Join(fifo, "graphs.db"), "not a regular file")

	dev := filepath.Join(tmp, "dev")
	os.MkdirAll(dev, 0o700)
	os.Symlink("/dev/zero", filepath.Join(dev, "graphs.db"))
	refused(t, "graphs.db is a symlink to /dev/zero", launchStore(t, bin, dev), filepath.Join(dev, "graphs.db"), "not a regular file")

	// A store that worked, then had its pages overwritten.
	good := filepath.Join(tmp, "good")
	p := launchStore(t, bin, good)
	p.WaitServing(t, 60*time.Second)
	p.Signal(t, syscall.SIGTERM)
	p.ExitCode(t, 30*time.Second)
	db := filepath.Join(good, "graphs.db")
	data, err := os.ReadFile(db)
	if err != nil {
		t.Fatal(err)
	}
	for i := 2 * 4096; i < len(data); i++ {
		data[i] = 0xA5
	}
	corrupt := filepath.Join(tmp, "corrupt")
	os.MkdirAll(corrupt, 0o700)
	os.WriteFile(filepath.Join(corrupt, "graphs.db"), data, 0o600)
	refused(t, "graphs.db with its data pages overwritten", launchStore(t, bin, corrupt), filepath.Join(corrupt, "graphs.db"))

	// A symlink to a good store directory is followed.
	link := filepath.Join(tmp, "link")
	os.Symlink(good, link)
	p = launchStore(t, bin, link)
	p.WaitServing(t, 60*time.Second)

	// In use by that server: the second one fails fast naming the lock.
	began := time.Now()
	refused(t, "store in use by another gcnserve", launchStore(t, bin, good), filepath.Join(good, "graphs.db"), "another process")
	if took := time.Since(began); took > 10*time.Second {
		t.Errorf("second gcnserve on a store in use: exited after %v, want within 10s", took)
	}

	// Read-only: a read-only bind mount in a mount namespace of its own.
	ro := filepath.Join(tmp, "ro")
	os.MkdirAll(ro, 0o700)
	wrapper := filepath.Join(tmp, "ro-gcnserve")
	script := "#!/bin/sh\nD=" + ro + "\nB=" + bin + "\nexec unshare -m sh -c 'mount --bind \"$1\" \"$1\" && mount -o remount,bind,ro \"$1\" && shift && exec \"$@\"' sh \"$D\" \"$B\" \"$@\"\n"
	os.WriteFile(wrapper, []byte(script), 0o755)
	refused(t, "--graph-store on a read-only file system", launchStore(t, wrapper, ro), ro, "read-only")
}

// TestStoreWithCycle: a store file whose page tree points back at itself
// (the "graphs" bucket's root pointer set to the page that holds it, as a
// flipped pointer can) is refused at start naming the file. bbolt walks
// such a tree without end: on the unfixed binary the start never finished
// and memory grew by about 100 MB a second.
func TestStoreWithCycle(t *testing.T) {
	bin := os.Getenv("HOSTILEGRAPHS_BINARY")
	if bin == "" {
		bin = servertest.Binary(t)
	}
	dir := filepath.Join(t.TempDir(), "store")
	p := launchStore(t, bin, dir)
	p.WaitServing(t, 60*time.Second)
	p.Signal(t, syscall.SIGTERM)
	p.ExitCode(t, 30*time.Second)
	db := filepath.Join(dir, "graphs.db")
	data, err := os.ReadFile(db)
	if err != nil {
		t.Fatal(err)
	}
	pointBucketAtItself(t, data, "graphs")
	if err := os.WriteFile(db, data, 0o600); err != nil {
		t.Fatal(err)
	}
	refused(t, "graphs.db whose graphs bucket holds itself", launchStore(t, bin, dir), db, "corrupted")
}

// pointBucketAtItself sets the root page of the top-level bucket name in
// the bbolt file data to the page whose leaf holds it. bbolt's layout: a
// page starts with a 16-byte header (id, flags, count, overflow); a meta
// page holds the page size at 24, the root bucket's page at 32 and the
// transaction id at 64; a leaf element is flags, pos, ksize, vsize (4
// bytes each), its key pos bytes after the element, a bucket's value its
// root page id.
func pointBucketAtItself(t *testing.T, data []byte, name string) {
	t.Helper()
	le := binary.LittleEndian
	pageSize := int(le.Uint32(data[24:]))
	meta := 0
	if le.Uint64(data[pageSize+64:]) > le.Uint64(data[64:]) {
		meta = pageSize
	}
	root := le.Uint64(data[meta+32:])
	page := data[int(root)*pageSize:]
	if page[8]&0x02 == 0 {
		t.Fatalf("root bucket's page %d is not a leaf (flags %#x)", root, page[8])
	}
	for i := range int(le.Uint16(page[10:])) {
		elem := page[16+16*i:]
		pos, ksize := int(le.Uint32(elem[4:])), int(le.Uint32(elem[8:]))
		if le.Uint32(elem)&1 == 1 && string(elem[pos:pos+ksize]) == name {
			le.PutUint64(elem[pos+ksize:], root)
			return
		}
	}
	t.Fatalf("no bucket %q in the root bucket's page %d", name, root)
}

// TestEmptyStoreFileWarned: a store file truncated to 0 bytes is a new
// store to bbolt; the server starts with no graphs and says so in a
// warning naming the file (it said nothing: every graph gone silently).
func TestEmptyStoreFileWarned(t *testing.T) {
	bin := os.Getenv("HOSTILEGRAPHS_BINARY")
	if bin == "" {
		bin = servertest.Binary(t)
	}
	dir := t.TempDir()
	db := filepath.Join(dir, "graphs.db")
	if err := os.WriteFile(db, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	p := launchStore(t, bin, dir)
	p.WaitServing(t, 60*time.Second)
	log := p.Log()
	if !strings.Contains(log, "graph store file is empty") || !strings.Contains(log, db) {
		t.Errorf("start on an empty %s: no warning naming it:\n%s", db, log)
	}
}
