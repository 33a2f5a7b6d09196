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
}

// diskModel is what a scan saw of one model directory.
type diskModel struct {
	versions map[int64]diskVersion
	// policy is the version_policy file's text; hasPolicy says it exists.
	policy      string
	hasPolicy   bool
	policyMtime time.Time
	// partial is set when part of the directory could not be read: versions
	// missing from the scan are then not treated as removed.
	partial bool
}

// scanRepository lists dir's models and versions. It only stats files;
// reading them is left to the loader. Entries that are not a model or a
// version (hidden names, files, non-numeric directories) are reported in
// skipped, keyed by path, so that the caller logs each once.
func scanRepository(dir string) (models map[string]*diskModel, skipped map[string]string, err error) {
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
			fi, err := os.Stat(path)
			var data []byte
			if err == nil {
				data, err = os.ReadFile(path)
			}
			if err != nil {
				skipped[path] = err.Error()
				m.partial = true
				continue
			}
			m.policy, m.hasPolicy, m.policyMtime = string(data), true, fi.ModTime()
			continue
		}
		v, ok := parseVersion(name)
		if !ok || !isDir(path, e) {
			skipped[path] = "not a version directory (want a positive integer) or " + PolicyFileName
			continue
		}
		file := filepath.Join(path, ModelFileName)
		fi, err := os.Stat(file)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			// A version directory being set up: not a version yet.
		case err != nil:
			skipped[file] = err.Error()
			m.partial = true
		case !fi.Mode().IsRegular():
			skipped[file] = "not a regular file"
		default:
			m.versions[v] = diskVersion{path: file, stat: statOf(fi)}
		}
	}
	return m
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
	f, err := os.Open(path)
	if err != nil {
		return nil, fileStat{}, "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fileStat{}, "", err
	}
	st = statOf(fi)
	if age := now.Sub(st.mtime); age < minAge {
		return nil, st, "", &errChanging{due: st.mtime.Add(minAge),
			reason: fmt.Sprintf("modified %s ago; waiting until it is unchanged for %s", age.Round(time.Millisecond), minAge)}
	}
	data = make([]byte, st.size)
	if _, err := io.ReadFull(f, data); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return nil, st, "", &errChanging{due: time.Now().Add(minAge), reason: "shrank while being read; waiting until it is unchanged"}
		}
		return nil, st, "", err
	}
	if n, _ := f.Read(make([]byte, 1)); n > 0 {
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
