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
	"os"
	"strings"

	"github.com/mailchaos/mailchaos/faults"
	"github.com/mailchaos/mailchaos/faults/network"
	"github.com/mailchaos/mailchaos/internal/httpguard"
)

// Undo removes everything h describes: its toxics and, when it has one,
// its restore call. It is idempotent, as removals are. Every part is tried
// even if one fails; ctx bounds them all.
func Undo(ctx context.Context, h faults.Handle) error {
	var errs []error
	if h.Toxiproxy != "" && len(h.Toxics) > 0 {
		if err := network.Remove(ctx, h); err != nil {
			errs = append(errs, err)
		}
	}
	if err := Restore(ctx, h); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Restore makes h's restore call, if it has one: a POST with an empty JSON
// object to the URL in Data[faults.DataUndoPost], with the token of
// MAILCHAOS_TOKEN when set. A 2xx answer is success.
func Restore(ctx context.Context, h faults.Handle) error {
	url := h.Data[faults.DataUndoPost]
	if url == "" {
		return nil
	}
	if !strings.HasPrefix(url, "http://") && !strings.HasPrefix(url, "https://") {
		return fmt.Errorf("fault %s: restore: %q is not an http(s) URL", h.ID, url)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader("{}"))
	if err != nil {
		return fmt.Errorf("fault %s: restore: %w", h.ID, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "mailchaos")
	httpguard.SetAuth(req, httpguard.EnvToken(os.Getenv))
	resp, err := http.DefaultClient.Do(req)
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
