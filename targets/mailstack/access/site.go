package access

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
)

// byeMaintenance is the text of the BYE a draining site sends.
const byeMaintenance = "site closing for maintenance, please reconnect"

// Site is one IMAP front end (go-imap's imapserver) over a mailbox store
// shared by every site. It tracks its connections so that maintenance can
// end them with a BYE. Create it with [NewSite]; its methods are safe for
// concurrent use.
type Site struct {
	name string
	srv  *imapserver.Server
	log  *slog.Logger

	mu       sync.Mutex
	lim      SiteLimits
	draining bool
	conns    map[*siteConn]struct{}
	addr     string
	served   sync.WaitGroup
	closed   bool
}

// NewSite returns a site named name whose sessions come from newSession
// (typically the NewSession method of an imapmemserver.Server holding the
// mailboxes). log may be nil.
func NewSite(name string, newSession func() imapserver.Session, log *slog.Logger) *Site {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Site{name: name, log: log, conns: map[*siteConn]struct{}{}}
	s.srv = imapserver.New(&imapserver.Options{
		NewSession: func(c *imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			sc, _ := c.NetConn().(*siteConn)
			s.mu.Lock()
			draining := s.draining
			if sc != nil && !draining {
				sc.imap = c
			}
			s.mu.Unlock()
			if draining {
				return nil, nil, &imap.Error{Type: imap.StatusResponseTypeBye, Text: byeMaintenance}
			}
			return s.guardSession(c, newSession()), nil, nil
		},
		Caps:         imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapIMAP4rev2: {}},
		InsecureAuth: true,
		Logger:       printer{log},
	})
	return s
}

// SetLimits bounds what the site accepts from now on (connections already
// open keep the limits they started with).
func (s *Site) SetLimits(l SiteLimits) {
	s.mu.Lock()
	s.lim = l
	s.mu.Unlock()
}

// guardSession wraps a new session to count its failed log-ins and report
// the APPEND limit; a session without IMAP4rev2 is returned as it is.
func (s *Site) guardSession(c *imapserver.Conn, sess imapserver.Session) imapserver.Session {
	rev2, ok := sess.(imapserver.SessionIMAP4rev2)
	if !ok {
		return sess
	}
	s.mu.Lock()
	lim := s.lim
	s.mu.Unlock()
	lg := &loginGuard{SessionIMAP4rev2: rev2, conn: c, limit: lim.MaxLoginFailures, onLockout: lim.OnLockout}
	return appendLimited{loginGuard: lg, limit: lim.appendLimit()}
}

// Name returns the site's name.
func (s *Site) Name() string { return s.name }

// Addr returns the address the site listens on, "" before [Site.Serve].
func (s *Site) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Serve accepts IMAP connections on ln until [Site.Close]. It blocks and
// returns nil once the site is closed.
func (s *Site) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = ln.Close()
		return nil
	}
	s.addr = ln.Addr().String()
	s.served.Add(1)
	s.mu.Unlock()
	defer s.served.Done()
	err := s.srv.Serve(trackingListener{Listener: ln, site: s})
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		// Closed before or while serving: the listener may not have been
		// handed to the server yet.
		_ = ln.Close()
		return nil
	}
	if err == nil || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return fmt.Errorf("site %s: %w", s.name, err)
}

// Sessions returns how many connections the site holds.
func (s *Site) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// SetDraining puts the site in or out of maintenance. While draining, a new
// connection is greeted with BYE and closed; sessions already open are not
// touched (see [Site.EndSessions]).
func (s *Site) SetDraining(on bool) {
	s.mu.Lock()
	s.draining = on
	s.mu.Unlock()
}

// EndSessions ends every open session cleanly: each gets an untagged BYE
// and is closed. A BYE that cannot be written (a stalled peer) is given
// up when ctx ends, and its connection closed. It returns how many
// sessions were ended, once every BYE is written or given up.
func (s *Site) EndSessions(ctx context.Context) int {
	s.mu.Lock()
	var conns []*siteConn
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stop := context.AfterFunc(ctx, func() { _ = c.Conn.Close() })
			defer stop()
			s.mu.Lock()
			ic := c.imap
			s.mu.Unlock()
			if ic == nil {
				// Connected but not greeted yet: the greeting will not be
				// sent by a draining site anyway.
				_ = c.Conn.Close()
				return
			}
			_ = ic.Bye(byeMaintenance)
		}()
	}
	wg.Wait()
	return len(conns)
}

// Close stops the site at once: the listener and every connection are
// closed, and it returns once [Site.Serve] has returned. Safe to call more
// than once.
func (s *Site) Close() error {
	s.mu.Lock()
	already := s.closed
	s.closed = true
	s.mu.Unlock()
	if already {
		s.served.Wait()
		return nil
	}
	err := s.srv.Close()
	s.served.Wait()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// trackingListener records every accepted connection in its site.
type trackingListener struct {
	net.Listener
	site *Site
}

// Accept implements net.Listener. A connection over the site's cap is
// answered BYE and closed here, and the next one is waited for.
func (l trackingListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		sc := &siteConn{Conn: c, site: l.site}
		l.site.mu.Lock()
		lim := l.site.lim
		if lim.MaxConnections > 0 && len(l.site.conns) >= lim.MaxConnections+SiteHeadroom {
			l.site.mu.Unlock()
			// Counted before the client can read its answer.
			if lim.OnRefused != nil {
				lim.OnRefused()
			}
			refuseConn(c)
			continue
		}
		l.site.conns[sc] = struct{}{}
		l.site.mu.Unlock()
		sc.guard = newGuard(c, lim, &sc.wmu)
		sc.guard.onBad = lim.OnRejected
		return sc, nil
	}
}

// siteConn is a connection of a site; it leaves the site's set when it is
// closed.
type siteConn struct {
	net.Conn
	site  *Site
	imap  *imapserver.Conn // set once the session exists; guarded by site.mu
	once  sync.Once
	guard *guard     // reads commands ahead of go-imap
	wmu   sync.Mutex // orders go-imap's writes and the guard's replies
}

// Read implements net.Conn through the command guard.
func (c *siteConn) Read(p []byte) (int, error) { return c.guard.Read(p) }

// Write implements net.Conn.
func (c *siteConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.Conn.Write(p)
}

// Close implements net.Conn.
func (c *siteConn) Close() error {
	c.once.Do(func() {
		c.site.mu.Lock()
		delete(c.site.conns, c)
		c.site.mu.Unlock()
	})
	return c.Conn.Close()
}

// printer adapts slog to go-imap's Printf logger.
type printer struct{ l *slog.Logger }

// Printf implements imapserver.Logger.
func (p printer) Printf(format string, v ...any) {
	p.l.Debug(strings.TrimSpace(fmt.Sprintf(format, v...)))
}
