package access

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2/imapserver"
)

// Limits of the IMAP front ends against abuse.
const (
	// SiteHeadroom is how many connections a site accepts over
	// max-connections. The balancer holds at most max-connections sessions,
	// so sessions placed by the balancer can never fill a site, and its
	// health checks (one at a time per site) always find room.
	SiteHeadroom = 16
	// SilentAfter is how long a session must have been silent (its client
	// sent nothing since it connected) before the balancer may end it to
	// make room for a new connection at its cap.
	SilentAfter = time.Second
	// MaxLiteral is the largest literal a site takes in any command but
	// APPEND: go-imap's server holds such literals in memory and takes
	// no more than 4 KiB.
	MaxLiteral = 4096
	// MaxCommandLine bounds one command's text outside literals; go-imap's
	// server stops at 50 KiB.
	MaxCommandLine = 48 << 10
	// MaxSearchDepth bounds the nesting of parentheses in a SEARCH, and
	// MaxSearchOps its number of OR and NOT keys.
	MaxSearchDepth = 32
	MaxSearchOps   = 256
	// DefaultMaxAppend is the APPEND limit when [Options.MaxAppendBytes]
	// is zero.
	DefaultMaxAppend = 10 << 20
)

// byeTooMany answers a connection over its listener's cap.
const byeTooMany = "* BYE too many connections\r\n"

// refuseWrite bounds the write of a refusal to a connection about to be
// closed; it goes into an empty socket buffer and does not wait.
const refuseWrite = 100 * time.Millisecond

// refuseConn answers c with BYE and closes it at once.
func refuseConn(c net.Conn) {
	_ = c.SetWriteDeadline(time.Now().Add(refuseWrite))
	_, _ = io.WriteString(c, byeTooMany)
	_ = c.Close()
}

// SiteLimits bound what one site accepts. Zero fields mean no bound
// (MaxAppendBytes: [DefaultMaxAppend]).
type SiteLimits struct {
	// MaxConnections caps the connections the site holds; one over it is
	// answered "* BYE too many connections" and closed.
	MaxConnections int
	// MaxLoginFailures closes a connection with BYE at its n-th failed
	// LOGIN or AUTHENTICATE.
	MaxLoginFailures int
	// MaxAppendBytes bounds an APPEND's message literal.
	MaxAppendBytes int64
	// OnRefused, OnLockout and OnRejected, when set, are called for each
	// refused connection, each connection closed after failed log-ins and
	// each command answered BAD before parsing (with the reason).
	OnRefused  func()
	OnLockout  func()
	OnRejected func(reason string)
}

func (l SiteLimits) appendLimit() int64 {
	if l.MaxAppendBytes > 0 {
		return l.MaxAppendBytes
	}
	return DefaultMaxAppend
}

// errRejected ends a connection the guard closed after a BYE.
var errRejected = errors.New("access: connection closed by the command guard")

// guard reads a site connection's commands ahead of go-imap's parser, one
// line (or one literal) per Read, and answers BAD itself to the commands
// go-imap would choke on: literals over the limit (go-imap waits for
// their bytes, or answers nothing), sequence numbers beyond 32 bits and
// SEARCH criteria nested too deeply (go-imap answers NO [SERVERBUG]), and
// command lines that are too long. A rejected command never reaches the
// parser: when it was wholly in the line at hand the connection goes on;
// otherwise (part of it was already handed on, or a non-synchronizing
// literal's bytes are on their way) the BAD is followed by BYE and the
// connection is closed. Only the serving goroutine calls Read; replies
// go through write, which Write shares.
type guard struct {
	conn   net.Conn
	br     *bufio.Reader
	lim    SiteLimits
	wmu    *sync.Mutex
	onBad  func(reason string)
	out    []byte // the rest of the line being handed on
	lit    int64  // literal bytes still to hand on
	cont   bool   // the next line continues the current command
	tag    string
	name   string
	size   int // bytes of the current command outside literals
	depth  int // current parenthesis depth of a SEARCH
	ops    int // OR and NOT keys of a SEARCH
	closed bool
}

func newGuard(c net.Conn, lim SiteLimits, wmu *sync.Mutex) *guard {
	return &guard{conn: c, br: bufio.NewReaderSize(c, 4096), lim: lim, wmu: wmu}
}

// Read implements io.Reader for go-imap's parser.
func (g *guard) Read(p []byte) (int, error) {
	for {
		if g.closed {
			return 0, errRejected
		}
		if len(g.out) > 0 {
			n := copy(p, g.out)
			g.out = g.out[n:]
			return n, nil
		}
		if g.lit > 0 {
			if int64(len(p)) > g.lit {
				p = p[:g.lit]
			}
			n, err := g.br.Read(p)
			g.lit -= int64(n)
			return n, err
		}
		line, err := g.readLine()
		if len(line) > 0 {
			if g.check(line) {
				g.out = line
			}
			continue
		}
		if err != nil {
			return 0, err
		}
	}
}

// readLine reads one line, at most MaxCommandLine bytes of it; a longer
// one is rejected and ends the connection.
func (g *guard) readLine() ([]byte, error) {
	var line []byte
	before := g.size
	if !g.cont {
		before = 0
	}
	for {
		chunk, err := g.br.ReadSlice('\n')
		line = append(line, chunk...)
		if before+len(line) > MaxCommandLine {
			if !g.cont {
				g.startCommand(line)
			}
			g.reject(RejectTooLong, fmt.Sprintf("command longer than %d bytes", MaxCommandLine), true)
			return nil, errRejected
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		return line, err
	}
}

// startCommand takes the tag and name of the command that line starts.
func (g *guard) startCommand(line []byte) {
	f := strings.Fields(string(line))
	g.tag, g.name, g.size, g.depth, g.ops = "*", "", 0, 0, 0
	if len(f) > 0 {
		g.tag = f[0]
	}
	if len(f) > 1 {
		g.name = strings.ToUpper(f[1])
	}
	if g.name == "UID" && len(f) > 2 {
		g.name += " " + strings.ToUpper(f[2])
	}
}

// check inspects one line of a command; false when the line was rejected
// (and swallowed).
func (g *guard) check(line []byte) bool {
	first := !g.cont
	if first {
		g.startCommand(line)
	}
	g.size += len(line)
	size, nonSync, hasLit := literalAtEnd(line)
	mustClose := !first || (hasLit && nonSync)
	if reason, msg := g.checkArgs(line, first); reason != "" {
		g.reject(reason, msg, mustClose)
		return false
	}
	if hasLit {
		limit := int64(MaxLiteral)
		if g.name == "APPEND" {
			limit = g.lim.appendLimit()
		}
		if size > limit {
			g.reject(RejectLiteral, fmt.Sprintf("literal of %d bytes is over the limit of %d bytes for %s", size, limit, g.name), mustClose)
			return false
		}
		g.lit, g.cont = size, true
		return true
	}
	g.cont = false
	return true
}

// checkArgs looks for sequence numbers beyond 32 bits and, in SEARCH, for
// criteria nested too deeply.
func (g *guard) checkArgs(line []byte, first bool) (string, string) {
	cmd := strings.TrimPrefix(g.name, "UID ")
	switch cmd {
	case "FETCH", "STORE", "COPY", "MOVE", "EXPUNGE", "SEARCH":
	default:
		return "", ""
	}
	toks := tokens(line)
	if first {
		skip := 2
		if strings.HasPrefix(g.name, "UID ") {
			skip = 3
		}
		toks = toks[min(skip, len(toks)):]
	}
	for i, tk := range toks {
		switch {
		case tk == "(":
			g.depth++
			if cmd == "SEARCH" && g.depth > MaxSearchDepth {
				return RejectSearch, fmt.Sprintf("search criteria nested deeper than %d", MaxSearchDepth)
			}
			continue
		case tk == ")":
			g.depth--
			continue
		}
		up := strings.ToUpper(tk)
		if cmd == "SEARCH" && (up == "OR" || up == "NOT") {
			g.ops++
			if g.ops > MaxSearchOps {
				return RejectSearch, fmt.Sprintf("search criteria with more than %d OR and NOT keys", MaxSearchOps)
			}
			continue
		}
		if !isNumSet(tk) {
			continue
		}
		isSet := strings.ContainsAny(tk, ":,*")
		if cmd != "SEARCH" {
			// Only the first argument is a set (CHANGEDSINCE and
			// UNCHANGEDSINCE take 63-bit numbers).
			if !first || i != 0 {
				continue
			}
			isSet = true
		} else if !isSet && i > 0 {
			switch strings.ToUpper(toks[i-1]) {
			case "LARGER", "SMALLER", "MODSEQ", "ALL", "PRIV", "SHARED", "OLDER", "YOUNGER":
				continue
			}
		}
		if err := checkNumSet(tk); err != nil {
			return RejectRange, err.Error()
		}
	}
	return "", ""
}

// reject answers the current command BAD; with closeConn it then says BYE
// and closes the connection.
func (g *guard) reject(reason, msg string, closeConn bool) {
	if g.onBad != nil {
		g.onBad(reason)
	}
	resp := fmt.Sprintf("%s BAD [CLIENTBUG] %s\r\n", g.tag, msg)
	if closeConn {
		resp += "* BYE command rejected\r\n"
	}
	g.write(resp)
	g.cont, g.lit, g.size, g.depth, g.ops = false, 0, 0, 0, 0
	if closeConn {
		g.closed = true
		_ = g.conn.Close()
	}
}

// write sends a reply of the guard's own, between go-imap's writes.
func (g *guard) write(s string) {
	g.wmu.Lock()
	defer g.wmu.Unlock()
	_ = g.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, _ = io.WriteString(g.conn, s)
	_ = g.conn.SetWriteDeadline(time.Time{})
}

// literalAtEnd parses a literal marker ({n} or {n+}) ending line.
func literalAtEnd(line []byte) (size int64, nonSync, ok bool) {
	l := bytes.TrimRight(line, "\r\n")
	if !bytes.HasSuffix(l, []byte("}")) {
		return 0, false, false
	}
	open := bytes.LastIndexByte(l, '{')
	if open < 0 {
		return 0, false, false
	}
	num := l[open+1 : len(l)-1]
	if bytes.HasSuffix(num, []byte("+")) || bytes.HasSuffix(num, []byte("-")) {
		nonSync, num = true, num[:len(num)-1]
	}
	if len(num) == 0 {
		return 0, false, false
	}
	for _, c := range num {
		if c < '0' || c > '9' {
			return 0, false, false
		}
	}
	n, err := strconv.ParseInt(string(num), 10, 64)
	if err != nil {
		n = 1<<63 - 1 // beyond any limit
	}
	return n, nonSync, true
}

// tokens splits a command line into atoms and parentheses, leaving out
// quoted strings.
func tokens(line []byte) []string {
	var out []string
	var cur []byte
	flush := func() {
		if len(cur) > 0 {
			out = append(out, string(cur))
			cur = cur[:0]
		}
	}
	quoted, esc := false, false
	for _, c := range line {
		switch {
		case quoted:
			if esc {
				esc = false
			} else if c == '\\' {
				esc = true
			} else if c == '"' {
				quoted = false
			}
		case c == '"':
			flush()
			quoted = true
		case c == '(' || c == ')':
			flush()
			out = append(out, string(c))
		case c == ' ' || c == '\r' || c == '\n' || c == '\t':
			flush()
		default:
			cur = append(cur, c)
		}
	}
	flush()
	return out
}

func isNumSet(tk string) bool {
	digit := false
	for i := 0; i < len(tk); i++ {
		switch c := tk[i]; {
		case c >= '0' && c <= '9':
			digit = true
		case c == ':' || c == ',' || c == '*':
		default:
			return false
		}
	}
	return digit
}

// checkNumSet checks that every number of a sequence set is between 1 and
// 2^32-1.
func checkNumSet(tk string) error {
	for _, part := range strings.FieldsFunc(tk, func(r rune) bool { return r == ':' || r == ',' }) {
		if part == "*" {
			continue
		}
		n, err := strconv.ParseUint(part, 10, 32)
		if err != nil || n == 0 {
			return fmt.Errorf("sequence number %.20s is out of range (1 to 4294967295)", part)
		}
	}
	return nil
}

// loginGuard wraps a session to count its failed log-ins: at the
// limit-th, the connection gets BYE and is closed.
type loginGuard struct {
	imapserver.SessionIMAP4rev2
	conn      *imapserver.Conn
	limit     int
	failures  int
	onLockout func()
}

// Login implements imapserver.Session; AUTHENTICATE PLAIN comes here too.
func (s *loginGuard) Login(username, password string) error {
	err := s.SessionIMAP4rev2.Login(username, password)
	if err == nil || s.limit <= 0 {
		return err
	}
	s.failures++
	if s.failures >= s.limit {
		if s.onLockout != nil {
			s.onLockout()
		}
		_ = s.conn.Bye("too many failed log-ins")
	}
	return err
}

// appendLimited reports the APPEND limit to go-imap.
type appendLimited struct {
	*loginGuard
	limit int64
}

// AppendLimit implements imapserver.SessionAppendLimit.
func (s appendLimited) AppendLimit() uint32 { return uint32(min(s.limit, 1<<32-1)) }
