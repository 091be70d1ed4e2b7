package proxy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"

	"github.com/mailchaos/mailchaos/internal/httpguard"
)

// maxProxyBody bounds the body of a proxy write that loopbackProxies reads.
const maxProxyBody = 1 << 20

// loopbackProxies refuses, with 403, API writes that would make a proxy
// listen off loopback: POST /proxies and POST /populate with a listen
// address whose host is not loopback (an empty address means every
// interface), and POST or PATCH /proxies/NAME that set one. It reads such a
// body (at most maxProxyBody, 413 beyond), decodes it as toxiproxy does and
// hands it on unchanged; every other request passes untouched.
func loopbackProxies(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		kind := proxyWrite(r)
		if kind == "" {
			next.ServeHTTP(w, r)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxProxyBody))
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				httpguard.Error(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body larger than %d bytes", maxProxyBody))
				return
			}
			httpguard.Error(w, http.StatusBadRequest, "read request body: "+err.Error())
			return
		}
		if err := checkProxyListens(kind, body); err != nil {
			code := http.StatusForbidden
			var se *json.SyntaxError
			var te *json.UnmarshalTypeError
			if errors.As(err, &se) || errors.As(err, &te) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				code = http.StatusBadRequest
			}
			httpguard.Error(w, code, err.Error())
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		next.ServeHTTP(w, r)
	})
}

// Kinds of proxy writes.
const (
	writeCreate   = "create"
	writeUpdate   = "update"
	writePopulate = "populate"
)

// proxyWrite says which proxy write r is, or "" for any other request.
func proxyWrite(r *http.Request) string {
	if r.Method != http.MethodPost && r.Method != http.MethodPatch && r.Method != http.MethodPut {
		return ""
	}
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	switch {
	case parts[0] == "populate":
		return writePopulate
	case parts[0] == "proxies" && len(parts) == 1:
		return writeCreate
	case parts[0] == "proxies" && len(parts) == 2:
		return writeUpdate
	}
	return ""
}

// checkProxyListens checks the listen addresses in a proxy write's body.
// It decodes with encoding/json like toxiproxy (first value, keys matched
// without regard to case, the last duplicate winning), so both read the
// same address.
func checkProxyListens(kind string, body []byte) error {
	type proxyListen struct {
		Name   string  `json:"name"`
		Listen *string `json:"listen"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	switch kind {
	case writePopulate:
		var list []proxyListen
		if err := dec.Decode(&list); err != nil {
			return fmt.Errorf("populate: decode body: %w", err)
		}
		for _, p := range list {
			if err := loopbackListen(p.Name, p.Listen, true); err != nil {
				return err
			}
		}
	default:
		var p proxyListen
		if err := dec.Decode(&p); err != nil {
			return fmt.Errorf("proxy: decode body: %w", err)
		}
		// An update without a listen address keeps the proxy's.
		return loopbackListen(p.Name, p.Listen, kind == writeCreate)
	}
	return nil
}

// loopbackListen refuses a listen address off loopback. A missing address
// counts as empty (every interface) when required, as toxiproxy creates
// such a proxy on all interfaces.
func loopbackListen(name string, listen *string, required bool) error {
	if listen == nil {
		if !required {
			return nil
		}
		listen = new(string)
	}
	host, _, err := net.SplitHostPort(*listen)
	if err == nil && host != "" && httpguard.IsLoopback(host) {
		return nil
	}
	return fmt.Errorf("proxy %q: listen address %q is not on loopback; start the server with --allow-remote to publish proxies to the network", name, *listen)
}
