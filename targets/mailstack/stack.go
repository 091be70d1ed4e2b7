package mailstack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mailchaos/mailchaos/clamd"
	"github.com/mailchaos/mailchaos/internal/yamlfile"
	"github.com/mailchaos/mailchaos/targets/mailstack/access"
)

// Options are the parts of a stack's set-up that are code, not
// configuration.
type Options struct {
	// Logger receives the stack's log. Nil discards it.
	Logger *slog.Logger
	// Interpose, when set, is called once per internal link during Start:
	// for each MTA → engine link once the engines listen, then for each
	// balancer → site link once the sites listen, before the MTA and the
	// balancer start. It gets the link (its name and the address the near
	// end would dial) and returns the address the near end dials instead,
	// typically a proxy's listen address.
	Interpose func(ctx context.Context, l Link) (string, error)
	// APIToken, when not empty, is the bearer token every request to the
	// HTTP endpoint (metrics, ledger, admin) must carry.
	APIToken string
}

// smtpGrace is how long Shutdown lets SMTP sessions finish their current
// transaction before closing them.
const smtpGrace = 2 * time.Second

// Endpoint is a named address the stack serves.
type Endpoint struct {
	Name string
	Addr string
}

// Link is an internal TCP hop of the stack on which network faults can sit.
// Name is the engine's name (av-engine-1, ...) for an MTA → engine hop and
// imap-<site> (imap-site-a, ...) for a balancer → site hop.
type Link struct {
	Name string
	// Upstream is the real address of the far end.
	Upstream string
	// Dial is the address the near end (the MTA, the balancer) dials:
	// Upstream, or a proxy in front of it.
	Dial string
}

// Stack is a running reference mail stack. Create it with [New]; all methods
// are safe for concurrent use.
type Stack struct {
	cfg  Config
	opts Options
	log  *slog.Logger

	metrics *metrics
	ledger  *ledger
	queue   *queue
	boxes   *mailboxes
	domains map[string]bool
	block   *clamd.Matcher // the interceptor's block list; nil when off
	engines []*engine
	access  *access.Tier

	qidBase string
	qidSeq  atomic.Uint64

	mu        sync.Mutex
	started   bool
	endpoints []Endpoint
	links     []Link
	smtpSrv   *smtp.Server
	smtpLn    net.Listener
	// smtpServed is closed when the SMTP server's Serve loop has returned.
	smtpServed chan struct{}
	httpSrv    *http.Server
	clamdSrvs  []*clamd.Server

	stopping     atomic.Bool
	acceptMu     sync.RWMutex // see accept
	workCtx      context.Context
	cancelWork   context.CancelFunc
	workers      sync.WaitGroup
	servers      sync.WaitGroup
	shutdownOnce sync.Once
	shutdownErr  error

	spoolIn      []spoolEntry // read by Start, resumed once it succeeds
	spoolInFiles []string
	spoolArmed   bool // the queue goes to the spool when the stack stops
	spoolOnce    sync.Once
	spoolMu      sync.Mutex
	spoolStatus  SpoolStatus
}

// New validates cfg and builds a stack; nothing listens until [Stack.Start].
// An invalid configuration is returned as [ConfigErrors].
func New(cfg Config, opts Options) (*Stack, error) {
	cfg.FillDefaults()
	if err := yamlfile.Unpositioned(cfg.Validate()); err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	names := make([]string, len(cfg.Engines))
	for i, e := range cfg.Engines {
		names[i] = e.Name
	}
	m := newMetrics(names)
	boxes, err := newMailboxes(&cfg)
	if err != nil {
		return nil, err
	}
	s := &Stack{
		cfg: cfg, opts: opts, log: log, metrics: m, ledger: newLedger(), queue: newQueue(m), boxes: boxes,
		domains: map[string]bool{},
		qidBase: strings.ToUpper(strconv.FormatInt(time.Now().UnixMilli()%(36*36*36*36*36), 36)),
	}
	for _, d := range cfg.Domains {
		s.domains[strings.ToLower(d)] = true
	}
	if len(cfg.Scan.Interceptor.Block) > 0 {
		sigs := make([]clamd.Signature, len(cfg.Scan.Interceptor.Block))
		for i, b := range cfg.Scan.Interceptor.Block {
			sigs[i] = clamd.Signature{Name: b, Pattern: []byte(b)}
		}
		s.block = clamd.NewMatcher(sigs)
	}
	s.access, err = access.New(cfg.Access, access.Options{
		NewSession: boxes.mem.NewSession,
		Logger:     log.With("component", "access"),
		Registerer: m.reg,
		// APPEND takes what SMTP would.
		MaxAppendBytes: cfg.SMTP.MaxMessageBytes,
	})
	if err != nil {
		return nil, fmt.Errorf("mailstack: %w", err)
	}
	m.workers.Set(float64(cfg.Scan.Workers))
	return s, nil
}

// Config returns the stack's configuration, defaults filled in.
func (s *Stack) Config() Config { return s.cfg }

// Start binds every listener (the bundled engines first and their links
// interposed, then the access sites and theirs, then SMTP, the IMAP
// balancer and metrics) and starts the scan workers and health checkers. It
// returns once everything accepts connections. ctx bounds only the start-up;
// the stack runs until [Stack.Shutdown] or [Stack.Close]. On error,
// everything already started is stopped.
func (s *Stack) Start(ctx context.Context) (err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return errors.New("mailstack: already started")
	}
	s.started = true
	defer func() {
		if err != nil {
			s.closeLocked()
		}
	}()
	s.workCtx, s.cancelWork = context.WithCancel(context.WithoutCancel(ctx))
	if err := s.loadSpool(); err != nil {
		return err
	}

	var lc net.ListenConfig
	listen := func(what, addr string) (net.Listener, error) {
		ln, err := lc.Listen(ctx, "tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("mailstack: %s: listen on %s: %w", what, addr, err)
		}
		return ln, nil
	}

	// Engines and links.
	var engineEndpoints []Endpoint
	for _, ec := range s.cfg.Engines {
		upstream := ec.Dial
		if !ec.External {
			ln, err := listen(ec.Name, ec.Listen)
			if err != nil {
				return err
			}
			srv := &clamd.Server{Delay: ec.Delay}
			if ec.DelayMatch != "" {
				srv.DelayMatch = []byte(ec.DelayMatch)
			}
			s.clamdSrvs = append(s.clamdSrvs, srv)
			s.serve(func() error { return srv.Serve(ln) })
			engineEndpoints = append(engineEndpoints, Endpoint{Name: ec.Name, Addr: ln.Addr().String()})
			if upstream == "" {
				upstream = ln.Addr().String()
			}
		}
		link := Link{Name: ec.Name, Upstream: upstream, Dial: upstream}
		if s.opts.Interpose != nil {
			dial, err := s.opts.Interpose(ctx, link)
			if err != nil {
				return fmt.Errorf("mailstack: interpose link %s: %w", ec.Name, err)
			}
			link.Dial = dial
		}
		s.links = append(s.links, link)
		s.engines = append(s.engines, &engine{name: ec.Name, client: &clamd.Client{Addr: link.Dial}, m: s.metrics.engines[ec.Name]})
	}

	// Access tier: sites, their links, the balancer users connect to.
	var siteEndpoints []Endpoint
	err = s.access.Start(ctx, s.cfg.IMAP.Listen, func(ctx context.Context, _, name, upstream string) (string, error) {
		link := Link{Name: name, Upstream: upstream, Dial: upstream}
		if s.opts.Interpose != nil {
			dial, err := s.opts.Interpose(ctx, link)
			if err != nil {
				return "", err
			}
			link.Dial = dial
		}
		s.links = append(s.links, link)
		return link.Dial, nil
	})
	if err != nil {
		return fmt.Errorf("mailstack: %w", err)
	}
	for _, st := range s.access.Sites() {
		siteEndpoints = append(siteEndpoints, Endpoint{Name: st.Link, Addr: st.Addr})
	}

	// SMTP.
	smtpLn, err := listen("smtp", s.cfg.SMTP.Listen)
	if err != nil {
		return err
	}
	smtpLn = newLimitListener(smtpLn, s.cfg.SMTP.MaxConnections, s.metrics)
	s.smtpLn = smtpLn
	s.smtpSrv = smtp.NewServer(backend{s})
	s.smtpSrv.Domain = s.cfg.Hostname
	s.smtpSrv.MaxMessageBytes = s.cfg.SMTP.MaxMessageBytes
	s.smtpSrv.MaxRecipients = s.cfg.SMTP.MaxRecipients
	s.smtpSrv.ReadTimeout = s.cfg.SMTP.Timeout
	s.smtpSrv.WriteTimeout = s.cfg.SMTP.Timeout
	s.smtpSrv.AllowInsecureAuth = true
	s.smtpSrv.ErrorLog = slogPrinter{s.log.With("server", "smtp")}
	s.smtpServed = make(chan struct{})
	s.serve(func() error {
		defer close(s.smtpServed)
		return ignoreClosed(s.smtpSrv.Serve(smtpLn))
	})

	// Metrics and ledger over HTTP.
	httpLn, err := listen("metrics", s.cfg.Metrics.Listen)
	if err != nil {
		return err
	}
	s.httpSrv = &http.Server{Handler: s.httpHandler(), ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: newStdLogger(s.log.With("server", "http"))}
	s.serve(func() error { return ignoreClosed(s.httpSrv.Serve(httpLn)) })

	s.endpoints = append([]Endpoint{
		{Name: "smtp", Addr: smtpLn.Addr().String()},
		{Name: "imap", Addr: s.access.Addr()},
		{Name: "metrics", Addr: httpLn.Addr().String()},
	}, append(engineEndpoints, siteEndpoints...)...)

	if err := s.resumeSpool(); err != nil {
		return err
	}
	for i := 0; i < s.cfg.Scan.Workers; i++ {
		s.workers.Add(1)
		go func() {
			defer s.workers.Done()
			s.worker(s.workCtx)
		}()
	}
	s.log.Info("mailstack started", "profile", s.cfg.Profile, "smtp-server", smtpLn.Addr().String())
	s.warnSilentEngines(ctx)
	return nil
}

// serve runs a server loop in a goroutine owned by the stack.
func (s *Stack) serve(loop func() error) {
	s.servers.Add(1)
	go func() {
		defer s.servers.Done()
		if err := loop(); err != nil {
			s.log.Error("server stopped", "err", err)
		}
	}()
}

// Endpoints lists what the stack serves: smtp, imap (the access tier's
// balancer), metrics, then each bundled engine by name, then each access
// site by its link's name (imap-site-a, ...), at the site's own address.
// Empty before Start.
func (s *Stack) Endpoints() []Endpoint {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Endpoint(nil), s.endpoints...)
}

// Endpoint returns the address of the named endpoint, or "".
func (s *Stack) Endpoint(name string) string {
	for _, e := range s.Endpoints() {
		if e.Name == name {
			return e.Addr
		}
	}
	return ""
}

// Links lists the stack's internal hops: MTA → each engine, then balancer
// → each access site. Empty before Start.
func (s *Stack) Links() []Link {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Link(nil), s.links...)
}

// SiteStatus is an access site's state as the balancer sees it: draining,
// healthy, ejected, usable, its sessions and counters.
type SiteStatus = access.SiteStatus

// SiteCounters are an access site's totals since Start.
type SiteCounters = access.SiteCounters

// UnknownSiteError is returned for an access site name the stack does not
// have; it lists the valid names.
type UnknownSiteError = access.UnknownSiteError

// Sites returns the state of every access site, in configuration order.
// Before Start the sites have no addresses, sessions or counters.
func (s *Stack) Sites() []SiteStatus { return s.access.Sites() }

// Site returns the state of one access site, or an [*UnknownSiteError].
func (s *Stack) Site(name string) (SiteStatus, error) { return s.access.Site(name) }

// Drain takes an access site out for maintenance: the balancer stops
// placing sessions on it at once, the site says BYE to its open sessions
// and to new connections, and Drain returns once the balancer holds no
// session on the site. Sessions still open after access.drain-grace (or
// when ctx ends) are cut. It returns nil, an [*UnknownSiteError] (with the
// valid names), an error before Start, or ctx's error wrapped when ctx
// ended first (the site is drained all the same). Draining a drained site
// is not an error.
func (s *Stack) Drain(ctx context.Context, site string) error { return s.access.Drain(ctx, site) }

// Restore ends an access site's maintenance: it takes sessions again once
// its health checks pass (at once with health mode shallow or none, as
// those never saw it fail). Restoring a site that is not drained does
// nothing; an unknown name is an [*UnknownSiteError].
func (s *Stack) Restore(site string) error { return s.access.Restore(site) }

// Messages returns a copy of every ledger record, in acceptance order.
func (s *Stack) Messages() []Record { return s.ledger.all() }

// MessagesByID returns the records whose Message-ID is id (normally one).
func (s *Stack) MessagesByID(id string) []Record { return s.ledger.byMessageID(id) }

// Counts sums the ledger by state.
func (s *Stack) Counts() Counts { return s.ledger.counts() }

// Shutdown stops the stack gracefully: it stops accepting connections,
// closes SMTP sessions once their current command is done, lets the
// workers empty the queue (deferred messages included) until ctx ends,
// and returns once every goroutine has stopped. When ctx ends first, scans
// in progress are abandoned and their messages recorded as queued. Every
// message still queued is then written to the spool directory (see
// [Config.Spool] and [Stack.Spool]) and stays in the ledger in its state
// (see [Stack.Counts]). It is safe to call more than once.
func (s *Stack) Shutdown(ctx context.Context) error {
	s.shutdownOnce.Do(func() { s.shutdownErr = s.shutdown(ctx) })
	return s.shutdownErr
}

func (s *Stack) shutdown(ctx context.Context) error {
	s.stopping.Store(true)
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started {
		return nil
	}
	var errs []error
	if s.smtpSrv != nil {
		// The listener first, and Serve's return: go-smtp counts a
		// connection Serve accepts in a WaitGroup that its Shutdown waits
		// on, with nothing ordering an Add just before the Wait (the race
		// detector's complaint); and it closes only the listeners its
		// Serve has registered, which a Shutdown right after Start could
		// miss.
		_ = s.smtpLn.Close()
		<-s.smtpServed
		// Sessions get a short grace to finish the transaction under way;
		// idle clients are then cut off. Shutdown's own close of the
		// listener now fails; that is not a reason to cut the sessions.
		sctx, cancel := context.WithTimeout(ctx, smtpGrace)
		if err := s.smtpSrv.Shutdown(sctx); err != nil && !errors.Is(err, net.ErrClosed) {
			_ = s.smtpSrv.Close()
		}
		cancel()
	}
	// No new mail can arrive: wait for any accept under way, then let the
	// workers empty the queue until ctx ends.
	s.acceptMu.Lock()
	s.stopping.Store(true) // set already; under the lock, no accept is half done
	s.acceptMu.Unlock()
	s.queue.drain()
	done := make(chan struct{})
	go func() { s.workers.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		s.cancelWork()
		s.queue.close()
		<-done
		errs = append(errs, fmt.Errorf("scans abandoned: %w", ctx.Err()))
	}
	s.queue.close()
	if s.spoolArmed {
		if err := s.spoolQueued(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := s.access.Close(); err != nil {
		errs = append(errs, fmt.Errorf("access tier: %w", err))
	}
	if s.httpSrv != nil {
		if err := s.httpSrv.Shutdown(ctx); err != nil {
			_ = s.httpSrv.Close()
		}
	}
	// Workers are done: whatever an engine is still working on was
	// abandoned by its client.
	for _, srv := range s.clamdSrvs {
		_ = srv.Close()
	}
	s.cancelWork()
	s.servers.Wait()
	c := s.ledger.counts()
	s.log.Info("mailstack stopped", "accepted", c.Accepted, "delivered", c.Delivered,
		"quarantined", c.Quarantined, "bounced", c.Bounced, "still_queued", c.Queued)
	return errors.Join(errs...)
}

// Close stops everything at once: connections are cut and scans abandoned
// (their messages are recorded as queued and, with a spool directory,
// written to the spool). Safe to call more than once and after Shutdown.
func (s *Stack) Close() error {
	s.stopping.Store(true)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closeLocked()
	return nil
}

func (s *Stack) closeLocked() {
	if s.cancelWork != nil {
		s.cancelWork()
	}
	if s.smtpSrv != nil {
		_ = s.smtpSrv.Close()
		_ = s.smtpLn.Close() // see shutdown
	}
	s.queue.close()
	s.workers.Wait()
	if s.spoolArmed {
		if err := s.spoolQueued(); err != nil {
			s.log.Error("mailstack close", "err", err)
		}
	}
	_ = s.access.Close()
	if s.httpSrv != nil {
		_ = s.httpSrv.Close()
	}
	for _, srv := range s.clamdSrvs {
		_ = srv.Close()
	}
	s.servers.Wait()
}

// nextQueueID returns a new queue ID, unique within this stack (messages
// resumed from the spool keep theirs).
func (s *Stack) nextQueueID() string {
	for {
		id := s.qidBase + strings.ToUpper(strconv.FormatUint(s.qidSeq.Add(1), 36))
		if _, taken := s.ledger.get(id); !taken {
			return id
		}
	}
}

func ignoreClosed(err error) error {
	if err == nil || errors.Is(err, net.ErrClosed) || errors.Is(err, smtp.ErrServerClosed) ||
		errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// slogPrinter adapts slog to the Printf/Println loggers of go-smtp and
// go-imap.
type slogPrinter struct{ l *slog.Logger }

func (p slogPrinter) Printf(format string, v ...any) { p.l.Debug(fmt.Sprintf(format, v...)) }
func (p slogPrinter) Println(v ...any)               { p.l.Debug(strings.TrimSpace(fmt.Sprintln(v...))) }

// slogWriter adapts slog to a log.Logger's writer.
type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.l.Debug(strings.TrimSpace(string(p)))
	return len(p), nil
}
