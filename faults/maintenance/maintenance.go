// Package maintenance is the maintenance fault: an access site of the mail
// stack drained for the fault's duration and restored at its end, through
// the stack's admin endpoint (POST /api/sites/NAME/drain and /restore).
// Like any fault it is rolled back on every way out of a run, and it ends
// by itself at its TTL.
package maintenance

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mailchaos/mailchaos/faults"
	"github.com/mailchaos/mailchaos/internal/httpguard"
)

// Name is the fault's name.
const Name = "maintenance"

// sitePrefix starts the name of a site's link and endpoint (imap-site-a).
const sitePrefix = "imap-"

// Spec is the maintenance fault's schema.
func Spec() faults.Spec {
	return faults.Spec{
		Name:    Name,
		Summary: "maintenance on an access site: drained (no new sessions, existing ones ended) for the fault's duration, then restored",
		Params: []faults.Param{
			{Name: "site", Type: faults.TypeString, Required: true, Doc: "the site to drain, such as site-a"},
			{Name: "admin", Type: faults.TypeAddress, Default: "metrics",
				Doc: "the stack's admin HTTP endpoint: a name in the target's endpoints or a host:port address"},
		},
	}
}

// Injector drains and restores sites. Its admin calls carry the bearer
// token in $MAILCHAOS_TOKEN, if set (see internal/httpguard).
type Injector struct {
	client *http.Client
	token  string

	mu     sync.Mutex
	timers map[string]*time.Timer // TTL restores, by owner/id
}

// New returns the injector.
func New() *Injector {
	return &Injector{client: &http.Client{CheckRedirect: httpguard.NoRedirects}, token: httpguard.EnvToken(os.Getenv), timers: map[string]*time.Timer{}}
}

var _ faults.Injector = (*Injector)(nil)

// Describe returns the spec.
func (i *Injector) Describe(context.Context) (faults.Spec, error) { return Spec(), nil }

// Validate checks the parameters and, when the target lists its sites (as
// links named imap-SITE), the site.
func (i *Injector) Validate(_ context.Context, req faults.Request) error {
	_, _, err := check(req)
	return err
}

// check returns the admin base URL and the site.
func check(req faults.Request) (base, site string, err error) {
	v, errs := faults.Check(Spec(), req.Params)
	site = v.String("site")
	var sites []string
	for _, l := range req.Target.LinkNames() {
		if s, ok := strings.CutPrefix(l, sitePrefix); ok {
			sites = append(sites, s)
		}
	}
	if site != "" && len(sites) > 0 && !slices.Contains(sites, site) {
		errs = append(errs, &faults.ParamError{Fault: Name, Param: "site", Value: site,
			Msg: "the target has no such site" + faults.Suggest(site, sites), Allowed: "one of " + strings.Join(sites, ", ")})
	}
	admin := v.String("admin")
	addr, ok := req.Target.Endpoints[admin]
	switch {
	case ok && addr != "":
		base, _ = faults.HTTPBase(addr)
	case ok:
		// Known once the target runs.
	case strings.Contains(admin, ":"):
		base, _ = faults.HTTPBase(admin)
	default:
		errs = append(errs, &faults.ParamError{Fault: Name, Param: "admin", Value: admin,
			Msg: "the target has no such endpoint", Allowed: "an endpoint name such as metrics, or host:port"})
	}
	return base, site, errors.Join(errs...)
}

// siteState is the part of the admin API's answer the fault reads.
type siteState struct {
	Name     string `json:"name"`
	Draining bool   `json:"draining"`
	Error    string `json:"error"`
}

// call POSTs (or GETs) an admin path and decodes the site's state.
func (i *Injector) call(ctx context.Context, method, url string) (siteState, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		return siteState{}, fmt.Errorf("%s %s: %w", method, url, err)
	}
	req.Header.Set("User-Agent", "mailchaos")
	if method != http.MethodGet {
		// The admin API refuses writes of any other type.
		req.Header.Set("Content-Type", "application/json")
	}
	httpguard.SetAuth(req, i.token)
	resp, err := i.client.Do(req)
	if err != nil {
		return siteState{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return siteState{}, err
	}
	var st siteState
	if err := json.NewDecoder(bytes.NewReader(body)).Decode(&st); err != nil {
		return siteState{}, fmt.Errorf("%s %s: HTTP %d: %s", method, url, resp.StatusCode, bytes.TrimSpace(body))
	}
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("%s %s: HTTP %d: %s", method, url, resp.StatusCode, st.Error)
	}
	return st, nil
}

// dataSite is the handle's data key of the site's admin URL.
const dataSite = "site-url"

// Inject drains the site; it answers once the site's sessions are gone (or
// ctx ends, the drain carrying on). The site is restored at the TTL if
// Remove never comes.
func (i *Injector) Inject(ctx context.Context, req faults.Request) (faults.Handle, error) {
	base, site, err := check(req)
	if err != nil {
		return faults.Handle{}, err
	}
	if base == "" {
		return faults.Handle{}, fmt.Errorf("%s: the target's admin endpoint has no address", Name)
	}
	if req.TTL <= 0 {
		return faults.Handle{}, fmt.Errorf("%s: request %s has no TTL", Name, req.ID)
	}
	now := time.Now()
	h := faults.Handle{ID: req.ID, Fault: Name, Owner: req.Owner, Injected: now, Expires: now.Add(req.TTL),
		Data: map[string]string{dataSite: base + "/api/sites/" + site,
			// Anyone who removes the fault in this plugin's place
			// (its host, recover) restores the site with it.
			faults.DataUndoPost: base + "/api/sites/" + site + "/restore"}}
	key := req.Owner + "/" + req.ID
	i.mu.Lock()
	i.timers[key] = time.AfterFunc(req.TTL, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = i.Remove(ctx, h)
	})
	i.mu.Unlock()
	if _, err := i.call(ctx, http.MethodPost, h.Data[dataSite]+"/drain"); err != nil {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		return faults.Handle{}, errors.Join(fmt.Errorf("%s: drain %s: %w", Name, site, err), i.Remove(rctx, h))
	}
	return h, nil
}

// Remove restores the site; restoring a site that is not drained is not an
// error.
func (i *Injector) Remove(ctx context.Context, h faults.Handle) error {
	if h.Data[dataSite] == "" {
		return fmt.Errorf("%s: handle %s names no site to restore", Name, h.ID)
	}
	i.mu.Lock()
	if t, ok := i.timers[h.Owner+"/"+h.ID]; ok {
		t.Stop()
		delete(i.timers, h.Owner+"/"+h.ID)
	}
	i.mu.Unlock()
	if _, err := i.call(ctx, http.MethodPost, h.Data[dataSite]+"/restore"); err != nil {
		return fmt.Errorf("%s: restore: %w", Name, err)
	}
	return nil
}

// Status says whether the site is still drained.
func (i *Injector) Status(ctx context.Context, h faults.Handle) (faults.Status, error) {
	if h.Data[dataSite] == "" {
		return faults.Status{}, fmt.Errorf("%s: handle %s names no site", Name, h.ID)
	}
	st, err := i.call(ctx, http.MethodGet, h.Data[dataSite])
	if err != nil {
		return faults.Status{}, err
	}
	return faults.Status{Active: st.Draining}, nil
}
