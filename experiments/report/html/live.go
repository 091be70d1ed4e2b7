package htmlreport

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/mailchaos/mailchaos/experiments/journal"
	"github.com/mailchaos/mailchaos/experiments/report"
	"github.com/mailchaos/mailchaos/internal/httpguard"
)

// Limits of the live view.
const (
	// MaxClients is how many pages may follow a run at once; more get 503.
	MaxClients = 8
	// minInterval is the shortest time between two updates of a page.
	minInterval = 300 * time.Millisecond
	// writeTimeout bounds one write to a page: a client that does not
	// read is dropped.
	writeTimeout = 10 * time.Second
)

// ErrNotLoopback is returned by [Listen] for an address off loopback.
var ErrNotLoopback = errors.New("htmlreport: the dashboard listens on loopback only")

// liveScript follows the run: it replaces the report with each version the
// server sends, and stops at the end of the run.
const liveScript = `(function(){
var live=document.getElementById("live"),main=document.getElementById("report");
var es=new EventSource("events");
function state(s,t){live.dataset.state=s;live.textContent=t;}
es.addEventListener("open",function(){state("live","live: following the run");});
es.addEventListener("report",function(e){main.innerHTML=e.data;document.body.dataset.version=e.lastEventId;});
es.addEventListener("done",function(){es.close();state("done","live: the run is over; this is its final report");});
es.addEventListener("error",function(){if(live.dataset.state!=="done"){state("lost","live: connection lost, retrying");}});
})();`

// Live holds the events of runs as they happen and serves them as a page
// that updates itself (server-sent events) until [Live.Finish]. Its
// methods are safe for concurrent use.
//
// Memory stays bounded: the view keeps every event that says what the run
// did (its start, phases, faults, aborts, assertions, logs, verdict), but
// of each SLI's samples and each load's windows only as many as the page
// draws (maxSamples), and counts the rest, as the report does.
type Live struct {
	mu     sync.Mutex
	events []journal.Event
	// kept counts the events kept of each capped series, skipped those
	// past the cap.
	kept, skipped map[seriesKey]int
	version       uint64
	done          bool
	changed       chan struct{} // closed and replaced at each change
	clients       int

	renderMu sync.Mutex
	rendered uint64
	body     template.HTML
}

// NewLive returns an empty live view.
func NewLive() *Live {
	return &Live{changed: make(chan struct{}), kept: map[seriesKey]int{}, skipped: map[seriesKey]int{}}
}

// seriesKey names a series of a run whose length the page caps: an SLI's
// samples, or a load step's windows.
type seriesKey struct {
	run, sli string
	step     int
	load     bool
}

// seriesOf is the capped series e belongs to; false for the events always
// kept.
func seriesOf(e journal.Event) (seriesKey, bool) {
	switch e.Type {
	case journal.TypeSample:
		return seriesKey{run: e.Run, sli: e.SLI}, true
	case journal.TypeLoad:
		return seriesKey{run: e.Run, step: e.Step, load: true}, true
	}
	return seriesKey{}, false
}

// Observe adds an event; it has the signature of the runner's observer.
// The event is copied (through its JSON form, as the journal keeps it),
// so the page equals the report rendered from the journal.
func (l *Live) Observe(e journal.Event) {
	b, err := json.Marshal(e)
	if err != nil {
		return
	}
	var c journal.Event
	if err := json.Unmarshal(b, &c); err != nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done {
		return
	}
	if c.Type == journal.TypeLoad && c.Load == nil {
		return // nothing to draw, nothing to summarize
	}
	if k, ok := seriesOf(c); ok {
		if l.kept[k] >= maxSamples {
			l.skipped[k]++
			l.bump() // the page counts what it leaves out
			return
		}
		l.kept[k]++
	}
	l.events = append(l.events, c)
	l.bump()
}

// Finish marks the runs over: every page gets the final report and stops
// following.
func (l *Live) Finish() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.done {
		l.done = true
		l.bump()
	}
}

// bump signals a change; l.mu is held.
func (l *Live) bump() {
	l.version++
	close(l.changed)
	l.changed = make(chan struct{})
}

// state returns the current version, whether the runs are over, and the
// channel closed at the next change.
func (l *Live) state() (uint64, bool, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.version, l.done, l.changed
}

// render returns the body of the current version, rendering it once for
// every page.
func (l *Live) render() (template.HTML, uint64, error) {
	l.renderMu.Lock()
	defer l.renderMu.Unlock()
	l.mu.Lock()
	ver, evs, done := l.version, l.events[:len(l.events):len(l.events)], l.done
	skipped := make(map[seriesKey]int, len(l.skipped))
	for k, n := range l.skipped {
		skipped[k] = n
	}
	l.mu.Unlock()
	if ver == l.rendered && l.body != "" {
		return l.body, ver, nil
	}
	// Once the runs are over, the page is the report: a run without a
	// verdict then reads DID NOT FINISH, as it does there.
	body, err := renderBody(report.Split(evs), !done, skipped)
	if err != nil {
		return "", 0, err
	}
	l.body, l.rendered = body, ver
	return body, ver, nil
}

// Handler serves the page at / and its updates at /events.
func (l *Live) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", l.page)
	mux.HandleFunc("GET /events", l.stream)
	return mux
}

// securityHeaders are sent with every response of the live view.
func securityHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
}

func (l *Live) page(w http.ResponseWriter, _ *http.Request) {
	body, _, err := l.render()
	if err != nil {
		httpguard.Error(w, http.StatusInternalServerError, err.Error())
		return
	}
	var b bytes.Buffer
	if err := writePage(&b, "mailchaos: live", body, liveScript); err != nil {
		httpguard.Error(w, http.StatusInternalServerError, err.Error())
		return
	}
	securityHeaders(w)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "frame-ancestors 'none'")
	_, _ = w.Write(b.Bytes())
}

// stream sends the report each time it changes (at most every
// minInterval), then "done" once the runs are over.
func (l *Live) stream(w http.ResponseWriter, r *http.Request) {
	if !l.join() {
		httpguard.Error(w, http.StatusServiceUnavailable, fmt.Sprintf("htmlreport: %d pages already follow this run", MaxClients))
		return
	}
	defer l.leave()
	rc := http.NewResponseController(w)
	securityHeaders(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	sent := ^uint64(0) // every page starts with the report as it is
	send := func(event, id, data string) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(writeTimeout))
		var b strings.Builder
		b.WriteString("event: " + event + "\nid: " + id + "\n")
		// The event stream ends a line at CR, LF or CRLF: every one of
		// them in data starts a data line of its own, so that no text of
		// the journal can end the event or start another.
		data = strings.ReplaceAll(strings.ReplaceAll(data, "\r\n", "\n"), "\r", "\n")
		for _, line := range strings.Split(data, "\n") {
			b.WriteString("data: " + line + "\n")
		}
		b.WriteString("\n")
		if _, err := w.Write([]byte(b.String())); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	for {
		ver, done, changed := l.state()
		if ver != sent {
			body, v, err := l.render()
			if err != nil {
				return
			}
			if !send("report", fmt.Sprint(v), string(body)) {
				return
			}
			sent = v
			if v != ver {
				continue // changed while rendering
			}
		}
		if done {
			send("done", fmt.Sprint(sent), "end")
			return
		}
		select {
		case <-changed:
		case <-r.Context().Done():
			return
		}
		// Gather the changes of a moment into one update; the end of
		// the runs is sent at once.
		t := time.NewTimer(minInterval)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		case <-l.finished():
			t.Stop()
		}
	}
}

// finished returns a channel closed once the runs are over (nil before:
// it blocks; already closed after).
func (l *Live) finished() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done {
		c := make(chan struct{})
		close(c)
		return c
	}
	return nil
}

func (l *Live) join() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.clients >= MaxClients {
		return false
	}
	l.clients++
	return true
}

func (l *Live) leave() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.clients--
}

// Server serves a [Live] view on a loopback address.
type Server struct {
	live *Live
	ln   net.Listener
	srv  *http.Server
	done chan error
	once sync.Once
	err  error
}

// Listen starts serving live on addr, which must be a loopback address
// (127.0.0.0/8, ::1 or localhost; port 0 picks a free port). Requests are
// guarded against other Hosts and cross-origin pages (httpguard). The
// server runs until [Server.Close].
func Listen(addr string, live *Live) (*Server, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("htmlreport: dashboard address %q: %w", addr, err)
	}
	if !httpguard.IsLoopback(host) {
		return nil, fmt.Errorf("%w: %s is not a loopback address (use 127.0.0.1:PORT)", ErrNotLoopback, addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("htmlreport: dashboard: %w", err)
	}
	s := &Server{live: live, ln: ln, done: make(chan error, 1)}
	s.srv = &http.Server{
		Handler:           httpguard.Wrap(live.Handler(), httpguard.Config{Listen: ln.Addr().String()}),
		ReadHeaderTimeout: 5 * time.Second,
		MaxHeaderBytes:    16 << 10,
		IdleTimeout:       30 * time.Second,
	}
	go func() { s.done <- s.srv.Serve(ln) }()
	return s, nil
}

// URL is the page's address.
func (s *Server) URL() string { return "http://" + s.ln.Addr().String() + "/" }

// Close finishes the live view (every page gets the final report), waits
// up to ctx for the pages to have it, and stops the server and every
// goroutine it started. Safe to call twice.
func (s *Server) Close(ctx context.Context) error {
	s.once.Do(func() {
		s.live.Finish()
		err := s.srv.Shutdown(ctx)
		if err != nil {
			// A page that does not read its updates: cut it off.
			err = s.srv.Close()
		}
		if serr := <-s.done; !errors.Is(serr, http.ErrServerClosed) {
			err = errors.Join(err, serr)
		}
		s.err = err
	})
	return s.err
}
