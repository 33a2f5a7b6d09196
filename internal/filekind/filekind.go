// Package filekind names the type of a file for an error message: the model
// repository and the graph store both refuse what is not a regular file (or a
// directory) and say what they found instead.
package filekind

import "io/fs"

// Of names the type in m with its article: "a directory", "a named pipe
// (FIFO)", "a character device", and so on.
func Of(m fs.FileMode) string {
	switch {
	case m.IsRegular():
		return "a regular file"
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe (FIFO)"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeSymlink != 0:
		return "a symlink"
	}
	return "an irregular file"
}
