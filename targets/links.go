package targets

import (
	"fmt"

	"github.com/mailchaos/mailchaos/faults/network"
	"github.com/mailchaos/mailchaos/targets/proxy"
)

// LinksFor splits the file's links into those a toxiproxy server listening
// on listen owns (the link names no server, or names this one: its own
// toxiproxy, else the file's) and a "skipped" line for each other one, as
// `proxy serve --links` creates and reports them.
func (f File) LinksFor(listen string) (mine []proxy.Link, skipped []string) {
	t := f.Target()
	for _, l := range f.Links {
		if s := t.Server(l.Name); s != "" && !proxy.Serves(s, listen) {
			skipped = append(skipped, fmt.Sprintf("skipped link %s: it belongs to the server at %s", l.Name, s))
			continue
		}
		mine = append(mine, proxy.Link{Name: l.Name, Listen: l.Listen, Upstream: l.Upstream, Enabled: true})
	}
	return mine, skipped
}

// NoServerError is a link that names no toxiproxy server, in a file that
// names none, with no fallback given: nothing says where it goes. It is
// the input's fault.
type NoServerError struct {
	// Index is the link's index in the file's links.
	Index int
	// Link is its name.
	Link string
}

func (e *NoServerError) Error() string {
	return fmt.Sprintf("links[%d] (%s): no toxiproxy server for it: give toxiproxy: in the file "+
		"(on the link or at the top) or --toxiproxy URL", e.Index, e.Link)
}

// InvalidInput marks the error as the input's (exit 2).
func (e *NoServerError) InvalidInput() bool { return true }

// LinksByServer groups the file's links by the toxiproxy server that owns
// each: its own, else the file's, else fallback. order lists the servers
// as they first appear. A link with none of them is a [*NoServerError].
func (f File) LinksByServer(fallback string) (groups map[string][]network.Proxy, order []string, err error) {
	groups = map[string][]network.Proxy{}
	t := f.Target()
	for i, l := range f.Links {
		s := t.Server(l.Name)
		if s == "" {
			s = fallback
		}
		if s == "" {
			return nil, nil, &NoServerError{Index: i, Link: l.Name}
		}
		if _, ok := groups[s]; !ok {
			order = append(order, s)
		}
		groups[s] = append(groups[s], network.Proxy{Name: l.Name, Listen: l.Listen, Upstream: l.Upstream})
	}
	return groups, order, nil
}
