package faults

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
)

// TypeAddress is a network address a fault or probe reaches: a name in the
// target's endpoints, a host:port, or an http(s) URL. Every such value
// passes the loopback guard ([CheckAddress]) before anything is sent.
const TypeAddress Type = "address"

// endpointName is what an endpoint's name looks like.
var endpointName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// IsLoopback reports whether host (a name or an IP, with or without
// brackets) is this machine's loopback: localhost, 127.0.0.0/8 or ::1.
func IsLoopback(host string) bool {
	host = strings.Trim(host, "[]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// RemoteError is an address off loopback that the guard refused.
type RemoteError struct {
	// Addr is the address as given.
	Addr string
}

func (e *RemoteError) Error() string {
	return fmt.Sprintf("%s is not a loopback address; mailchaos only touches remote hosts when the target says allow-remote: true and the command line says --allow-remote", e.Addr)
}

// SplitAddress splits a host:port strictly: the port is a number from 0 to
// 65535 and the host holds none of the characters that would make a URL
// built from it mean another host ("localhost:@evil.example" is no
// address).
func SplitAddress(value string) (host, port string, ok bool) {
	h, p, err := net.SplitHostPort(value)
	if err != nil || p == "" || h == "" || strings.ContainsAny(h, " /@?#%\\") {
		return "", "", false
	}
	if _, err := strconv.ParseUint(p, 10, 16); err != nil {
		return "", "", false
	}
	return h, p, true
}

// AddressHost returns the host of an address value: a host:port or a URL.
// ok is false for anything else (an endpoint's name, or nonsense).
func AddressHost(value string) (host string, ok bool) {
	if strings.Contains(value, "://") {
		u, err := url.Parse(value)
		if err != nil || u.Hostname() == "" || u.User != nil || (u.Scheme != "http" && u.Scheme != "https") {
			return "", false
		}
		if p := u.Port(); p != "" {
			if _, err := strconv.ParseUint(p, 10, 16); err != nil {
				return "", false
			}
		}
		return u.Hostname(), true
	}
	h, _, ok := SplitAddress(value)
	return h, ok
}

// HTTPBase is the http:// URL of a host:port address, built so that it
// names that host and nothing else.
func HTTPBase(addr string) (string, error) {
	h, p, ok := SplitAddress(addr)
	if !ok {
		return "", fmt.Errorf("%q is not a host:port address", addr)
	}
	return (&url.URL{Scheme: "http", Host: net.JoinHostPort(h, p)}).String(), nil
}

// CheckAddress is the loopback guard, the one place that decides whether
// mailchaos may reach an address: value is a name in endpoints (the
// target's own endpoints passed the guard when the target was read), a
// host:port or an http(s) URL. An address off loopback is a *RemoteError
// unless allowRemote.
func CheckAddress(value string, endpoints map[string]string, allowRemote bool) error {
	if _, ok := endpoints[value]; ok {
		return nil
	}
	host, ok := AddressHost(value)
	if !ok {
		return fmt.Errorf("%q is not an endpoint of the target, a host:port or an http(s) URL", value)
	}
	if !allowRemote && !IsLoopback(host) {
		return &RemoteError{Addr: value}
	}
	return nil
}

// checkAddressFormat is the schema check of a TypeAddress value: an
// endpoint's name, a host:port or an http(s) URL (the guard itself needs
// the target, see [CheckAddress]).
func checkAddressFormat(v string) error {
	if endpointName.MatchString(v) && !strings.Contains(v, ":") {
		return nil
	}
	if _, ok := AddressHost(v); ok {
		return nil
	}
	return fmt.Errorf("not an endpoint name, a host:port or an http(s) URL")
}

// CheckAddresses runs the loopback guard over every TypeAddress parameter
// of spec in params (defaults included) against target, and returns a
// *ParamError for each address refused.
func CheckAddresses(spec Spec, params Params, target Target, allowRemote bool) []error {
	var errs []error
	for _, p := range spec.Params {
		if p.Type != TypeAddress {
			continue
		}
		v, given := params[p.Name]
		if !given {
			v = p.Default
		}
		if v == "" {
			continue
		}
		if err := CheckAddress(v, target.Endpoints, allowRemote); err != nil {
			errs = append(errs, &ParamError{Fault: spec.Name, Param: p.Name, Value: v, Msg: err.Error()})
		}
	}
	return errs
}
