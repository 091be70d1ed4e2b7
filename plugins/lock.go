package plugins

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// LockFile is the default name of the file that pins plugins' checksums.
const LockFile = "plugins.lock"

// Lock pins plugins to the SHA-256 of their executables: with a lock, a
// plugin whose checksum differs, or which is not in it, is refused.
type Lock map[string]string // fault name -> hex SHA-256

// LockError is a malformed lock file, with the line at fault.
type LockError struct {
	File string
	Line int
	Msg  string
}

func (e *LockError) Error() string { return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg) }

// InvalidInput marks a malformed lock file as the user's input (exit 2).
func (e *LockError) InvalidInput() bool { return true }

// ReadLock reads a lock file. ok is false when there is none.
func ReadLock(path string) (lock Lock, ok bool, err error) {
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read %s: %w", path, err)
	}
	lock, err = parseLock(path, data)
	return lock, err == nil, err
}

// parseLock reads lines "NAME sha256:HEX"; # starts a comment.
func parseLock(path string, data []byte) (Lock, error) {
	lock := Lock{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if len(fields) != 2 {
			return nil, &LockError{path, n, `want "NAME sha256:HEX"`}
		}
		sum, ok := strings.CutPrefix(fields[1], "sha256:")
		if b, err := hex.DecodeString(sum); !ok || err != nil || len(b) != sha256.Size {
			return nil, &LockError{path, n, fmt.Sprintf("%s: want sha256: and 64 hexadecimal digits", fields[0])}
		}
		if _, dup := lock[fields[0]]; dup {
			return nil, &LockError{path, n, fmt.Sprintf("plugin %s is listed twice", fields[0])}
		}
		lock[fields[0]] = strings.ToLower(sum)
	}
	return lock, sc.Err()
}

// WriteLock writes lock to w, one plugin a line, sorted.
func WriteLock(w io.Writer, lock Lock) error {
	names := make([]string, 0, len(lock))
	for n := range lock {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString("# SHA-256 of each fault plugin; mailchaos refuses a plugin that differs or is missing.\n")
	b.WriteString("# Written by 'mailchaos plugins lock'.\n")
	for _, n := range names {
		fmt.Fprintf(&b, "%s sha256:%s\n", n, lock[n])
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// Checksum returns the hex SHA-256 of a file.
func Checksum(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("checksum %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
