package probes

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailchaos/mailchaos/faults"
)

// KindCanary is the smtp-canary probe's name.
const KindCanary = "smtp-canary"

// HeaderCanaryID is the header every canary carries, with the value
// <RunID>-<Name>-<n>. It is the header the mailstack ledger records.
const HeaderCanaryID = "X-Mailchaos-Id"

// Canary is implemented by probes that send canary messages, so that the
// runner can account for them after the run.
type Canary interface {
	// Sent returns the X-Mailchaos-Id of every canary the SMTP server
	// accepted (250 after DATA), in the order they were sent, whether or
	// not they were seen in the mailbox. It is safe for concurrent use and
	// returns a copy.
	Sent() []string
}

// Canary probe tunables.
const (
	// imapRoundTimeout bounds one polling round (or a log-in) on the
	// shared IMAP connection; a round that takes longer drops the
	// connection and a new one is made.
	imapRoundTimeout = 10 * time.Second
	// maxRetryWait caps the wait between attempts to reconnect to IMAP.
	maxRetryWait = time.Second
	// canaryHelo is the name the probe greets the SMTP server with.
	canaryHelo = "mailchaos-canary.invalid"
)

// CanaryKind is the smtp-canary probe: it sends a small clean message over
// SMTP and reports the seconds from the start of the SMTP session until the
// message is visible over IMAP in the recipient's mailbox.
//
// Each canary carries X-Mailchaos-Id: <RunID>-<Name>-<n> and a Message-ID.
// An SMTP error, or a canary not visible by ctx's deadline, is a failed
// sample ("canary not delivered within 10s (<id>)", followed by the last
// IMAP error if the mailbox could not be searched). Every canary the SMTP
// server accepted is listed by [Canary.Sent], delivered or not.
//
// Visibility is watched by one goroutine over one logged-in IMAP connection
// per probe, however many samples are in flight: while any canary is
// awaited it polls every `poll`, and it reconnects, with back-off, after
// any error. A polling round is NOOP (a server such as Dovecot reports new
// mail to a selected mailbox only when the client gives it a chance to:
// NOOP, CHECK, IDLE or SELECT; UID FETCH or UID SEARCH alone can miss mail
// for seconds), UID FETCH of the new UIDs, then UID SEARCH HEADER
// X-Mailchaos-Id over just those. The value is when a search first saw
// the canary, so it is late by up to one poll interval plus a round trip.
// (IDLE is not used: Dovecot, for one, reports new mail to an idling
// client only after about half a second.)
//
// Once seen, canaries are deleted, so that they do not pile up in the
// mailbox: UID STORE +FLAGS.SILENT (\Deleted), then UID EXPUNGE of just
// those UIDs. A server without UIDPLUS has only EXPUNGE, which removes
// every message flagged \Deleted, whoever flagged it: there the canaries
// are only flagged, for the mailbox's next expunge to remove. The mailbox is
// selected read-write for that, read-only with `keep: true`, which leaves
// every canary in place. Deleting happens after the time seen is handed to
// the sample; a failed delete is reported with the IMAP errors of failed
// samples and never fails a sample itself.
//
// The IMAP log-in name and password default to those of the recipient
// when it is one of the target's users (see [faults.User]).
func CanaryKind() Kind {
	k := Kind{
		Name:    KindCanary,
		Summary: "end-to-end delivery time of a canary message: SMTP in, visible over IMAP",
		Unit:    "s",
		Params: []faults.Param{
			{Name: "smtp", Type: faults.TypeAddress, Default: "smtp",
				Doc: "the SMTP server the canary is sent to: a name in the target's endpoints or a host:port address"},
			{Name: "imap", Type: faults.TypeAddress, Default: "imap",
				Doc: "the IMAP server the canary is looked for on: a name in the target's endpoints or a host:port address"},
			{Name: "from", Type: faults.TypeString,
				Doc: "envelope and header sender (default: the target's first user, else alice@example.test)"},
			{Name: "to", Type: faults.TypeString, Doc: "the recipient (default: the sender)"},
			{Name: "user", Type: faults.TypeString,
				Doc: "IMAP log-in name of the recipient (default: the recipient's log-in name when it is one of the target's users, else to)"},
			{Name: "password", Type: faults.TypeString,
				Doc: "IMAP password of the recipient (default: that of the target's user who logs in, else password)"},
			{Name: "mailbox", Type: faults.TypeString, Default: "INBOX", Doc: "the mailbox the canary is expected in"},
			{Name: "poll", Type: faults.TypeDuration, Default: "20ms", Min: "1ms", Max: "10s", Unit: "duration",
				Doc: "how often the mailbox is searched while canaries are awaited"},
			{Name: "size", Type: faults.TypeSize, Default: "256", Min: "0", Max: "1MiB", Unit: "bytes",
				Doc: "size of the canary's body"},
			{Name: "keep", Type: faults.TypeBool, Default: "false",
				Doc: "keep the canaries in the mailbox (selected read-only) instead of deleting each once seen"},
		},
	}
	k.New = func(cfg Config) (Probe, error) { return newCanary(k, cfg) }
	return k
}

func newCanary(k Kind, cfg Config) (*canaryProbe, error) {
	v, err := checkParams(k, cfg)
	if err != nil {
		return nil, err
	}
	smtpAddr, err := resolveEndpoint(k.Name, "smtp", v.String("smtp"), cfg.Target)
	if err != nil {
		return nil, err
	}
	imapAddr, err := resolveEndpoint(k.Name, "imap", v.String("imap"), cfg.Target)
	if err != nil {
		return nil, err
	}
	from := v.String("from")
	if from == "" {
		from = defaultUser(cfg.Target).Address
	}
	to := v.String("to")
	if to == "" {
		to = from
	}
	rcpt, ok := cfg.Target.User(to)
	if !ok || !strings.EqualFold(rcpt.Address, to) {
		rcpt = faults.User{Address: to}
	}
	user, password := account(cfg.Target, v.String("user"), rcpt, v.String("password"), v.Has("password"))
	m, err := newMailer(k.Name, cfg, from, to)
	if err != nil {
		return nil, err
	}
	return &canaryProbe{
		mailer: m, smtpAddr: smtpAddr, imapAddr: imapAddr,
		user: user, password: password, mailbox: v.String("mailbox"), keep: v.Bool("keep"),
		poll: v.Duration("poll"), body: canaryBody(int(v.Size("size"))),
		pending: map[string]chan time.Time{}, wake: make(chan struct{}, 1), closed: make(chan struct{}),
	}, nil
}

// canaryBody returns size bytes of plain text in CRLF lines.
func canaryBody(size int) []byte {
	const intro = "This is a mailchaos canary: it measures delivery time and may be deleted.\r\n"
	const line = "canary canary canary canary canary canary canary canary canary canary\r\n"
	return messageBody(intro, line, size)
}

// canaryProbe sends canaries and watches for them. Measure is safe for
// concurrent use; the watching goroutine (poller) is started by the first
// Measure and stopped by Close.
type canaryProbe struct {
	mailer
	smtpAddr, imapAddr string
	user, password     string
	mailbox            string
	keep               bool // leave seen canaries in the mailbox
	poll               time.Duration
	body               []byte

	seq atomic.Uint64

	mu        sync.Mutex
	pending   map[string]chan time.Time // awaited canary IDs
	sent      []string
	imapErr   error // the last polling round's error (or its delete's), nil after a good one
	isClosed  bool
	cancel    context.CancelFunc // stops the poller; nil until it runs
	done      chan struct{}      // closed when the poller has stopped
	wake      chan struct{}      // tells an idle poller that a canary is awaited
	closed    chan struct{}      // closed by Close
	closeOnce sync.Once
}

var (
	_ Probe  = (*canaryProbe)(nil)
	_ Canary = (*canaryProbe)(nil)
)

// Measure sends one canary and waits until it is visible over IMAP or ctx
// ends, whichever comes first.
func (p *canaryProbe) Measure(ctx context.Context) Sample {
	start := time.Now()
	id := p.prefix + strconv.FormatUint(p.seq.Add(1), 10)
	arrived, err := p.await(id)
	if err != nil {
		return failed(start, err)
	}
	defer p.forget(id)
	if err := p.send(ctx, id, start); err != nil {
		return failed(start, err)
	}
	p.mu.Lock()
	p.sent = append(p.sent, id)
	p.mu.Unlock()
	select {
	case at := <-arrived:
		return Sample{At: start, Value: at.Sub(start).Seconds()}
	case <-p.closed:
		return failed(start, fmt.Errorf("canary %s: the probe was closed", id))
	case <-ctx.Done():
	}
	var msg string
	if dl, ok := ctx.Deadline(); ok && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		msg = fmt.Sprintf("canary not delivered within %s (%s)", roundDuration(dl.Sub(start)), id)
	} else {
		msg = fmt.Sprintf("canary not delivered after %s (%s): %v", roundDuration(time.Since(start)), id, ctx.Err())
	}
	p.mu.Lock()
	if p.imapErr != nil {
		msg += "; IMAP: " + p.imapErr.Error()
	}
	p.mu.Unlock()
	return Sample{At: start, Failed: true, Err: msg}
}

// await registers id as awaited and starts the poller if it is not
// running. The returned channel receives the time the canary was seen.
func (p *canaryProbe) await(id string) (<-chan time.Time, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.isClosed {
		return nil, fmt.Errorf("canary %s: the probe is closed", id)
	}
	ch := make(chan time.Time, 1)
	p.pending[id] = ch
	if p.cancel == nil {
		ctx, cancel := context.WithCancel(context.Background())
		p.cancel, p.done = cancel, make(chan struct{})
		go p.run(ctx, p.done)
	}
	select {
	case p.wake <- struct{}{}:
	default:
	}
	return ch, nil
}

// forget stops awaiting id.
func (p *canaryProbe) forget(id string) {
	p.mu.Lock()
	delete(p.pending, id)
	p.mu.Unlock()
}

// send submits the canary over a plain SMTP session bounded by ctx.
func (p *canaryProbe) send(ctx context.Context, id string, at time.Time) error {
	_, err := submit(ctx, p.smtpAddr, canaryHelo, p.from, p.to, p.message("canary", id, at, p.body))
	return err
}

// messageIDPart makes id usable as the left part of a Message-ID.
func messageIDPart(id string) string {
	return strings.Map(func(r rune) rune {
		if r < 128 && (r == '.' || r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return r
		}
		return '-'
	}, id)
}

// Sent returns the IDs of the canaries the SMTP server accepted.
func (p *canaryProbe) Sent() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.sent...)
}

// Unit is seconds.
func (p *canaryProbe) Unit() string { return "s" }

// Close stops the poller, logs out of IMAP and fails every Measure still
// waiting. It is safe to call more than once.
func (p *canaryProbe) Close() error {
	p.closeOnce.Do(func() { close(p.closed) })
	p.mu.Lock()
	p.isClosed = true
	cancel, done := p.cancel, p.done
	p.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
	return nil
}

// watcher is the poller's IMAP connection and position. Only the poller
// goroutine touches it.
type watcher struct {
	c           *imapclient.Client
	uidPlus     bool // the server has UID EXPUNGE
	uidValidity uint32
	next        imap.UID // the lowest UID not yet looked at
	selected    imap.UID // the highest UID at SELECT, until the first round uses it
}

// cleanupError is a failed delete of seen canaries. It is reported like a
// round's error but is not one: the canaries were seen, and unless broken
// (the connection failed, as opposed to the server refusing) the
// connection is kept.
type cleanupError struct {
	err    error
	broken bool
}

func (e *cleanupError) Error() string { return e.err.Error() }
func (e *cleanupError) Unwrap() error { return e.err }

// run is the poller: while canaries are awaited, it polls the mailbox.
func (p *canaryProbe) run(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	w := &watcher{next: 1}
	defer p.disconnect(w, true)
	retryWait := p.poll
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		p.mu.Lock()
		idle := len(p.pending) == 0
		p.mu.Unlock()
		if idle {
			select {
			case <-ctx.Done():
				return
			case <-p.wake:
			}
			continue
		}
		wait := p.poll
		err := p.round(ctx, w)
		if ctx.Err() != nil {
			return
		}
		var cleanup *cleanupError
		if err != nil && (!errors.As(err, &cleanup) || cleanup.broken) {
			p.disconnect(w, false)
			wait, retryWait = retryWait, min(2*retryWait, max(maxRetryWait, p.poll))
		} else {
			retryWait = p.poll
		}
		p.mu.Lock()
		p.imapErr = err
		p.mu.Unlock()
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
	}
}

// disconnect drops the connection, logging out first when asked.
func (p *canaryProbe) disconnect(w *watcher, logout bool) {
	if w.c == nil {
		return
	}
	if logout {
		c := w.c
		t := time.AfterFunc(time.Second, func() { _ = c.Close() })
		_ = c.Logout().Wait()
		t.Stop()
	}
	_ = w.c.Close()
	w.c = nil
}

// round looks once for newly arrived canaries, connecting first if need
// be, and deletes those it saw unless they are kept. A failed delete is a
// *cleanupError.
func (p *canaryProbe) round(ctx context.Context, w *watcher) error {
	ctx, cancel := context.WithTimeout(ctx, imapRoundTimeout)
	defer cancel()
	fresh := w.c == nil
	if fresh {
		if err := p.connect(ctx, w); err != nil {
			return err
		}
	}
	c := w.c
	stop := context.AfterFunc(ctx, func() { _ = c.Close() })
	defer stop()

	if !fresh {
		// Give the server its chance to report new mail (EXISTS): some
		// report it to a selected mailbox on nothing else.
		if err := c.Noop().Wait(); err != nil {
			return ctxErr(ctx, "NOOP", err)
		}
	}
	// Which messages are new? Right after SELECT, those below its UIDNEXT;
	// otherwise ask (n:* also returns the last message when no UID is n or
	// above).
	hi := w.selected
	w.selected = 0
	if hi == 0 {
		msgs, err := c.Fetch(imap.UIDSet{{Start: w.next, Stop: 0}}, &imap.FetchOptions{UID: true}).Collect()
		if err != nil {
			return ctxErr(ctx, "UID FETCH", err)
		}
		for _, m := range msgs {
			hi = max(hi, m.UID)
		}
	}
	if hi < w.next {
		return nil
	}
	data, err := c.UIDSearch(&imap.SearchCriteria{
		UID:    []imap.UIDSet{{{Start: w.next, Stop: hi}}},
		Header: []imap.SearchCriteriaHeaderField{{Key: HeaderCanaryID, Value: p.prefix}},
	}, nil).Wait()
	if err != nil {
		return ctxErr(ctx, "UID SEARCH", err)
	}
	seen := time.Now()
	var ours []imap.UID
	if uids := data.AllUIDs(); len(uids) > 0 {
		section := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, HeaderFields: []string{HeaderCanaryID}, Peek: true}
		found, err := c.Fetch(imap.UIDSetNum(uids...), &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{section}}).Collect()
		if err != nil {
			return ctxErr(ctx, "UID FETCH header", err)
		}
		for _, m := range found {
			id := canaryID(m.FindBodySection(section))
			p.arrived(id, seen)
			if p.isOurs(id) {
				ours = append(ours, m.UID)
			}
		}
	}
	w.next = hi + 1
	if p.keep || len(ours) == 0 {
		return nil
	}
	// The samples have their time: deleting cannot delay them.
	if err := p.remove(ctx, w, ours); err != nil {
		var refused *imap.Error
		return &cleanupError{err: err, broken: !errors.As(err, &refused)}
	}
	return nil
}

// isOurs reports whether id is the X-Mailchaos-Id of one of this probe's
// canaries (the search matches any header containing the prefix).
func (p *canaryProbe) isOurs(id string) bool {
	n, ok := strings.CutPrefix(id, p.prefix)
	if !ok || n == "" {
		return false
	}
	_, err := strconv.ParseUint(n, 10, 64)
	return err == nil
}

// remove deletes the messages uids, this probe's canaries, from the
// selected mailbox: UID STORE +FLAGS.SILENT (\Deleted), then UID EXPUNGE
// of just those. Without UIDPLUS they are only flagged: plain EXPUNGE
// would remove every message flagged \Deleted. The round's ctx bounds it
// (it closes the connection when it ends).
func (p *canaryProbe) remove(ctx context.Context, w *watcher, uids []imap.UID) error {
	c, set := w.c, imap.UIDSetNum(uids...)
	fail := func(what string, err error) error {
		return ctxErr(ctx, fmt.Sprintf("delete seen canaries (UID %s): %s", set, what), err)
	}
	store := &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}
	if err := c.Store(set, store, nil).Close(); err != nil {
		return fail("UID STORE", err)
	}
	if !w.uidPlus {
		// Plain EXPUNGE would also remove whatever else is flagged
		// \Deleted, by the mailbox's owner or another client, even one
		// flagged a moment after we looked: the canaries stay flagged for
		// the mailbox's next expunge.
		return nil
	}
	if err := c.UIDExpunge(set).Close(); err != nil {
		return fail("UID EXPUNGE", err)
	}
	return nil
}

// connect logs in and selects the mailbox: read-write when seen canaries
// are deleted, read-only when they are kept. A mailbox with a new
// UIDVALIDITY (and so the first one) is searched from its first message,
// with the server filtering by header; after a reconnection to the same
// mailbox the search goes on from where it stopped.
func (p *canaryProbe) connect(ctx context.Context, w *watcher) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", p.imapAddr)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", p.imapAddr, err)
	}
	c := imapclient.New(conn, nil)
	stop := context.AfterFunc(ctx, func() { _ = c.Close() })
	defer stop()
	fail := func(what string, err error) error {
		_ = c.Close()
		return ctxErr(ctx, fmt.Sprintf("%s %s", what, p.imapAddr), err)
	}
	if err := c.WaitGreeting(); err != nil {
		return fail("greeting of", err)
	}
	if err := c.Login(p.user, p.password).Wait(); err != nil {
		return fail("log in as "+p.user+" to", err)
	}
	sel, err := c.Select(p.mailbox, &imap.SelectOptions{ReadOnly: p.keep}).Wait()
	if err != nil {
		return fail("select "+p.mailbox+" on", err)
	}
	if !p.keep {
		w.uidPlus = c.Caps().Has(imap.CapUIDPlus)
	}
	if sel.UIDValidity != w.uidValidity {
		w.uidValidity, w.next = sel.UIDValidity, 1
	}
	if sel.UIDNext > 1 {
		w.selected = sel.UIDNext - 1
	}
	w.c = c
	return nil
}

// arrived hands the time a canary was seen to its Measure, if it still
// waits.
func (p *canaryProbe) arrived(id string, at time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if ch, ok := p.pending[id]; ok {
		ch <- at
		delete(p.pending, id)
	}
}

// canaryID extracts the X-Mailchaos-Id value from a fetched header.
func canaryID(header []byte) string {
	if !bytes.HasSuffix(header, []byte("\r\n\r\n")) {
		header = append(header, "\r\n"...)
	}
	m, err := mail.ReadMessage(bytes.NewReader(header))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(m.Header.Get(HeaderCanaryID))
}
