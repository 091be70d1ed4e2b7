// Package safefile writes a file whole, and never through a link: the
// data goes to a new temporary file in the same directory (created with
// O_CREATE|O_EXCL, which opens nothing that exists there, not even a
// symbolic link planted under a guessed name), is synced, and is then put
// in place in one step. A reader sees the old file or the new one, never
// half of one, and mailchaos, which runs as root next to production mail,
// cannot be made to write somewhere else by a symbolic link.
package safefile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Mode says what may already be at the path.
type Mode int

const (
	// Replace replaces a regular file (reports, state files: their paths
	// are reused) and refuses a symbolic link or anything else.
	Replace Mode = iota
	// Create refuses anything that exists at the path, even when it
	// appears while the file is written: the file is put in place with a
	// hard link, which never replaces.
	Create
	// Force replaces whatever is at the path but a directory: a symbolic
	// link there is replaced, not followed.
	Force
)

// ErrSymlink is the error (with [errors.Is]) for a symbolic link at the
// path in [Replace] mode.
var ErrSymlink = errors.New("is a symbolic link: refused, files are not written through links")

// ErrNotRegular is the error for something at the path that is neither a
// regular file nor, in [Force] mode, a symbolic link: a directory, a
// device, a socket.
var ErrNotRegular = errors.New("is not a regular file: refused")

// Write writes data to path with permissions perm, as mode allows. The
// errors wrap [ErrSymlink], [ErrNotRegular] or, in [Create] mode,
// [fs.ErrExist], and name the path.
func Write(path string, data []byte, perm fs.FileMode, mode Mode) error {
	if err := check(path, mode); err != nil {
		return err
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	name := tmp.Name()
	defer os.Remove(name) // once in place (renamed), nothing is there
	if err := fill(tmp, data, perm); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if mode == Create {
		if err := os.Link(name, path); err != nil {
			if errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("%s: %w", path, fs.ErrExist)
			}
			return fmt.Errorf("write %s: %w", path, err)
		}
	} else if err := os.Rename(name, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	// The new name is durable once the directory is synced too.
	if d, err := os.Open(dir); err == nil {
		serr := d.Sync()
		_ = d.Close()
		if serr != nil {
			return fmt.Errorf("write %s: sync %s: %w", path, dir, serr)
		}
	}
	return nil
}

// check refuses what mode does not allow at path.
func check(path string, mode Mode) error {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("write %s: %w", path, err)
	case mode == Create:
		return fmt.Errorf("%s: %w", path, fs.ErrExist)
	case fi.Mode()&fs.ModeSymlink != 0 && mode == Force:
		return nil
	case fi.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("%s %w", path, ErrSymlink)
	case !fi.Mode().IsRegular():
		return fmt.Errorf("%s %w (%s)", path, ErrNotRegular, fi.Mode().Type())
	}
	return nil
}

// fill writes data to f, sets its permissions, syncs and closes it.
func fill(f *os.File, data []byte, perm fs.FileMode) error {
	_, werr := f.Write(data)
	cherr := f.Chmod(perm)
	serr := f.Sync()
	cerr := f.Close()
	return errors.Join(werr, cherr, serr, cerr)
}
