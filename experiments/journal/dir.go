package journal

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// DefaultDir returns the directory journals go to when the user names no
// file: $XDG_STATE_HOME/mailchaos, else ~/.local/state/mailchaos. getenv
// reads the environment (nil means os.Getenv). The directory is made, mode
// 0700, if it is missing; an existing one is refused if it is a symbolic
// link, not a directory, not owned by the user mailchaos runs as, or
// writable by anyone else.
func DefaultDir(getenv func(string) string) (string, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	base := getenv("XDG_STATE_HOME")
	if !filepath.IsAbs(base) {
		// The XDG specification says relative paths are to be ignored.
		home := getenv("HOME")
		if !filepath.IsAbs(home) {
			return "", errors.New("journal: no state directory: neither XDG_STATE_HOME nor HOME is an absolute path")
		}
		base = filepath.Join(home, ".local", "state")
	}
	dir := filepath.Join(base, "mailchaos")
	if err := os.MkdirAll(base, 0o700); err != nil {
		return "", fmt.Errorf("journal: state directory: %w", err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("journal: state directory: %w", err)
	}
	if _, err := checkDir(dir); err != nil {
		return "", err
	}
	return dir, nil
}

// checkDir refuses a journal directory that someone other than the user
// mailchaos runs as could change: a symbolic link, a directory owned by
// someone else or writable by group or others.
func checkDir(dir string) (fs.FileInfo, error) {
	fi, err := os.Lstat(dir)
	if err != nil {
		return nil, fmt.Errorf("journal: state directory: %w", err)
	}
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		return nil, fmt.Errorf("journal: state directory %s is a symbolic link: refused", dir)
	case !fi.IsDir():
		return nil, fmt.Errorf("journal: state directory %s is not a directory", dir)
	case fi.Mode().Perm()&0o022 != 0:
		return nil, fmt.Errorf("journal: state directory %s is writable by others (mode %v): refused; chmod go-w it", dir, fi.Mode().Perm())
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return nil, fmt.Errorf("journal: state directory %s belongs to uid %d, not to this user (uid %d): refused", dir, st.Uid, os.Geteuid())
	}
	return fi, nil
}

// CreateIn creates a new journal in dir, named
// journal-<UTC time>-<random>.jsonl, as [Create] does (mode 0600, never
// over an existing file or link), and returns it with its path. dir is
// checked as [DefaultDir] checks it, and the file is created in the
// directory that was checked even if dir is renamed meanwhile.
func CreateIn(dir, run string) (*Writer, string, error) {
	fi, err := checkDir(dir)
	if err != nil {
		return nil, "", err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, "", fmt.Errorf("journal: %w", err)
	}
	defer root.Close()
	rfi, err := root.Stat(".")
	if err != nil {
		return nil, "", fmt.Errorf("journal: %w", err)
	}
	if !os.SameFile(fi, rfi) {
		return nil, "", fmt.Errorf("journal: state directory %s changed while it was opened: refused", dir)
	}
	for range 10 {
		var rnd [4]byte
		if _, err := rand.Read(rnd[:]); err != nil {
			return nil, "", fmt.Errorf("journal: %w", err)
		}
		name := fmt.Sprintf("journal-%s-%s.jsonl", time.Now().UTC().Format("20060102T150405.000Z"), hex.EncodeToString(rnd[:]))
		f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return nil, "", fmt.Errorf("journal: %w", err)
		}
		w := NewWriter(f, run)
		w.f = f
		return w, filepath.Join(dir, name), nil
	}
	return nil, "", fmt.Errorf("journal: no free journal name in %s", dir)
}
