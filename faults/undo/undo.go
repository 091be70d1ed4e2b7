// Package undo removes a fault from the outside, in its injector's place.
// It is the one way mailchaos undoes a fault it cannot ask its injector
// to remove: the plugin host for a plugin that died holding faults (or
// failed half-way through an injection), `mailchaos recover` for a crashed
// run, the runner for an injection that failed, and the plugin SDK for
// injections under way when its plugin is told to go.
//
// A handle describes all there is to undo: toxics on toxiproxy servers,
// each on its own (a diverted link is pointed back), every other toxic named after the
// handle's owner and ID (what an injection cut short made before it could
// say so), and an HTTP call that restores what the fault changed
// ([faults.DataUndoPost]).
package undo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	neturl "net/url"
	"os"
	"strings"
	"syscall"

	"github.com/mailchaos/mailchaos/faults"
	"github.com/mailchaos/mailchaos/faults/network"
	"github.com/mailchaos/mailchaos/internal/httpguard"
)

// Options say how far [Undo] goes.
type Options struct {
	// RemoteOK lets the restore call leave loopback (see [Restore] and
	// [InTarget]).
	RemoteOK bool
	// Named also removes every toxic on each of the handle's toxiproxy
	// servers ([faults.Handle.AllServers]) named after its owner and ID, not only those it lists: what an
	// injection killed half-way, or a plugin that died before answering,
	// left behind. A handle that knows only its ID, owner and server (an
	// intent) is undone this way.
	Named bool
}

// Undo removes everything h describes: its restore call, the toxics named
// after it (with [Options.Named]) and the toxics it lists. It returns how
// many toxics were found by name. It is idempotent, as removals are;
// every part is tried even if one fails, and ctx bounds them all. A
// toxiproxy server that refuses the connection is named in the error, with
// what that means.
func Undo(ctx context.Context, h faults.Handle, opts Options) (int, error) {
	var errs []error
	if err := Restore(ctx, h, opts.RemoteOK); err != nil {
		errs = append(errs, err)
	}
	n := 0
	for _, server := range h.AllServers() {
		if opts.Named && h.Owner != "" && h.ID != "" {
			k, err := network.RemoveOwned(ctx, network.NewClient(server), h.Owner, h.ID)
			n += k
			if err != nil {
				errs = append(errs, fmt.Errorf("fault %s: remove its toxics on %s: %w", h.ID, server, refused(server, err)))
			}
		}
		if err := network.RemoveOn(ctx, h, server); err != nil {
			errs = append(errs, fmt.Errorf("fault %s: toxiproxy %s: %w", h.ID, server, refused(server, err)))
		}
	}
	return n, errors.Join(errs...)
}

// refused explains a toxiproxy server that refused the connection.
func refused(url string, err error) error {
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return err
	}
	return fmt.Errorf("could not reach %s (connection refused): if it was a run's in-process server, "+
		"the fault ended with it; otherwise start the server again and undo again: %w", url, err)
}

// Restore makes h's restore call, if it has one: a POST with an empty JSON
// object to the URL in Data[faults.DataUndoPost], with the token of
// MAILCHAOS_TOKEN when set, following no redirect. A 2xx answer is
// success. The URL passes the loopback guard unless remoteOK (see
// [InTarget]): a handle comes from a plugin, and a plugin's word is not
// enough to send mailchaos anywhere.
func Restore(ctx context.Context, h faults.Handle, remoteOK bool) error {
	url := h.Data[faults.DataUndoPost]
	if url == "" {
		return nil
	}
	if !strings.HasPrefix(url, "http://") && !strings.HasPrefix(url, "https://") {
		return fmt.Errorf("fault %s: restore: %q is not an http(s) URL", h.ID, url)
	}
	if err := faults.CheckAddress(url, nil, remoteOK); err != nil {
		return fmt.Errorf("fault %s: restore: %w", h.ID, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader("{}"))
	if err != nil {
		return fmt.Errorf("fault %s: restore: %w", h.ID, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "mailchaos")
	httpguard.SetAuth(req, httpguard.EnvToken(os.Getenv))
	resp, err := (&http.Client{CheckRedirect: httpguard.NoRedirects}).Do(req)
	if err != nil {
		return fmt.Errorf("fault %s: restore %s: %w", h.ID, url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("fault %s: restore %s: %s: %s", h.ID, url, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

// InTarget reports whether h's restore call goes to one of t's endpoints
// (which passed the guard when the target was read), so that it may be
// off loopback.
func InTarget(h faults.Handle, t faults.Target) bool {
	u, err := neturl.Parse(h.Data[faults.DataUndoPost])
	if err != nil || u.Host == "" {
		return false
	}
	for _, addr := range t.Endpoints {
		if addr != "" && addr == u.Host {
			return true
		}
	}
	return false
}
