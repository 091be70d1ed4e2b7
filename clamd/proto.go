package clamd

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strconv"
)

// Wire-level constants of the clamd protocol.
const (
	// maxCommandLen bounds a command line, as clamd's 1024-byte buffer does.
	maxCommandLen = 1024

	replyPong         = "PONG"
	replyUnknown      = "UNKNOWN COMMAND"
	replyOK           = "stream: OK"
	replySizeLimit    = "INSTREAM size limit exceeded. ERROR"
	replyInvalidInSes = "Command invalid inside IDSESSION. ERROR"
	// replyOldStyleInSes is clamd's reply, backslashes included, to an
	// unprefixed command inside IDSESSION.
	replyOldStyleInSes = `Only nCMDS\n and zCMDS\0 are accepted inside IDSESSION. ERROR`

	cmdPing      = "PING"
	cmdVersion   = "VERSION"
	cmdInstream  = "INSTREAM"
	cmdIDSession = "IDSESSION"
	cmdEnd       = "END"
)

// request is one parsed command.
type request struct {
	// form is 'z' (NUL-terminated), 'n' (newline-terminated) or 0 for the
	// legacy unprefixed form, which is newline-terminated too.
	form byte
	// name is the command with its prefix and terminator removed.
	name string
}

// term returns the reply terminator for the request's form: a reply uses the
// same delimiter as the command it answers.
func (q request) term() byte {
	if q.form == 'z' {
		return 0
	}
	return '\n'
}

// readRequest reads one command from r. It returns io.EOF when r ends before
// the command starts, io.ErrUnexpectedEOF when it ends inside a prefixed
// command, and errCommandTooLong (with the request's form set, so the caller
// can reply) when the command exceeds maxCommandLen. A legacy command may
// end at EOF instead of a newline, as with clamd's "one packet, one command".
// Trailing CR/LF are removed from newline-terminated commands.
func readRequest(r *bufio.Reader) (request, error) {
	first, err := r.ReadByte()
	if err != nil {
		return request{}, err
	}
	var q request
	delim := byte('\n')
	switch first {
	case 'z':
		q.form, delim = 'z', 0
	case 'n':
		q.form = 'n'
	default:
		if err := r.UnreadByte(); err != nil {
			return q, err
		}
	}
	var stack [64]byte
	line := stack[:0]
	for {
		b, err := r.ReadByte()
		if err != nil {
			if errors.Is(err, io.EOF) {
				if q.form == 0 && len(line) > 0 {
					break
				}
				err = io.ErrUnexpectedEOF
			}
			return q, err
		}
		if b == delim {
			break
		}
		if len(line) >= maxCommandLen {
			return q, errCommandTooLong
		}
		line = append(line, b)
	}
	if q.form != 'z' {
		line = bytes.TrimRight(line, "\r\n")
	}
	q.name = string(line)
	return q, nil
}

// appendReply appends one reply to dst: "<id>: " when id > 0 (inside
// IDSESSION), then msg, then the terminator.
func appendReply(dst []byte, id int, msg string, term byte) []byte {
	if id > 0 {
		dst = strconv.AppendInt(dst, int64(id), 10)
		dst = append(dst, ": "...)
	}
	dst = append(dst, msg...)
	return append(dst, term)
}
