package network

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// ProbePrefix starts the name of the scratch proxy [Client.ProbeToxics]
// makes: a server that keeps its links across restarts leaves such
// proxies out.
const ProbePrefix = "mailchaos-probe-"

// probeUpstream is where the scratch proxy forwards: a loopback address
// that nothing connects through (the proxy carries no traffic).
const probeUpstream = "127.0.0.1:9"

// IsInvalidToxicType reports whether err is the server's answer to a toxic
// type it does not have (HTTP 400: invalid toxic type), as stock toxiproxy
// answers for mailchaos' own types.
func IsInvalidToxicType(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Status == http.StatusBadRequest && strings.Contains(ae.Msg, "invalid toxic type")
}

// ProbeToxics finds out which of types the server can add: on a scratch
// proxy of its own (uniquely named, for 127.0.0.1:0, forwarding to a
// loopback address, disabled: it carries no traffic) it adds one toxic of each
// type with its default attributes and removes it, then deletes the proxy,
// whatever happened (on a context of its own if ctx has ended). It returns
// whether each type was accepted; an answer other than "invalid toxic
// type" is an error.
func (c *Client) ProbeToxics(ctx context.Context, types []string) (map[string]bool, error) {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("probe toxic types: %w", err)
	}
	name := ProbePrefix + hex.EncodeToString(b[:])
	// Created under a call that ctx does not cut short, so that a proxy the
	// server made is always known to be there and deleted below. It is
	// created disabled: it opens no listener, and deleting it changes no
	// state that a listing of the server's proxies reads at the same time
	// (toxiproxy reads a proxy's enabled flag unlocked when it lists them).
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), CallTimeout)
	err := c.do(cctx, http.MethodPost, "/proxies",
		Proxy{Name: name, Listen: "127.0.0.1:0", Upstream: probeUpstream, Enabled: false}, nil)
	cancel()
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), CallTimeout)
		defer cancel()
		_ = c.DeleteProxy(dctx, name)
	}()
	if err != nil {
		return nil, fmt.Errorf("probe toxic types: create a scratch proxy: %w", err)
	}
	out := map[string]bool{}
	for _, typ := range types {
		t := Toxic{Name: "probe", Type: typ, Stream: Downstream, Attributes: probeAttributes(typ)}
		err := c.AddToxic(ctx, name, t)
		switch {
		case IsInvalidToxicType(err):
			out[typ] = false
			continue
		case err != nil:
			return nil, fmt.Errorf("probe toxic type %s: %w", typ, err)
		}
		out[typ] = true
		if err := c.RemoveToxic(ctx, name, t.Name); err != nil {
			return nil, fmt.Errorf("probe toxic type %s: remove it: %w", typ, err)
		}
	}
	return out, nil
}

// probeAttributes are what a toxic of typ needs to be accepted at all: a
// divert toxic names the upstream it restores.
func probeAttributes(typ string) map[string]any {
	if typ == ToxicDivert {
		return map[string]any{"restore": probeUpstream}
	}
	return nil
}
