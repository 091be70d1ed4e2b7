// Package targets describes the systems mailchaos hurts. A target has named
// endpoints (smtp, imap, metrics, av engines) and named links: proxied TCP
// hops that network faults sit on. The embedded reference stack
// ([StartMailstack]) is the default target; an external stack is described
// by a target file ([LoadFile]) whose links are proxies the operator points
// the stack through.
//
// Targets off loopback are refused unless the file says allow-remote: true
// and the caller also allows it (a command-line flag): a guard against
// hurting production by accident.
package targets

import (
	"fmt"
	"net"
	"net/url"
	"sort"
	"strings"

	"github.com/mailchaos/mailchaos/faults"
	"github.com/mailchaos/mailchaos/internal/yamlfile"
)

// File is a target file: an external mail stack described by addresses.
type File struct {
	// Name names the target in reports.
	Name string `yaml:"name"`
	// Toxiproxy is the API of an existing toxiproxy server that owns the
	// links' proxies. Empty means mailchaos runs its own, in-process, and
	// creates the links there.
	Toxiproxy string `yaml:"toxiproxy"`
	// AllowRemote permits addresses off loopback (with the caller's consent
	// too).
	AllowRemote bool `yaml:"allow-remote"`
	// AllowRemoteUnderscore is the same switch spelt allow_remote.
	AllowRemoteUnderscore bool `yaml:"allow_remote"`
	// Endpoints are named addresses (host:port): smtp, imap, metrics, and any
	// av engines.
	Endpoints map[string]string `yaml:"endpoints"`
	// Users are mailbox addresses load may be sent to.
	Users []string `yaml:"users"`
	// Links are the proxied hops.
	Links []FileLink `yaml:"links"`
}

// FileLink is one proxied hop: the stack is pointed at Listen, the proxy
// forwards to Upstream.
type FileLink struct {
	Name     string `yaml:"name"`
	Listen   string `yaml:"listen"`
	Upstream string `yaml:"upstream"`
}

// LoadFile reads and validates a target file. Off-loopback addresses are
// refused unless the file allows them and allowRemote is true.
func LoadFile(path string, allowRemote bool) (File, error) {
	data, err := yamlfile.ReadFile(path)
	if err != nil {
		return File{}, err
	}
	return ParseFile(path, data, allowRemote)
}

// ParseFile is [LoadFile] on bytes already read.
func ParseFile(name string, data []byte, allowRemote bool) (File, error) {
	doc, err := yamlfile.Parse(name, data)
	if err != nil {
		return File{}, err
	}
	var f File
	if err := doc.Decode(&f); err != nil {
		return File{}, err
	}
	f.AllowRemote = f.AllowRemote || f.AllowRemoteUnderscore
	if err := doc.Positioned(f.Validate(allowRemote)); err != nil {
		return File{}, err
	}
	return f, nil
}

// Validate checks the file and returns every problem.
func (f *File) Validate(allowRemote bool) []yamlfile.FieldError {
	var errs []yamlfile.FieldError
	add := func(field, format string, args ...any) {
		errs = append(errs, yamlfile.FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	remoteOK := f.AllowRemote && allowRemote
	check := func(field, addr string) {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			add(field, "%q is not a host:port address", addr)
			return
		}
		if !remoteOK && !IsLoopback(host) {
			add(field, "%s is not a loopback address; mailchaos only touches remote hosts when the target file says allow-remote: true and the command line says --allow-remote", addr)
		}
	}
	if f.Toxiproxy != "" {
		u, err := url.Parse(f.Toxiproxy)
		if err != nil || u.Host == "" {
			add("toxiproxy", "%q is not a URL such as http://127.0.0.1:8474", f.Toxiproxy)
		} else {
			check("toxiproxy", u.Host)
		}
	}
	names := make([]string, 0, len(f.Endpoints))
	for n := range f.Endpoints {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		check("endpoints."+n, f.Endpoints[n])
	}
	seen := map[string]bool{}
	for i, l := range f.Links {
		field := fmt.Sprintf("links[%d]", i)
		switch {
		case l.Name == "":
			add(field+".name", "a link needs a name")
		case strings.ContainsAny(l.Name, "./ "):
			add(field+".name", "%q: a link name cannot contain dots, slashes or spaces", l.Name)
		case seen[l.Name]:
			add(field+".name", "link %q is defined twice", l.Name)
		}
		seen[l.Name] = true
		if l.Listen == "" && f.Toxiproxy == "" {
			add(field+".listen", "required: the address the stack is pointed at")
		} else if l.Listen != "" {
			check(field+".listen", l.Listen)
		}
		if l.Upstream == "" {
			add(field+".upstream", "required: the address the proxy forwards to")
		} else {
			check(field+".upstream", l.Upstream)
		}
	}
	if len(f.Endpoints) == 0 && len(f.Links) == 0 {
		add("endpoints", "a target needs endpoints or links")
	}
	return errs
}

// IsLoopback reports whether host (a name or an IP) is this machine's
// loopback: localhost, 127.0.0.0/8 or ::1.
func IsLoopback(host string) bool {
	host = strings.Trim(host, "[]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Target returns the target as the faults see it, with its links' listen
// addresses as given (see [Open] for the links' proxies).
func (f File) Target() faults.Target {
	t := faults.Target{Endpoints: map[string]string{}, Users: append([]string(nil), f.Users...), Toxiproxy: f.Toxiproxy}
	for k, v := range f.Endpoints {
		t.Endpoints[k] = v
	}
	for _, l := range f.Links {
		t.Links = append(t.Links, faults.Link{Name: l.Name, Listen: l.Listen, Upstream: l.Upstream})
	}
	return t
}
