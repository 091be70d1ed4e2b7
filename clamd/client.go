package clamd

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// Client limits.
const (
	// maxChunkSize caps ChunkSize; the wire format allows up to 4 GiB.
	maxChunkSize = 1 << 30
	// maxReplyLen bounds a reply; clamd's are short lines.
	maxReplyLen = 4 << 10
)

// Client talks to a clamd (the bundled [Server] or a real one) over TCP. Each
// call opens its own connection and closes it when done, so a Client holds no
// connections and is safe for concurrent use. Its fields must not change
// while calls are in progress.
type Client struct {
	// Addr is clamd's TCP address, "host:port".
	Addr string
	// Dial opens connections. Nil means (&net.Dialer{}).DialContext. It is
	// called with network "tcp"; a custom Dial may ignore that, e.g. to
	// reach a Unix socket or go through a fault-injecting proxy.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// ChunkSize is the INSTREAM chunk size. Zero or negative means
	// [DefaultChunkSize]; values over 1 GiB are capped.
	ChunkSize int
}

// Result is the verdict of a scan.
type Result struct {
	// Infected reports that clamd found a signature.
	Infected bool
	// Signature is the name clamd reported, empty when clean.
	Signature string
}

// ReplyError is returned (wrapped) when clamd answers with an error reply,
// such as "INSTREAM size limit exceeded. ERROR" or "UNKNOWN COMMAND". Callers
// use errors.As to tell it from a network failure.
type ReplyError struct {
	// Reply is clamd's reply without its terminator.
	Reply string
}

// Error implements error.
func (e *ReplyError) Error() string {
	return "clamd replied " + strconv.Quote(e.Reply)
}

// SizeLimitExceeded reports whether clamd refused the stream for exceeding
// its StreamMaxLength.
func (e *ReplyError) SizeLimitExceeded() bool {
	return strings.Contains(e.Reply, "size limit exceeded")
}

// Scan sends payload to clamd with zINSTREAM on a new connection and returns
// its verdict. It blocks until clamd replies or ctx ends; ctx's deadline
// bounds the whole exchange, and cancelling ctx closes the connection so that
// Scan returns promptly with an error satisfying errors.Is(err, ctx.Err()).
// An error reply from clamd is returned as a wrapped [*ReplyError].
func (c *Client) Scan(ctx context.Context, payload []byte) (Result, error) {
	reply, err := c.roundTrip(ctx, cmdInstream, payload, true)
	if err != nil {
		return Result{}, c.wrap("scan", err)
	}
	res, err := parseScanReply(reply)
	if err != nil {
		return Result{}, c.wrap("scan", err)
	}
	return res, nil
}

// Ping sends zPING and returns nil if clamd answers PONG. It blocks like Scan.
func (c *Client) Ping(ctx context.Context) error {
	reply, err := c.roundTrip(ctx, cmdPing, nil, false)
	if err == nil {
		err = checkReply(reply)
	}
	if err == nil && reply != replyPong {
		err = fmt.Errorf("unexpected reply %q", reply)
	}
	if err != nil {
		return c.wrap("ping", err)
	}
	return nil
}

// Version sends zVERSION and returns clamd's version string, such as
// "ClamAV 1.4.2/27500/Mon Jan  6 09:37:01 2025". It blocks like Scan.
func (c *Client) Version(ctx context.Context) (string, error) {
	reply, err := c.roundTrip(ctx, cmdVersion, nil, false)
	if err == nil {
		err = checkReply(reply)
	}
	if err == nil && reply == "" {
		err = errors.New("empty reply")
	}
	if err != nil {
		return "", c.wrap("version", err)
	}
	return reply, nil
}

// wrap adds the address and operation to err.
func (c *Client) wrap(op string, err error) error {
	return fmt.Errorf("clamd %s: %s: %w", c.Addr, op, err)
}

// chunkSize returns the effective ChunkSize.
func (c *Client) chunkSize() int {
	switch {
	case c.ChunkSize <= 0:
		return DefaultChunkSize
	case c.ChunkSize > maxChunkSize:
		return maxChunkSize
	}
	return c.ChunkSize
}

// roundTrip opens a connection, sends the z-form command cmd (followed by
// payload as INSTREAM chunks when stream is set) and returns the reply. The
// connection is bound to ctx: its deadline becomes the connection deadline
// and cancellation closes the connection.
func (c *Client) roundTrip(ctx context.Context, cmd string, payload []byte, stream bool) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	dial := c.Dial
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	nc, err := dial(ctx, "tcp", c.Addr)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return "", fmt.Errorf("dial: %w", ctxErr)
		}
		return "", fmt.Errorf("dial: %w", err)
	}
	defer func() { _ = nc.Close() }()
	deadline, hasDeadline := ctx.Deadline()
	if hasDeadline {
		if err := nc.SetDeadline(deadline); err != nil {
			return "", fmt.Errorf("set deadline: %w", err)
		}
	}
	closed := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(closed)
		_ = nc.Close()
	})
	defer func() {
		if !stop() {
			<-closed // the close runs (or ran); wait so no goroutine outlives us
		}
	}()

	reply, err := exchange(nc, cmd, payload, stream, c.chunkSize())
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return "", ctxErr
		}
		if hasDeadline && errors.Is(err, os.ErrDeadlineExceeded) && !time.Now().Before(deadline) {
			return "", fmt.Errorf("%w (%w)", context.DeadlineExceeded, err)
		}
		return "", err
	}
	return reply, nil
}

// exchange writes the command (and stream) to nc and reads the reply. If the
// write fails, the reply is still read: clamd answers a refused stream early
// and closes, which the client sees as a write error.
func exchange(nc net.Conn, cmd string, payload []byte, stream bool, chunk int) (string, error) {
	var werr error
	if stream {
		werr = writeStream(nc, cmd, payload, chunk)
	} else {
		_, werr = io.WriteString(nc, "z"+cmd+"\x00")
	}
	if werr != nil {
		werr = fmt.Errorf("send: %w", werr)
	}
	reply, rerr := readReply(nc)
	if rerr != nil {
		if werr != nil {
			return "", werr
		}
		return "", fmt.Errorf("read reply: %w", rerr)
	}
	return reply, nil
}

// writeStream sends "z<cmd>\0", payload as length-prefixed chunks and the
// zero-length terminator, gathered into as few writes as possible.
func writeStream(w io.Writer, cmd string, payload []byte, chunk int) error {
	nChunks := (len(payload) + chunk - 1) / chunk
	hdrs := make([]byte, 4*(nChunks+1)) // the last one stays zero: terminator
	bufs := make(net.Buffers, 0, 2*nChunks+2)
	bufs = append(bufs, []byte("z"+cmd+"\x00"))
	for i := range nChunks {
		data := payload[i*chunk : min((i+1)*chunk, len(payload))]
		hdr := hdrs[4*i : 4*i+4]
		binary.BigEndian.PutUint32(hdr, uint32(len(data)))
		bufs = append(bufs, hdr, data)
	}
	bufs = append(bufs, hdrs[4*nChunks:])
	_, err := bufs.WriteTo(w)
	return err
}

// readReply reads one NUL-terminated reply. A reply cut short by EOF is
// accepted if it is not empty, for clamd-alikes that end with a newline or
// nothing.
func readReply(r io.Reader) (string, error) {
	var buf [256]byte
	reply := make([]byte, 0, 64)
	for {
		n, err := r.Read(buf[:])
		for _, b := range buf[:n] {
			if b == 0 {
				return strings.TrimRight(string(reply), "\r\n"), nil
			}
			if len(reply) >= maxReplyLen {
				return "", fmt.Errorf("reply longer than %d bytes", maxReplyLen)
			}
			reply = append(reply, b)
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				if s := strings.TrimRight(string(reply), "\r\n"); s != "" {
					return s, nil
				}
				return "", io.ErrUnexpectedEOF
			}
			return "", err
		}
	}
}

// checkReply returns a *ReplyError if reply is an error reply.
func checkReply(reply string) error {
	if reply == replyUnknown || reply == "ERROR" || strings.HasSuffix(reply, " ERROR") {
		return &ReplyError{Reply: reply}
	}
	return nil
}

// parseScanReply interprets an INSTREAM reply: "stream: OK", "stream: <name>
// FOUND", or an error reply.
func parseScanReply(reply string) (Result, error) {
	if err := checkReply(reply); err != nil {
		return Result{}, err
	}
	body, ok := strings.CutPrefix(reply, "stream: ")
	if !ok {
		// Tolerate other path labels, e.g. "fd[10]: OK".
		i := strings.LastIndex(reply, ": ")
		if i < 0 {
			return Result{}, fmt.Errorf("unexpected reply %q", reply)
		}
		body = reply[i+2:]
	}
	if body == "OK" {
		return Result{}, nil
	}
	if name, ok := strings.CutSuffix(body, " FOUND"); ok && strings.TrimSpace(name) != "" {
		return Result{Infected: true, Signature: strings.TrimSpace(name)}, nil
	}
	return Result{}, fmt.Errorf("unexpected reply %q", reply)
}
