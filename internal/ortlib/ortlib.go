// Package ortlib finds the ONNX Runtime shared library for this process.
//
// Built with the ortembed tag (as 'make build' does), the binary carries the
// sha256-verified library inside it (go:embed) and Resolve hands the dynamic
// loader an in-memory copy: a memfd named by its /proc/self/fd path, so a lone
// binary on a bare machine, a read-only root file system or an empty working
// directory all work, and nothing is written to the working directory. Without
// the tag the package embeds nothing and Resolve looks for a library on disk,
// for people who bring their own.
package ortlib

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"
)

// Version is the ONNX Runtime release scripts/fetch_ort.sh installs, that the
// embedded copy is, and that github.com/yalue/onnxruntime_go in go.mod is built for.
const Version = "1.29.0"

// SHA256 is the checksum of the library for linux/x86_64 (scripts/fetch_ort.sh
// verifies it on download, scripts/embed_ort.sh before embedding).
const SHA256 = "89688f5cf51c7e31befbb7b9101bc027799009b18d1baa9a5b1146a72e69538d"

// SystemName is the library name left to the dynamic loader's search path
// (LD_LIBRARY_PATH, ld.so.cache) when nothing else is found.
const SystemName = "libonnxruntime.so"

// Embedded reports whether this binary carries the library (built with the
// ortembed tag).
func Embedded() bool { return len(embedded) > 0 }

// EmbeddedSize is the size in bytes of the embedded library (0 without it).
func EmbeddedSize() int { return len(embedded) }

// CachePath is the per-user copy scripts/fetch_ort.sh keeps:
// ${XDG_CACHE_HOME:-~/.cache}/gcnserve/ort/<Version>/libonnxruntime.so.
// It returns "" when neither XDG_CACHE_HOME nor HOME is known.
func CachePath() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "gcnserve", "ort", Version, "libonnxruntime.so")
}

// Resolve returns the path to hand to the dynamic loader, first of:
//
//  1. explicit, when not empty (--ort-lib or GCNSERVE_ORT_LIB): always wins;
//  2. the embedded copy (ortembed builds), as /proc/self/fd/N of a sealed
//     memfd, or where memfd or /proc is unavailable a private temporary file;
//  3. the per-user cache (CachePath), when that file exists;
//  4. SystemName, for the loader's own search.
//
// embedded says whether the path is the embedded copy. Call cleanup once the
// library has been loaded (the first model opened): it closes the memfd or
// removes the temporary file; a loaded library stays mapped. cleanup is never
// nil and is safe to call more than once.
func Resolve(explicit string) (path string, embedded bool, cleanup func() error, err error) {
	nop := func() error { return nil }
	if explicit != "" {
		return explicit, false, nop, nil
	}
	if Embedded() {
		path, cleanup, err := materialize()
		if err != nil {
			return "", false, nop, err
		}
		return path, true, cleanup, nil
	}
	if p := CachePath(); p != "" {
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return p, false, nop, nil
		}
	}
	return SystemName, false, nop, nil
}

// materialize puts the embedded library where dlopen can open it.
func materialize() (string, func() error, error) {
	path, cleanup, err := MemFile("libonnxruntime.so", embedded)
	if err != nil {
		return "", nil, fmt.Errorf("embedded onnxruntime: %w", err)
	}
	return path, cleanup, nil
}

// MemFile gives data a path that other code can open, without writing to
// the working directory: a sealed memfd's /proc/self/fd/N, or where that is
// unavailable a file in a private directory under os.TempDir(). cleanup
// closes or removes it; call it once the data has been read or mapped.
// cmd/server uses it for the embedded model too.
func MemFile(name string, data []byte) (path string, cleanup func() error, err error) {
	path, cleanup, memErr := memfd(name, data)
	if memErr == nil {
		return path, cleanup, nil
	}
	path, cleanup, tmpErr := tempFile(name, data)
	if tmpErr == nil {
		return path, cleanup, nil
	}
	return "", nil, errors.Join(memErr, tmpErr)
}

// memfd copies data into an anonymous, sealed in-memory file and returns its
// /proc/self/fd path. The descriptor is close-on-exec (children never see it)
// and a raw fd, not an *os.File, so no finalizer closes it before dlopen.
func memfd(name string, data []byte) (string, func() error, error) {
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return "", nil, fmt.Errorf("memfd_create: %w", err)
	}
	fail := func(what string, err error) (string, func() error, error) {
		unix.Close(fd)
		return "", nil, fmt.Errorf("%s: %w", what, err)
	}
	for rest := data; len(rest) > 0; {
		n, err := unix.Write(fd, rest)
		if err != nil {
			return fail("write memfd", err)
		}
		rest = rest[n:]
	}
	// Sealed, nobody (this process included) can change the code the
	// loader maps.
	const seals = unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, seals); err != nil {
		return fail("seal memfd", err)
	}
	path := fmt.Sprintf("/proc/self/fd/%d", fd)
	if _, err := os.Stat(path); err != nil {
		return fail("memfd not reachable through /proc", err)
	}
	return path, sync.OnceValue(func() error { return unix.Close(fd) }), nil
}

// tempFile writes data to a file in a fresh private directory under
// os.TempDir(); cleanup removes both.
func tempFile(name string, data []byte) (string, func() error, error) {
	dir, err := os.MkdirTemp("", "gcnserve-")
	if err != nil {
		return "", nil, err
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o500); err != nil {
		os.RemoveAll(dir)
		return "", nil, err
	}
	return path, sync.OnceValue(func() error { return os.RemoveAll(dir) }), nil
}
