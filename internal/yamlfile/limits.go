package yamlfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Limits on the files this package reads. They are checked on the bytes,
// before the YAML parser builds a syntax tree, so that a hostile or broken
// file costs little memory and time whatever it holds.
const (
	// DefaultMaxFileSize is the largest file [ReadFile] accepts unless
	// MaxFileSizeEnv says otherwise: 1 MiB.
	DefaultMaxFileSize = 1 << 20
	// MaxFileSizeEnv names the environment variable that sets the largest
	// file [ReadFile] accepts, as a size such as 2MiB, 512KiB or 3000000.
	MaxFileSizeEnv = "MAILCHAOS_MAX_FILE_SIZE"
	// MaxNesting is how many mappings and lists, block or flow, may be
	// nested inside each other.
	MaxNesting = 64
	// MaxMappingKeys is the most keys one block mapping may have: the YAML
	// parser's cost grows with the square of that number.
	MaxMappingKeys = 256
	// MaxValues is the most values (scalars, mappings and lists) a file
	// may write: the YAML parser needs about a kilobyte for each.
	MaxValues = 30_000
)

// ErrLimit is the cause of every error that refuses a file for passing one
// of the limits on size, nesting or keys (check with [errors.Is]).
var ErrLimit = errors.New("yamlfile: file passes a limit")

// ReadFile reads a file of at most the size set by the environment
// variable MaxFileSizeEnv (DefaultMaxFileSize when unset), returning an
// *Error naming it on failure. It reads no more than one byte past the
// limit, so a device or a named pipe that never ends is refused too.
func ReadFile(path string) ([]byte, error) {
	limit := int64(DefaultMaxFileSize)
	if s := os.Getenv(MaxFileSizeEnv); s != "" {
		n, err := ParseSize(s)
		if err != nil {
			return nil, &Error{File: path, Msg: fmt.Sprintf("cannot read: $%s: %v", MaxFileSizeEnv, err), cause: err}
		}
		limit = n
	}
	return ReadFileLimit(path, limit)
}

// ReadFileLimit is [ReadFile] with the size limit given: a file longer
// than limit bytes is refused with an *Error positioned where the limit is
// passed, after reading at most limit+1 bytes. It blocks as long as
// reading the file does (a named pipe until its writer closes it or
// passes the limit).
func ReadFileLimit(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, readError(path, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, readError(path, err)
	}
	if int64(len(data)) > limit {
		e := &Error{File: path, cause: ErrLimit, Msg: fmt.Sprintf(
			"the file is longer than %s, the most a file may have; reading stopped here (set $%s, such as %s, to allow more)",
			FormatSize(limit), MaxFileSizeEnv, strings.ReplaceAll(FormatSize(max(2*limit, 2<<20)), " ", ""))}
		e.Line, e.Col = offsetPos(data, int(limit))
		return nil, e
	}
	return data, nil
}

// readError is an *Error for a file that cannot be read.
func readError(path string, err error) error {
	msg := err.Error()
	if u := errors.Unwrap(err); u != nil {
		msg = u.Error()
	}
	return &Error{File: path, Msg: "cannot read: " + msg, cause: err}
}

// sizeUnits are the units ParseSize knows, longest first within a prefix.
var sizeUnits = []struct { //nolint:gochecknoglobals // a constant table
	suffix string
	factor int64
}{
	{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30},
	{"kb", 1000}, {"mb", 1000 * 1000}, {"gb", 1000 * 1000 * 1000},
	{"k", 1 << 10}, {"m", 1 << 20}, {"g", 1 << 30},
	{"b", 1},
}

// ParseSize reads a size in bytes such as 1048576, 512KiB, 2MiB, 1GiB, or
// 5MB (decimal units); K, M and G alone are binary units. Units are not
// case-sensitive. The size must be positive.
func ParseSize(s string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	factor := int64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(t, u.suffix) {
			t, factor = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.factor
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/factor {
		return 0, fmt.Errorf("%q is not a size such as 2MiB, 512KiB or 1048576", s)
	}
	return n * factor, nil
}

// FormatSize writes n bytes the way ParseSize reads it, in the largest
// binary unit that divides it.
func FormatSize(n int64) string {
	for _, u := range []struct {
		name   string
		factor int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.factor && n%u.factor == 0 {
			return strconv.FormatInt(n/u.factor, 10) + " " + u.name
		}
	}
	return strconv.FormatInt(n, 10) + " bytes"
}

// offsetPos is the line and column (in characters) of the byte at offset
// in data, which may hold invalid UTF-8 (each bad byte is a column).
func offsetPos(data []byte, offset int) (line, col int) {
	before := data[:offset]
	line = 1 + bytes.Count(before, []byte{'\n'})
	if nl := bytes.LastIndexByte(before, '\n'); nl >= 0 {
		before = before[nl+1:]
	}
	return line, 1 + utf8.RuneCount(before)
}

// checkText refuses data holding a NUL byte or invalid UTF-8, at the
// first bad byte.
func checkText(name string, data []byte) *Error {
	if utf8.Valid(data) && bytes.IndexByte(data, 0) < 0 {
		return nil
	}
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		var msg string
		switch {
		case r == 0:
			msg = "a NUL byte (0x00): the file is not text"
		case r == utf8.RuneError && size == 1:
			msg = fmt.Sprintf("invalid UTF-8 (byte 0x%02x): save the file as UTF-8", data[i])
		default:
			i += size
			continue
		}
		e := &Error{File: name, Msg: msg}
		e.Line, e.Col = offsetPos(data, i)
		return e
	}
	return nil
}

// level is one block collection open at some point of a pre-scan.
type level struct {
	col  int  // 0-based column of its first entry
	seq  bool // a sequence; else a mapping
	keys int  // entries of a mapping so far
}

// prescan walks a document's bytes to measure how deeply its collections
// nest and how many keys its block mappings have, without building
// anything. It knows enough YAML to skip quoted scalars, block scalars and
// comments; what it does not understand it takes as plain text, which can
// only make it count less than the parser would (the decoder's own limit
// on nesting still applies then).
type prescan struct {
	name  string
	data  []byte
	i     int // offset of the next byte
	line  int // 1-based line of data[i]
	col   int // 1-based column of data[i], in characters
	prev  byte
	stack []level // open block collections, outermost first
	flow  int     // open flow collections ([ or {) around data[i]
	nodes int     // values seen so far
	first bool    // no block collection was placed on this line yet
	// scalarParent >= -1 while in the content of a block scalar (| or >):
	// the column its lines must be indented beyond.
	scalarParent int
}

// checkStructure refuses data whose collections nest more than MaxNesting
// deep or whose block mappings have more than MaxMappingKeys keys, at the
// first place where that happens.
func checkStructure(name string, data []byte) *Error {
	s := &prescan{name: name, data: data, line: 1, col: 1, prev: '\n', scalarParent: -2}
	for s.i < len(s.data) {
		if e := s.blockLine(); e != nil {
			return e
		}
	}
	return nil
}

func (s *prescan) peek(k int) byte {
	if s.i+k < len(s.data) {
		return s.data[s.i+k]
	}
	return 0
}

// blank reports whether the byte k ahead ends a token: a space, a tab, a
// line break or the end.
func (s *prescan) blank(k int) bool {
	switch s.peek(k) {
	case ' ', '\t', '\r', '\n', 0:
		return true
	}
	return false
}

// adv moves past one character.
func (s *prescan) adv() {
	if s.i >= len(s.data) {
		return
	}
	c := s.data[s.i]
	_, size := utf8.DecodeRune(s.data[s.i:])
	s.i += size
	s.prev = c
	if c == '\n' {
		s.line++
		s.col = 1
		return
	}
	s.col++
}

// skipLine moves to the start of the next line.
func (s *prescan) skipLine() {
	if nl := bytes.IndexByte(s.data[s.i:], '\n'); nl >= 0 {
		s.i += nl + 1
		s.line++
		s.col = 1
		s.prev = '\n'
		return
	}
	s.i = len(s.data)
}

func (s *prescan) limitError(line, col int, format string, args ...any) *Error {
	return &Error{File: s.name, Line: line, Col: col, Msg: fmt.Sprintf(format, args...), cause: ErrLimit}
}

// count counts one value starting at line, col.
func (s *prescan) count(line, col int) *Error {
	s.nodes++
	if s.nodes > MaxValues {
		return s.limitError(line, col, "the file has more than %d values", MaxValues)
	}
	return nil
}

// blockLine scans one line in block context, from its start.
func (s *prescan) blockLine() *Error {
	for s.peek(0) == ' ' {
		s.adv()
	}
	indent := s.col - 1
	c := s.peek(0)
	empty := c == '\n' || c == '\r' || s.i >= len(s.data)
	if s.scalarParent >= -1 {
		if empty || indent > s.scalarParent {
			s.skipLine()
			return nil
		}
		s.scalarParent = -2
	}
	if empty || c == '#' {
		s.skipLine()
		return nil
	}
	if indent == 0 && s.i+3 <= len(s.data) && (bytes.HasPrefix(s.data[s.i:], []byte("---")) || bytes.HasPrefix(s.data[s.i:], []byte("..."))) && s.blank(3) {
		s.stack = s.stack[:0]
		if s.peek(0) == '.' {
			s.skipLine()
			return nil
		}
		s.adv()
		s.adv()
		s.adv()
		s.first = true
		return s.inline(-1)
	}
	if indent == 0 && s.peek(0) == '%' {
		s.skipLine()
		return nil
	}
	for len(s.stack) > 0 && s.stack[len(s.stack)-1].col > indent {
		s.stack = s.stack[:len(s.stack)-1]
	}
	s.first = true
	for (s.peek(0) == '-' || s.peek(0) == '?') && s.blank(1) {
		if e := s.place(s.col-1, s.peek(0) == '-'); e != nil {
			return e
		}
		s.adv()
		for s.peek(0) == ' ' || s.peek(0) == '\t' {
			s.adv()
		}
	}
	return s.inline(s.col - 1)
}

// place records a block collection whose entry starts at col: a new one,
// or one more entry of the collection open there.
func (s *prescan) place(col int, seq bool) *Error {
	top := func() *level {
		if len(s.stack) == 0 {
			return nil
		}
		return &s.stack[len(s.stack)-1]
	}
	if s.first {
		s.first = false
		for t := top(); t != nil && t.col > col; t = top() {
			s.stack = s.stack[:len(s.stack)-1]
		}
		if t := top(); t != nil && t.col == col && t.seq && !seq {
			s.stack = s.stack[:len(s.stack)-1] // a key after a list that was its sibling's value
		}
		if t := top(); t != nil && t.col == col && t.seq == seq {
			if !seq {
				t.keys++
				if t.keys > MaxMappingKeys {
					return s.limitError(s.line, col+1, "a mapping has more than %d keys", MaxMappingKeys)
				}
			}
			return nil
		}
		// else a list written at its key's column: one level deeper
	}
	s.stack = append(s.stack, level{col: col, seq: seq, keys: 1})
	if e := s.count(s.line, col+1); e != nil {
		return e
	}
	return s.checkDepth(s.line, col+1)
}

func (s *prescan) checkDepth(line, col int) *Error {
	if len(s.stack)+s.flow > MaxNesting {
		return s.limitError(line, col, "mappings and lists nest more than %d levels deep", MaxNesting)
	}
	return nil
}

// inline scans the rest of a line from a node that starts at nodeCol, on
// to the end of any flow collection or quoted scalar it opens.
func (s *prescan) inline(nodeCol int) *Error {
	atStart := true // at the start of a node: a quote opens a quoted scalar
	mapped := false // the line's mapping key was seen
	for s.i < len(s.data) {
		c, line, col := s.peek(0), s.line, s.col
		switch {
		case c == '\n':
			s.adv()
			if s.flow == 0 {
				return nil
			}
		case c == ' ' || c == '\t' || c == '\r':
			s.adv()
		case c == '#' && (s.prev == ' ' || s.prev == '\t' || s.prev == '\n'):
			for s.i < len(s.data) && s.peek(0) != '\n' {
				s.i++
			}
		case (c == '"' || c == '\'') && atStart:
			if e := s.count(line, col); e != nil {
				return e
			}
			s.quoted(c)
			atStart = false
		case (c == '[' || c == '{') && (atStart || s.flow > 0):
			s.flow++
			if e := s.count(line, col); e != nil {
				return e
			}
			if e := s.checkDepth(line, col); e != nil {
				return e
			}
			s.adv()
			atStart = true
		case (c == ']' || c == '}') && s.flow > 0:
			s.flow--
			s.adv()
			atStart = false
		case c == ',' && s.flow > 0:
			s.adv()
			atStart = true
		case c == ':' && (s.flow > 0 || s.blank(1)):
			if s.flow == 0 && !mapped && nodeCol >= 0 {
				mapped = true
				if e := s.place(nodeCol, false); e != nil {
					return e
				}
			}
			s.adv()
			atStart = true
		case (c == '-' || c == '?') && atStart && s.blank(1):
			s.adv()
		case (c == '|' || c == '>') && atStart && s.flow == 0:
			s.scalarParent = -1
			if len(s.stack) > 0 {
				s.scalarParent = s.stack[len(s.stack)-1].col
			}
			s.skipLine()
			return nil
		case (c == '&' || c == '!' || c == '*') && atStart:
			for s.i < len(s.data) && !s.blank(0) && (s.flow == 0 || !strings.ContainsRune(",[]{}", rune(s.peek(0)))) {
				s.adv()
			}
			atStart = c != '*'
			if c == '*' {
				if e := s.count(line, col); e != nil {
					return e
				}
			}
		default:
			if atStart {
				if e := s.count(line, col); e != nil {
					return e
				}
			}
			s.adv()
			atStart = false
		}
	}
	return nil
}

// quoted moves past a quoted scalar that starts with q, which may span
// lines; an unterminated one runs to the end (the parser reports it).
func (s *prescan) quoted(q byte) {
	s.adv()
	for s.i < len(s.data) {
		c := s.peek(0)
		switch {
		case c == q && q == '\'' && s.peek(1) == '\'':
			s.adv()
			s.adv()
		case c == q:
			s.adv()
			return
		case c == '\\' && q == '"':
			s.adv()
			s.adv()
		default:
			s.adv()
		}
	}
}
