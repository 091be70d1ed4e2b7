package clamd

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailchaos/mailchaos/internal/testnet"
	"github.com/stretchr/testify/require"
)

func TestClientScan(t *testing.T) {
	rs := start(t, &Server{})
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	infected := Result{Infected: true, Signature: EICARSignature}

	for _, tt := range []struct {
		name    string
		chunk   int
		payload []byte
		want    Result
	}{
		{"raw EICAR", 0, []byte(EICAR), infected},
		{"base64 attachment", 0, withAttachment([]byte(EICAR)), infected},
		{"quoted-printable", 0, qpMessage(EICAR), infected},
		{"tiny chunks", 7, withAttachment([]byte(EICAR)), infected},
		{"test marker", 0, []byte("x " + TestMarker), Result{Infected: true, Signature: TestMarkerSignature}},
		{"clean", 0, plainMessage(4096), Result{}},
		{"clean, larger than a chunk", 1000, plainMessage(300 << 10), Result{}},
		{"empty", 0, nil, Result{}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res, err := (&Client{Addr: rs.addr, ChunkSize: tt.chunk}).Scan(ctx, tt.payload)
			require.NoError(t, err)
			require.Equal(t, tt.want, res)
		})
	}
}

func TestClientPingVersion(t *testing.T) {
	rs := start(t, &Server{Version: "ClamAV 1.0.0/1/Thu Jan  1 00:00:00 2025"})
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	c := &Client{Addr: rs.addr}
	require.NoError(t, c.Ping(ctx))
	v, err := c.Version(ctx)
	require.NoError(t, err)
	require.Equal(t, "ClamAV 1.0.0/1/Thu Jan  1 00:00:00 2025", v)
}

func TestClientWireFormat(t *testing.T) {
	var buf bytes.Buffer
	require.NoError(t, writeStream(&buf, cmdInstream, []byte("abcdefghij"), 4))
	want := "zINSTREAM\x00" +
		"\x00\x00\x00\x04abcd" + "\x00\x00\x00\x04efgh" + "\x00\x00\x00\x02ij" + "\x00\x00\x00\x00"
	require.Equal(t, want, buf.String())

	buf.Reset()
	require.NoError(t, writeStream(&buf, cmdInstream, nil, 4))
	require.Equal(t, "zINSTREAM\x00\x00\x00\x00\x00", buf.String())
}

func TestClientCustomDial(t *testing.T) {
	rs := start(t, &Server{})
	var calls atomic.Int32
	c := &Client{
		Addr: "clamd.invalid:3310",
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			calls.Add(1)
			require.Equal(t, "tcp", network)
			require.Equal(t, "clamd.invalid:3310", addr)
			return (&net.Dialer{}).DialContext(ctx, network, rs.addr)
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	require.NoError(t, c.Ping(ctx))
	_, err := c.Scan(ctx, []byte(EICAR))
	require.NoError(t, err)
	require.EqualValues(t, 2, calls.Load())
}

// fakeClamd accepts connections on a loopback listener and hands each to
// handle in a goroutine it waits for at cleanup.
func fakeClamd(t *testing.T, handle func(c net.Conn)) string {
	t.Helper()
	return testnet.Serve(t, func(_ context.Context, c net.Conn) { handle(c) }).Addr
}

// replyWith returns a fake clamd handler that reads the command and stream,
// then sends reply and closes.
func replyWith(reply string) func(net.Conn) {
	return func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(waitLong))
		r := bufio.NewReader(c)
		q, err := readRequest(r)
		if err != nil {
			return
		}
		if q.name == cmdInstream {
			var hdr [4]byte
			for {
				if _, err := io.ReadFull(r, hdr[:]); err != nil {
					return
				}
				n := binary.BigEndian.Uint32(hdr[:])
				if n == 0 {
					break
				}
				if _, err := io.CopyN(io.Discard, r, int64(n)); err != nil {
					return
				}
			}
		}
		_, _ = io.WriteString(c, reply)
	}
}

func TestClientReplies(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()

	for _, tt := range []struct {
		reply   string
		want    Result
		wantErr string
		replyEr bool
	}{
		{reply: "stream: OK\x00", want: Result{}},
		{reply: "stream: Eicar-Test-Signature FOUND\x00", want: Result{Infected: true, Signature: "Eicar-Test-Signature"}},
		{reply: "stream: OK\n", want: Result{}},           // newline instead of NUL, then EOF
		{reply: "stream: OK", want: Result{}},             // no terminator at all, then EOF
		{reply: "fd[10]: OK\x00trailing", want: Result{}}, // other labels; data after the reply is ignored
		{reply: "INSTREAM size limit exceeded. ERROR\x00", wantErr: "size limit", replyEr: true},
		{reply: "stream: Can't allocate memory ERROR\x00", wantErr: "allocate", replyEr: true},
		{reply: "UNKNOWN COMMAND\x00", wantErr: "UNKNOWN", replyEr: true},
		{reply: "stream: sideways\x00", wantErr: "unexpected reply"},
		{reply: "stream:  FOUND\x00", wantErr: "unexpected reply"},
		{reply: "\x00", wantErr: "unexpected reply"},
		{reply: "", wantErr: "read reply"},
		{reply: string(bytes.Repeat([]byte("x"), 2*maxReplyLen)), wantErr: "reply longer"},
	} {
		t.Run(tt.reply, func(t *testing.T) {
			addr := fakeClamd(t, replyWith(tt.reply))
			res, err := (&Client{Addr: addr}).Scan(ctx, []byte("payload"))
			if tt.wantErr == "" {
				require.NoError(t, err)
				require.Equal(t, tt.want, res)
				return
			}
			require.ErrorContains(t, err, tt.wantErr)
			require.ErrorContains(t, err, "clamd "+addr+": scan: ")
			var re *ReplyError
			require.Equal(t, tt.replyEr, errors.As(err, &re))
		})
	}

	t.Run("ping", func(t *testing.T) {
		require.NoError(t, (&Client{Addr: fakeClamd(t, replyWith("PONG\x00"))}).Ping(ctx))
		err := (&Client{Addr: fakeClamd(t, replyWith("PANG\x00"))}).Ping(ctx)
		require.ErrorContains(t, err, `ping: unexpected reply "PANG"`)
		var re *ReplyError
		err = (&Client{Addr: fakeClamd(t, replyWith("UNKNOWN COMMAND\x00"))}).Ping(ctx)
		require.ErrorAs(t, err, &re)
		require.False(t, re.SizeLimitExceeded())
	})

	t.Run("version", func(t *testing.T) {
		_, err := (&Client{Addr: fakeClamd(t, replyWith("\x00"))}).Version(ctx)
		require.ErrorContains(t, err, "version: empty reply")
		_, err = (&Client{Addr: fakeClamd(t, replyWith("UNKNOWN COMMAND\x00"))}).Version(ctx)
		var re *ReplyError
		require.ErrorAs(t, err, &re)
	})
}

func TestClientDialError(t *testing.T) {
	ln := listen(t)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close()) // nothing listens there any more

	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	_, err := (&Client{Addr: addr}).Scan(ctx, []byte("x"))
	require.ErrorContains(t, err, "clamd "+addr+": scan: dial:")
	require.ErrorContains(t, (&Client{Addr: addr}).Ping(ctx), "clamd "+addr+": ping: dial:")
	_, err = (&Client{Addr: addr}).Version(ctx)
	require.ErrorContains(t, err, "clamd "+addr+": version: dial:")
}

func TestClientCancelledContext(t *testing.T) {
	var calls atomic.Int32
	c := &Client{Addr: "127.0.0.1:1", Dial: func(context.Context, string, string) (net.Conn, error) {
		calls.Add(1)
		return nil, errors.New("must not dial")
	}}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := c.Scan(ctx, []byte("x"))
	require.ErrorIs(t, err, context.Canceled)
	require.Zero(t, calls.Load())
}

func TestClientCancelInterruptsSlowScan(t *testing.T) {
	s := &Server{Delay: time.Hour}
	rs := start(t, s)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := scanAsync(ctx, &Client{Addr: rs.addr}, []byte(EICAR))
	waitActive(t, s, 1)

	begin := time.Now()
	cancel()
	err := waitErr(t, errc)
	require.ErrorIs(t, err, context.Canceled)
	require.ErrorContains(t, err, "clamd "+rs.addr+": scan:")
	require.Less(t, time.Since(begin), waitLong/2)
}

func TestClientDeadlineInterruptsSlowScan(t *testing.T) {
	rs := start(t, &Server{Delay: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	begin := time.Now()
	_, err := (&Client{Addr: rs.addr}).Scan(ctx, []byte(EICAR))
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Less(t, time.Since(begin), waitLong/2)
}

func TestClientCancelInterruptsBlockedWrite(t *testing.T) {
	// A peer that accepts but never reads: a large upload fills the socket
	// buffers and blocks in write.
	accepted := make(chan struct{}, 1)
	release := make(chan struct{})
	addr := fakeClamd(t, func(c net.Conn) {
		accepted <- struct{}{}
		<-release
	})
	defer close(release)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := scanAsync(ctx, &Client{Addr: addr}, make([]byte, 64<<20))
	select {
	case <-accepted:
	case <-time.After(waitLong):
		t.Fatal("no connection")
	}
	cancel()
	require.ErrorIs(t, waitErr(t, errc), context.Canceled)
}

func TestParseScanReply(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want Result
		ok   bool
	}{
		{"stream: OK", Result{}, true},
		{"stream: Win.Test.EICAR_HDB-1 FOUND", Result{Infected: true, Signature: "Win.Test.EICAR_HDB-1"}, true},
		{"/tmp/x: OK", Result{}, true},
		{"stream: FOUND", Result{}, false},
		{"OK", Result{}, false},
		{"stream: OK ERROR", Result{}, false},
		{"", Result{}, false},
	} {
		got, err := parseScanReply(tt.in)
		if tt.ok {
			require.NoError(t, err, tt.in)
			require.Equal(t, tt.want, got, tt.in)
		} else {
			require.Error(t, err, tt.in)
		}
	}
	require.Equal(t, `clamd replied "INSTREAM size limit exceeded. ERROR"`,
		(&ReplyError{Reply: "INSTREAM size limit exceeded. ERROR"}).Error())
}
