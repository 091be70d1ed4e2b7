package proxy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"strconv"
	"syscall"

	"github.com/mailchaos/mailchaos/internal/safefile"
)

// Link is a link a server keeps: a proxy named Name that listens on Listen
// and forwards to Upstream. A disabled link keeps its name and addresses
// but accepts nothing.
type Link struct {
	Name     string `json:"name"`
	Listen   string `json:"listen"`
	Upstream string `json:"upstream"`
	Enabled  bool   `json:"enabled"`
}

// stateVersion is the version of the state file's format.
const stateVersion = 1

// MaxStateSize bounds the state file LoadState reads.
const MaxStateSize = 1 << 20

// stateFile is the state file's content.
type stateFile struct {
	Version int    `json:"version"`
	Links   []Link `json:"links"`
}

// StateError is a state file that cannot be read, written or understood.
// It names the file.
type StateError struct {
	Path string
	Err  error
	// Invalid says the file itself is to blame (a symlink, not a regular
	// file, too large, corrupt), not the system (permissions, a full disk).
	Invalid bool
}

func (e *StateError) Error() string { return fmt.Sprintf("state file %s: %v", e.Path, e.Err) }

// Unwrap returns the cause.
func (e *StateError) Unwrap() error { return e.Err }

// InvalidInput says whether the file is to blame (exit code 2): a state
// file that is a symlink, too large or corrupt is fixed by hand.
func (e *StateError) InvalidInput() bool { return e.Invalid }

// invalid is a StateError of a file that is to blame.
func invalid(path string, err error) *StateError {
	return &StateError{Path: path, Err: err, Invalid: true}
}

// errStateSymlink refuses a state path that is a symlink.
var errStateSymlink = errors.New("is a symlink; refusing to read or write state through it")

// LoadState reads the links of the state file at path. A missing file is
// no links and no error. A symlink, a file that is not a regular file, one
// larger than [MaxStateSize] or one that does not decode is a *StateError.
func LoadState(path string) ([]Link, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if errors.Is(err, syscall.ELOOP) {
		return nil, invalid(path, errStateSymlink)
	}
	if err != nil {
		return nil, &StateError{Path: path, Err: err}
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil {
		return nil, &StateError{Path: path, Err: err}
	} else if !st.Mode().IsRegular() {
		return nil, invalid(path, fmt.Errorf("is not a regular file (%s)", st.Mode().Type()))
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxStateSize+1))
	if err != nil {
		return nil, &StateError{Path: path, Err: err}
	}
	if len(data) > MaxStateSize {
		return nil, invalid(path, fmt.Errorf("larger than %d bytes", MaxStateSize))
	}
	var sf stateFile
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&sf); err != nil {
		return nil, invalid(path, fmt.Errorf("corrupt (%w); fix it, or remove it to forget the links created through the API", err))
	}
	if dec.More() {
		return nil, invalid(path, errors.New("corrupt: data after the state"))
	}
	if sf.Version != stateVersion {
		return nil, invalid(path, fmt.Errorf("version %d, this mailchaos reads version %d", sf.Version, stateVersion))
	}
	seen := map[string]bool{}
	for i, l := range sf.Links {
		if err := l.check(); err != nil {
			return nil, invalid(path, fmt.Errorf("links[%d]: %w", i, err))
		}
		if seen[l.Name] {
			return nil, invalid(path, fmt.Errorf("links[%d]: link %q is listed twice", i, l.Name))
		}
		seen[l.Name] = true
	}
	return sf.Links, nil
}

// check checks a link read from a state file.
func (l Link) check() error {
	if l.Name == "" {
		return errors.New("a link needs a name")
	}
	for _, a := range []struct{ field, addr string }{{"listen", l.Listen}, {"upstream", l.Upstream}} {
		_, port, err := net.SplitHostPort(a.addr)
		if err == nil {
			_, err = strconv.ParseUint(port, 10, 16)
		}
		if err != nil {
			return fmt.Errorf("link %q: %s %q is not a host:port address", l.Name, a.field, a.addr)
		}
	}
	return nil
}

// SaveState writes links to the state file at path, atomically: a new
// file (mode 0600, created exclusively, never through a symlink) in the
// same directory is written, synced and renamed over path, and the
// directory is synced. A path that is a symlink or not a regular file is
// refused.
func SaveState(path string, links []Link) error {
	if links == nil {
		links = []Link{}
	}
	data, err := json.MarshalIndent(stateFile{Version: stateVersion, Links: links}, "", "  ")
	if err != nil {
		return &StateError{Path: path, Err: err}
	}
	data = append(data, '\n')
	err = safefile.Write(path, data, 0o600, safefile.Replace)
	switch {
	case errors.Is(err, safefile.ErrSymlink):
		return invalid(path, errStateSymlink)
	case errors.Is(err, safefile.ErrNotRegular):
		return invalid(path, errors.New("is not a regular file"))
	case err != nil:
		return &StateError{Path: path, Err: err}
	}
	return nil
}
