package plugins

import (
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
)

// UnsafeError is a plugin executable, or a directory holding one, that
// someone other than root and the user running mailchaos can change:
// whoever can would choose what mailchaos runs, often as root. The plugin
// is refused.
type UnsafeError struct {
	// Path is the file or directory at fault.
	Path string
	Dir  bool
	Mode fs.FileMode
	// UID owns Path.
	UID int
	// Why says what is wrong: "writable by group", "owned by uid 65534", ...
	Why string
	// Fix is the command that makes it safe.
	Fix string
}

func (e *UnsafeError) Error() string {
	what := "file"
	if e.Dir {
		what = "directory"
	}
	return fmt.Sprintf("refused: %s %s is %s (mode %s, owner %s), so others could choose what mailchaos runs; fix: %s",
		what, e.Path, e.Why, e.Mode, userName(e.UID), e.Fix)
}

// InvalidInput marks an unsafe plugin as the user's setup to fix.
func (e *UnsafeError) InvalidInput() bool { return true }

// CheckFile checks that a plugin executable and the directory holding it
// (that of the file a symbolic link leads to as well) can be changed only
// by root or the user running mailchaos: not writable by group or others,
// owned by one of them. It returns an [*UnsafeError] otherwise.
func CheckFile(path string) error {
	paths := []string{path}
	if real, err := filepath.EvalSymlinks(path); err == nil && real != path {
		paths = append(paths, real)
	}
	for _, p := range paths {
		if err := checkPath(filepath.Dir(p), true); err != nil {
			return err
		}
	}
	return checkPath(path, false)
}

// checkPath checks one file or directory (following symbolic links).
func checkPath(path string, dir bool) error {
	info, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("check plugin %s: %w", path, err)
	}
	mode := info.Mode()
	e := &UnsafeError{Path: path, Dir: dir, Mode: mode, UID: -1}
	uid, known := fileOwner(info)
	if known {
		e.UID = uid
	}
	switch w := mode.Perm() & 0o022; {
	case w != 0:
		e.Why = map[fs.FileMode]string{0o020: "writable by its group", 0o002: "writable by others",
			0o022: "writable by its group and others"}[w]
		e.Fix = "chmod go-w " + path
	case known && uid != 0 && uid != os.Geteuid():
		e.Why = "owned by " + userName(uid) + ", neither root nor the user running mailchaos"
		e.Fix = "chown " + userName(os.Geteuid()) + " " + path
	default:
		return nil
	}
	return e
}

// userName names a user ID: "root", "nobody (uid 65534)".
func userName(uid int) string {
	if uid < 0 {
		return "unknown"
	}
	id := strconv.Itoa(uid)
	u, err := user.LookupId(id)
	if err != nil {
		return "uid " + id
	}
	if uid == 0 {
		return u.Username
	}
	return u.Username + " (uid " + id + ")"
}
