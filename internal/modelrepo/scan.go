package modelrepo

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/gcnserve/gcnserve/internal/filekind"
)

// Names of the files a repository holds.
const (
	// ModelFileName is the model file inside a version directory.
	ModelFileName = "model.onnx"
	// PolicyFileName is the optional per-model policy file next to the
	// version directories: one line in the --version-policy syntax ("#"
	// starts a comment).
	PolicyFileName = "version_policy"
)

// Size limits of the files a repository holds: a bigger file is refused
// before a byte of it is read.
const (
	// MaxModelBytes is protobuf's limit on one message (2 GiB - 1), and so
	// on an ONNX model held in one file: a bigger model.onnx cannot be a
	// model gcn opens, and reading it would only exhaust memory.
	MaxModelBytes = 2<<30 - 1
	// MaxPolicyBytes bounds a version_policy file, one short line.
	MaxPolicyBytes = 4 << 10
)

// refusedError says why a file of the repository is refused without being
// opened: what it is, or its size.
type refusedError struct{ reason string }

func (e *refusedError) Error() string { return e.reason }

// statFile stats path as the repository accepts it: a regular file, or a
// symlink to one, of at most limit bytes. Anything else (a FIFO, a device
// such as /dev/zero, a socket, a directory, or a symlink to one of them) is
// a *refusedError saying what it is, found without opening it: opening a
// FIFO blocks until a writer comes, and a device can be read forever. The
// FileInfo is the file's (the symlink's target), also on refusal.
func statFile(path string, limit int64) (fs.FileInfo, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	via := ""
	if fi.Mode()&fs.ModeSymlink != 0 {
		if fi, err = os.Stat(path); err != nil {
			return nil, err
		}
		via = "a symlink to "
	}
	if !fi.Mode().IsRegular() {
		return fi, &refusedError{fmt.Sprintf("%s%s, not a regular file", via, filekind.Of(fi.Mode()))}
	}
	if fi.Size() > limit {
		return fi, &refusedError{fmt.Sprintf("%d bytes, over the %d-byte limit (%s)", fi.Size(), limit, limitName(limit))}
	}
	return fi, nil
}

func limitName(limit int64) string {
	if limit == MaxModelBytes {
		return "protobuf's 2 GiB limit on one ONNX model file"
	}
	return "a " + PolicyFileName + " file is one short line"
}

// openFile opens a file statFile accepts, without blocking: O_NONBLOCK, so
// that a FIFO renamed in after the stat cannot hang the open, and the opened
// file is checked again (type and size) before anything is read.
func openFile(path string, limit int64) (*os.File, fs.FileInfo, error) {
	if _, err := statFile(path, limit); err != nil {
		return nil, nil, err
	}
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	switch {
	case err != nil:
	case !fi.Mode().IsRegular():
		err = &refusedError{fmt.Sprintf("%s, not a regular file", filekind.Of(fi.Mode()))}
	case fi.Size() > limit:
		err = &refusedError{fmt.Sprintf("%d bytes, over the %d-byte limit (%s)", fi.Size(), limit, limitName(limit))}
	}
	if err != nil {
		f.Close()
		return nil, fi, err
	}
	return f, fi, nil
}

// readAtMost reads f, whose size was stat'ed as size, through a reader
// bounded at size+1 bytes: it reports whether the file shrank or grew
// meanwhile, and never reads more than one byte past size.
func readAtMost(f *os.File, size int64) (data []byte, shrank, grew bool, err error) {
	buf := make([]byte, size+1)
	n, err := io.ReadFull(io.LimitReader(f, size+1), buf)
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		err = nil
	case err != nil:
		return nil, false, false, err
	}
	return buf[:min(int64(n), size)], int64(n) < size, int64(n) > size, nil
}

// fileStat identifies one state of a file: a file that was rewritten or
// replaced (renamed over) has another size, mtime or inode.
type fileStat struct {
	size  int64
	mtime time.Time
	ino   uint64
}

func statOf(fi fs.FileInfo) fileStat {
	st := fileStat{size: fi.Size(), mtime: fi.ModTime()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.ino = sys.Ino
	}
	return st
}

func (s fileStat) equal(o fileStat) bool {
	return s.size == o.size && s.mtime.Equal(o.mtime) && s.ino == o.ino
}

// diskVersion is what a scan saw of one version directory.
type diskVersion struct {
	path string
	stat fileStat
	// refused says why the file is not even opened (statFile); "" when it
	// may be loaded.
	refused string
}

// diskModel is what a scan saw of one model directory.
type diskModel struct {
	versions map[int64]diskVersion
	// policy is the version_policy file's text; hasPolicy says it exists.
	policy      string
	hasPolicy   bool
	policyMtime time.Time
	// policyRefused says why the version_policy file was not read ("" when
	// it was, or there is none).
	policyRefused string
	// partial is set when part of the directory could not be read: versions
	// missing from the scan are then not treated as removed.
	partial bool
	// gone, in single-file mode, says why the file that was loaded is gone
	// (the loaded copy serves on).
	gone string
}

// scanRepository lists dir's models and versions. It only stats files;
// reading them is left to the loader. Entries that are not a model or a
// version (hidden names, files, non-numeric directories) are reported in
// skipped, keyed by path, so that the caller logs each once.
func scanRepository(dir string) (models map[string]*diskModel, skipped map[string]string, err error) {
	if fi, err := os.Stat(dir); err != nil {
		return nil, nil, fmt.Errorf("model repository: %w", err)
	} else if !fi.IsDir() {
		return nil, nil, fmt.Errorf("model repository %s: %s, not a directory", dir, filekind.Of(fi.Mode()))
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("model repository: %w", err)
	}
	models = make(map[string]*diskModel)
	skipped = make(map[string]string)
	for _, e := range entries {
		name := e.Name()
		path := filepath.Join(dir, name)
		if strings.HasPrefix(name, ".") {
			continue // staging area of an atomic publish
		}
		if !isDir(path, e) {
			skipped[path] = "not a directory"
			continue
		}
		if err := checkModelName(name); err != nil {
			skipped[path] = err.Error()
			continue
		}
		models[name] = scanModel(path, skipped)
	}
	return models, skipped, nil
}

// isDir follows a symlink, so that a version may be published by pointing a
// symlink at it.
func isDir(path string, e fs.DirEntry) bool {
	if e.IsDir() {
		return true
	}
	if e.Type()&fs.ModeSymlink == 0 {
		return false
	}
	fi, err := os.Stat(path)
	return err == nil && fi.IsDir()
}

func scanModel(dir string, skipped map[string]string) *diskModel {
	m := &diskModel{versions: make(map[int64]diskVersion)}
	entries, err := os.ReadDir(dir)
	if err != nil {
		skipped[dir] = err.Error()
		m.partial = true
		return m
	}
	for _, e := range entries {
		name := e.Name()
		path := filepath.Join(dir, name)
		if strings.HasPrefix(name, ".") {
			continue
		}
		if name == PolicyFileName {
			data, fi, err := readPolicyFile(path)
			var refused *refusedError
			switch {
			case errors.As(err, &refused):
				m.hasPolicy, m.policyRefused = true, refused.reason
			case err != nil:
				skipped[path] = err.Error()
				m.partial = true
			default:
				m.policy, m.hasPolicy, m.policyMtime = string(data), true, fi.ModTime()
			}
			continue
		}
		v, ok := parseVersion(name)
		if !ok || !isDir(path, e) {
			skipped[path] = "not a version directory (want a positive integer) or " + PolicyFileName
			continue
		}
		file := filepath.Join(path, ModelFileName)
		fi, err := statFile(file, MaxModelBytes)
		var refused *refusedError
		switch {
		case errors.Is(err, fs.ErrNotExist):
			// A version directory being set up: not a version yet.
		case errors.As(err, &refused):
			m.versions[v] = diskVersion{path: file, stat: statOf(fi), refused: refused.reason}
		case err != nil:
			skipped[file] = err.Error()
			m.partial = true
		default:
			m.versions[v] = diskVersion{path: file, stat: statOf(fi)}
		}
	}
	return m
}

// readPolicyFile reads a version_policy file of at most MaxPolicyBytes
// (statFile, then openFile: a FIFO or a device is refused unopened).
func readPolicyFile(path string) ([]byte, fs.FileInfo, error) {
	f, fi, err := openFile(path, MaxPolicyBytes)
	if err != nil {
		return nil, fi, err
	}
	defer f.Close()
	data, _, grew, err := readAtMost(f, fi.Size())
	if err == nil && grew {
		err = &refusedError{fmt.Sprintf("grew past its stat'ed %d bytes while read (limit %d)", fi.Size(), MaxPolicyBytes)}
	}
	return data, fi, err
}

// checkModelName accepts names that are safe in a URL path segment and a
// metric label: letters, digits, '_', '-' and '.', starting with a letter or
// digit, at most 128 bytes.
func checkModelName(name string) error {
	if name == "" || len(name) > 128 {
		return fmt.Errorf("model name %q: want 1 to 128 characters", name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '_' && c != '-' && c != '.') {
			return fmt.Errorf("model name %q: want letters, digits, '_', '-' and '.', starting with a letter or digit", name)
		}
	}
	return nil
}

// parsePolicyFile reads a version_policy file: the first line that is not
// blank or a "#" comment.
func parsePolicyFile(text string) (Policy, error) {
	for line := range strings.SplitSeq(text, "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		if line = strings.TrimSpace(line); line != "" {
			return ParsePolicy(line)
		}
	}
	return Policy{}, fmt.Errorf("%s: empty (want latest, latest:N, all or specific:V1,V2,...)", PolicyFileName)
}

// errChanging says a file is still being written, so it is not loaded yet.
type errChanging struct {
	// due is when the file is old enough, if it stays unchanged.
	due    time.Time
	reason string
}

func (e *errChanging) Error() string { return e.reason }

// readStable reads a model file that has not changed for at least minAge.
// It returns *errChanging for a file modified more recently, or changed
// while it was read (size, mtime or inode differ before and after), so a
// half-copied file is never loaded. The stat it returns belongs to the bytes
// it returns, and so does the SHA-256.
func readStable(path string, minAge time.Duration, now time.Time) (data []byte, st fileStat, sum string, err error) {
	f, fi, err := openFile(path, MaxModelBytes)
	if err != nil {
		if fi != nil {
			st = statOf(fi)
		}
		return nil, st, "", err
	}
	defer f.Close()
	st = statOf(fi)
	if age := now.Sub(st.mtime); age < minAge {
		return nil, st, "", &errChanging{due: st.mtime.Add(minAge),
			reason: fmt.Sprintf("modified %s ago; waiting until it is unchanged for %s", age.Round(time.Millisecond), minAge)}
	}
	data, shrank, grew, err := readAtMost(f, st.size)
	switch {
	case err != nil:
		return nil, st, "", err
	case shrank:
		return nil, st, "", &errChanging{due: time.Now().Add(minAge), reason: "shrank while being read; waiting until it is unchanged"}
	case grew:
		return nil, st, "", &errChanging{due: time.Now().Add(minAge), reason: "grew while being read; waiting until it is unchanged"}
	}
	fi, err = f.Stat()
	if err != nil {
		return nil, st, "", err
	}
	if after := statOf(fi); !after.equal(st) {
		return nil, after, "", &errChanging{due: time.Now().Add(minAge),
			reason: "changed while being read; waiting until it is unchanged"}
	}
	if cur, err := os.Stat(path); err == nil && !statOf(cur).equal(st) {
		// Replaced by a rename while being read: load the new file later.
		return nil, statOf(cur), "", &errChanging{due: time.Now(), reason: "replaced while being read"}
	}
	sum = hex.EncodeToString(sha256Sum(data))
	return data, st, sum, nil
}

func sha256Sum(data []byte) []byte {
	h := sha256.Sum256(data)
	return h[:]
}
