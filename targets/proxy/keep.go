package proxy

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/Shopify/toxiproxy/v2"
	"github.com/Shopify/toxiproxy/v2/toxics"

	"github.com/mailchaos/mailchaos/faults"
	"github.com/mailchaos/mailchaos/faults/network"
	"github.com/mailchaos/mailchaos/internal/httpguard"
)

// MergeLinks is what a server starts with, given the links its links file
// names (file) and the links its state file kept (state):
//
//   - a link only in the file is created as the file says, enabled; an
//     empty listen address is 127.0.0.1:0;
//   - a link only in the state (created through the API) is restored as
//     it was;
//   - a link in both takes its upstream from the file, and its listen
//     address too unless the file leaves the port open (port 0 or no
//     address): then the state's address on the same host is kept, so
//     that the port the stack was configured with survives restarts. It
//     keeps the state's enabled flag.
//
// The file is the configuration: a change made through the API to a link
// the file names lasts until the next restart.
func MergeLinks(file, state []Link) []Link {
	kept := map[string]Link{}
	for _, l := range state {
		kept[l.Name] = l
	}
	out := make([]Link, 0, len(file)+len(state))
	named := map[string]bool{}
	for _, l := range file {
		named[l.Name] = true
		if l.Listen == "" {
			l.Listen = "127.0.0.1:0"
		}
		l.Enabled = true
		if k, ok := kept[l.Name]; ok {
			l.Enabled = k.Enabled
			if openPort(l.Listen) && sameHost(l.Listen, k.Listen) {
				l.Listen = k.Listen
			}
		}
		out = append(out, l)
	}
	for _, l := range state {
		if !named[l.Name] {
			out = append(out, l)
		}
	}
	return out
}

// openPort reports whether addr leaves its port to the system (port 0).
func openPort(addr string) bool {
	_, port, err := net.SplitHostPort(addr)
	return err == nil && (port == "0" || port == "")
}

// sameHost reports whether two host:port addresses have the same host.
func sameHost(a, b string) bool {
	ha, _, err1 := net.SplitHostPort(a)
	hb, _, err2 := net.SplitHostPort(b)
	return err1 == nil && err2 == nil && ha == hb
}

// Serves reports whether the toxiproxy API at apiURL ("http://host:port")
// is the one a server listening on listen serves: the same port, and the
// same host (any loopback name matches any loopback listen address; a
// listen address on every interface matches any host).
func Serves(apiURL, listen string) bool {
	u, err := url.Parse(apiURL)
	if err != nil || u.Host == "" {
		return false
	}
	lh, lp, err := net.SplitHostPort(listen)
	if err != nil || u.Port() != lp {
		return false
	}
	h := u.Hostname()
	if lh == "" || lh == "0.0.0.0" || lh == "::" {
		return true
	}
	return strings.EqualFold(h, lh) || faults.IsLoopback(h) && faults.IsLoopback(lh)
}

// createLinks creates links on the server's collection, before its API
// serves. A link that gives no listen address gets a free loopback port.
// Without allowRemote, a link listening off loopback is refused.
func (s *Server) createLinks(links []Link, allowRemote bool) error {
	for _, l := range links {
		if l.Listen == "" {
			l.Listen = "127.0.0.1:0"
		}
		if !allowRemote {
			if err := loopbackListen(l.Name, &l.Listen, true); err != nil {
				return err
			}
		}
		p := toxiproxy.NewProxy(s.api, l.Name, l.Listen, l.Upstream)
		if err := s.api.Collection.Add(p, l.Enabled); err != nil {
			return fmt.Errorf("link %s (%s -> %s): %w", l.Name, l.Listen, l.Upstream, err)
		}
	}
	return nil
}

// Links returns the server's links, sorted by name, as the state file
// keeps them: a link diverted by a fault ([network.Divert]) with the
// upstream it is restored to, not the one it is diverted to, so that no
// fault outlives a restart; the scratch proxies of a toxic-type probe
// ([network.ProbePrefix]) left out.
func (s *Server) Links() []Link {
	ps := s.api.Collection.Proxies()
	out := make([]Link, 0, len(ps))
	for _, p := range ps {
		if strings.HasPrefix(p.Name, network.ProbePrefix) {
			continue
		}
		restore := divertedFrom(p)
		p.Lock()
		l := Link{Name: p.Name, Listen: p.Listen, Upstream: p.Upstream, Enabled: p.Enabled}
		p.Unlock()
		if restore != "" {
			l.Upstream = restore
		}
		out = append(out, l)
	}
	slices.SortFunc(out, func(a, b Link) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// divertedFrom returns the upstream a diverted proxy is restored to, or "".
func divertedFrom(p *toxiproxy.Proxy) string {
	for _, t := range p.Toxics.GetToxicArray() {
		if w, ok := t.(*toxics.ToxicWrapper); ok {
			if d, ok := w.Toxic.(*DivertToxic); ok && d.Restore != "" {
				return d.Restore
			}
		}
	}
	return ""
}

// saveLinks writes the server's links to its state file if they changed
// since it last did. Safe for concurrent use.
func (s *Server) saveLinks() error {
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	if s.closing {
		return nil // the links are being torn down, not removed
	}
	links := s.Links()
	if s.saved != nil && slices.Equal(links, s.saved) {
		return nil
	}
	if err := SaveState(s.statePath, links); err != nil {
		return err
	}
	s.saved = links
	return nil
}

// persisting saves the server's links after every API write, before the
// answer goes out: once a client has its answer, the change is on disk. A
// write that failed may still have changed links (a populate that created
// some before one failed), so it is saved too (nothing is written when
// nothing changed). If a successful change cannot be saved, the answer is
// 500 and says so (the change itself was made); a failed one keeps its
// own answer.
func (s *Server) persisting(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet || r.Method == http.MethodHead || r.Method == http.MethodOptions {
			next.ServeHTTP(w, r)
			return
		}
		b := &heldResponse{w: w}
		next.ServeHTTP(b, r)
		if b.status == 0 {
			b.status = http.StatusOK
		}
		if err := s.saveLinks(); err != nil {
			s.log.Error("links not saved", "err", err)
			if b.status < 300 {
				httpguard.Error(w, http.StatusInternalServerError, "the change was made but not saved, it will not survive a restart: "+err.Error())
				return
			}
		}
		w.WriteHeader(b.status)
		_, _ = w.Write(b.body.Bytes())
	})
}

// heldResponse holds an answer back until the state is saved. Headers go
// straight to the real writer's map.
type heldResponse struct {
	w      http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (h *heldResponse) Header() http.Header { return h.w.Header() }

func (h *heldResponse) WriteHeader(code int) {
	if h.status == 0 {
		h.status = code
	}
}

func (h *heldResponse) Write(p []byte) (int, error) {
	if h.status == 0 {
		h.status = http.StatusOK
	}
	return h.body.Write(p)
}
