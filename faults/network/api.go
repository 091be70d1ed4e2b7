package network

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/mailchaos/mailchaos/internal/httpguard"
)

// CallTimeout bounds one control call when the caller's context has no
// earlier deadline: removing a toxic can hang on a busy proxy
// (Shopify/toxiproxy#558).
const CallTimeout = 10 * time.Second

// Proxy is a proxy on a toxiproxy server.
type Proxy struct {
	Name     string  `json:"name"`
	Listen   string  `json:"listen"`
	Upstream string  `json:"upstream"`
	Enabled  bool    `json:"enabled"`
	Toxics   []Toxic `json:"toxics"`
}

// Toxic is a toxic as the toxiproxy API describes it. Stream is upstream
// (client to server bytes) or downstream (server to client bytes).
type Toxic struct {
	Name       string         `json:"name"`
	Type       string         `json:"type"`
	Stream     string         `json:"stream"`
	Toxicity   float32        `json:"toxicity"`
	Attributes map[string]any `json:"attributes"`
}

// Streams.
const (
	Upstream   = "upstream"
	Downstream = "downstream"
)

// APIError is an error answer of the toxiproxy API.
type APIError struct {
	Status int
	Msg    string
}

func (e *APIError) Error() string { return fmt.Sprintf("toxiproxy: HTTP %d: %s", e.Status, e.Msg) }

// IsNotFound reports whether err says the proxy or toxic does not exist.
func IsNotFound(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Status == http.StatusNotFound
}

// Client drives a toxiproxy server over its HTTP API. Safe for concurrent
// use.
type Client struct {
	base  string
	http  *http.Client
	token string
}

// NewClient returns a client for the API at base ("http://host:port" or
// "host:port"). It sends the bearer token in $MAILCHAOS_TOKEN, if set, with
// every request (servers without a token ignore it); see [Client.WithToken].
func NewClient(base string) *Client {
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	return &Client{base: strings.TrimRight(base, "/"), http: &http.Client{CheckRedirect: httpguard.NoRedirects}, token: httpguard.EnvToken(os.Getenv)}
}

// WithToken returns a copy of c that sends token as its bearer token
// instead (none if empty).
func (c *Client) WithToken(token string) *Client {
	cc := *c
	cc.token = token
	return &cc
}

// URL is the API's base URL.
func (c *Client) URL() string { return c.base }

// Proxies lists every proxy with its toxics.
func (c *Client) Proxies(ctx context.Context) (map[string]Proxy, error) {
	var out map[string]Proxy
	return out, c.do(ctx, http.MethodGet, "/proxies", nil, &out)
}

// Proxy returns one proxy.
func (c *Client) Proxy(ctx context.Context, name string) (Proxy, error) {
	var out Proxy
	return out, c.do(ctx, http.MethodGet, "/proxies/"+url.PathEscape(name), nil, &out)
}

// CreateProxy creates an enabled proxy and returns it with its real listen
// address (listen may use port 0).
func (c *Client) CreateProxy(ctx context.Context, name, listen, upstream string) (Proxy, error) {
	var out Proxy
	err := c.do(ctx, http.MethodPost, "/proxies",
		Proxy{Name: name, Listen: listen, Upstream: upstream, Enabled: true}, &out)
	return out, err
}

// SetUpstream points a proxy at another upstream. Toxiproxy restarts the
// proxy to do so: its connections are closed, and its listen address stays.
func (c *Client) SetUpstream(ctx context.Context, name, upstream string) (Proxy, error) {
	var out Proxy
	err := c.do(ctx, http.MethodPost, "/proxies/"+url.PathEscape(name),
		map[string]any{"upstream": upstream, "enabled": true}, &out)
	return out, err
}

// DeleteProxy removes a proxy after removing its toxics (a proxy deleted
// with a stalling toxic attached leaks goroutines). A missing proxy is not
// an error.
func (c *Client) DeleteProxy(ctx context.Context, name string) error {
	p, err := c.Proxy(ctx, name)
	if IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, t := range p.Toxics {
		if err := c.RemoveToxic(ctx, name, t.Name); err != nil {
			return err
		}
	}
	err = c.do(ctx, http.MethodDelete, "/proxies/"+url.PathEscape(name), nil, nil)
	if IsNotFound(err) {
		return nil
	}
	return err
}

// AddToxic adds t to a proxy. Toxicity 0 is sent as 1 (toxiproxy would
// never fire a toxic with toxicity 0). Toxiproxy ignores attributes its
// toxic type does not have; AddToxic does not: a misspelt attribute would
// silently leave the toxic at its default, so the toxic is removed again
// and the error names the attribute.
func (c *Client) AddToxic(ctx context.Context, proxy string, t Toxic) error {
	if t.Toxicity == 0 {
		t.Toxicity = 1
	}
	if t.Attributes == nil {
		t.Attributes = map[string]any{}
	}
	var got Toxic
	if err := c.do(ctx, http.MethodPost, "/proxies/"+url.PathEscape(proxy)+"/toxics", t, &got); err != nil {
		return err
	}
	var unknown []string
	for k := range t.Attributes {
		if _, ok := got.Attributes[k]; !ok {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	sort.Strings(unknown)
	known := make([]string, 0, len(got.Attributes))
	for k := range got.Attributes {
		known = append(known, k)
	}
	sort.Strings(known)
	err := fmt.Errorf("toxic type %s has no attribute %s (it has: %s)", t.Type, strings.Join(unknown, ", "), strings.Join(known, ", "))
	if rerr := c.RemoveToxic(context.WithoutCancel(ctx), proxy, t.Name); rerr != nil {
		return errors.Join(err, rerr)
	}
	return err
}

// RemoveToxic removes a toxic. A missing toxic or proxy is not an error:
// removal is idempotent.
func (c *Client) RemoveToxic(ctx context.Context, proxy, name string) error {
	err := c.do(ctx, http.MethodDelete, "/proxies/"+url.PathEscape(proxy)+"/toxics/"+url.PathEscape(name), nil, nil)
	if IsNotFound(err) {
		return nil
	}
	return err
}

// Toxics lists a proxy's toxics.
func (c *Client) Toxics(ctx context.Context, proxy string) ([]Toxic, error) {
	var out []Toxic
	return out, c.do(ctx, http.MethodGet, "/proxies/"+url.PathEscape(proxy)+"/toxics", nil, &out)
}

// Ping checks that the API answers.
func (c *Client) Ping(ctx context.Context) error {
	return c.do(ctx, http.MethodGet, "/version", nil, nil)
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, CallTimeout)
		defer cancel()
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("toxiproxy %s %s: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return fmt.Errorf("toxiproxy %s %s: %w", method, path, err)
	}
	req.Header.Set("User-Agent", "mailchaos")
	if in != nil || method != http.MethodGet {
		// The API refuses writes of any other type (internal/httpguard).
		req.Header.Set("Content-Type", "application/json")
	}
	httpguard.SetAuth(req, c.token)
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("toxiproxy %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("toxiproxy %s %s: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(data, &e)
		if e.Error == "" {
			e.Error = strings.TrimSpace(string(data))
		}
		return fmt.Errorf("toxiproxy %s %s: %w", method, path, &APIError{Status: resp.StatusCode, Msg: e.Error})
	}
	if out != nil && len(data) > 0 && method != http.MethodDelete {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("toxiproxy %s %s: decode: %w", method, path, err)
		}
	}
	return nil
}
