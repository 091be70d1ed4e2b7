//go:build unix

package plugins

import (
	"io/fs"
	"syscall"
)

// fileOwner returns the user ID that owns a file.
func fileOwner(info fs.FileInfo) (int, bool) {
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return int(st.Uid), true
}
