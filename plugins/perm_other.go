//go:build !unix

package plugins

import "io/fs"

// fileOwner is not known here.
func fileOwner(fs.FileInfo) (int, bool) { return 0, false }
