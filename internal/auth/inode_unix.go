//go:build unix

package auth

import (
	"os"
	"syscall"
)

// inode returns the file's inode number: a replaced file (a rename over it,
// a Kubernetes secret update) has a new one even when size and time match.
func inode(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Ino)
	}
	return 0
}
