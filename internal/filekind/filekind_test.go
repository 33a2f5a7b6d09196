package filekind_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/gcnserve/gcnserve/internal/filekind"
)

func TestOf(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "p")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "l")
	if err := os.Symlink(file, link); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path  string
		lstat bool
		want  string
	}{
		{file, false, "a regular file"},
		{dir, false, "a directory"},
		{fifo, false, "a named pipe (FIFO)"},
		{"/dev/null", false, "a character device"},
		{link, true, "a symlink"},
	} {
		stat := os.Stat
		if c.lstat {
			stat = os.Lstat
		}
		fi, err := stat(c.path)
		if err != nil {
			t.Fatal(err)
		}
		if got := filekind.Of(fi.Mode()); got != c.want {
			t.Errorf("Of(%s) = %q, want %q", c.path, got, c.want)
		}
	}
	if got := filekind.Of(fs.ModeDevice); got != "a block device" {
		t.Errorf("Of(ModeDevice) = %q", got)
	}
	if got := filekind.Of(fs.ModeSocket); got != "a socket" {
		t.Errorf("Of(ModeSocket) = %q", got)
	}
	if got := filekind.Of(fs.ModeIrregular); got != "an irregular file" {
		t.Errorf("Of(ModeIrregular) = %q", got)
	}
}
