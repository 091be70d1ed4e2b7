// Package undo removes a fault from the outside, in its injector's place:
// what the plugin host does when a plugin died holding faults, and what
// `mailchaos recover` does for a crashed run. A handle describes all there
// is to undo: toxics on a toxiproxy server (a diverted link is pointed
// back), and an HTTP call that restores what the fault changed
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

	"github.com/mailchaos/mailchaos/faults"
	"github.com/mailchaos/mailchaos/faults/network"
	"github.com/mailchaos/mailchaos/internal/httpguard"
)

// Undo removes everything h describes: its toxics and, when it has one,
// its restore call (see [Restore] for remoteOK). It is idempotent, as
// removals are. Every part is tried even if one fails; ctx bounds them all.
func Undo(ctx context.Context, h faults.Handle, remoteOK bool) error {
	var errs []error
	if h.Toxiproxy != "" && len(h.Toxics) > 0 {
		if err := network.Remove(ctx, h); err != nil {
			errs = append(errs, err)
		}
	}
	if err := Restore(ctx, h, remoteOK); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
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
