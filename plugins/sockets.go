//go:build unix

package plugins

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// socketBase is the folder, under the temporary directory, that holds one
// folder per mailchaos process for its plugins' unix sockets. A process
// killed outright leaves its folder behind; the next host removes the
// folders of processes that are gone.
const socketBase = "mailchaos-plugins"

// socketDir makes a host's folder for plugin sockets (0700, named after
// this process's PID) under a base folder that is ours and not a link,
// after removing the folders of processes that no longer exist.
func socketDir() (string, error) {
	base := filepath.Join(os.TempDir(), socketBase)
	if err := os.Mkdir(base, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("plugin sockets: %w", err)
	}
	st, err := os.Lstat(base)
	if err != nil {
		return "", fmt.Errorf("plugin sockets: %w", err)
	}
	if !st.IsDir() || st.Mode()&fs.ModeSymlink != 0 || st.Mode().Perm()&0o077 != 0 || !ownedByMe(st) {
		return "", fmt.Errorf("plugin sockets: %s is not a folder of this user's that only it can open", base)
	}
	entries, _ := os.ReadDir(base)
	for _, e := range entries {
		owner, _, _ := strings.Cut(e.Name(), "-")
		pid, err := strconv.Atoi(owner)
		if err != nil || pid == os.Getpid() || alivePid(pid) {
			continue
		}
		_ = os.RemoveAll(filepath.Join(base, e.Name()))
	}
	dir, err := os.MkdirTemp(base, strconv.Itoa(os.Getpid())+"-")
	if err != nil {
		return "", fmt.Errorf("plugin sockets: %w", err)
	}
	return dir, nil
}

// alivePid reports whether a process with that PID exists.
func alivePid(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// ownedByMe reports whether st belongs to this process's user.
func ownedByMe(st fs.FileInfo) bool {
	sys, ok := st.Sys().(*syscall.Stat_t)
	return !ok || int(sys.Uid) == os.Geteuid()
}
