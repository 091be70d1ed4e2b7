// Package targets describes the systems mailchaos hurts. A target has named
// endpoints (smtp, imap, metrics, av engines) and named links: proxied TCP
// hops that network faults sit on. The embedded reference stack
// ([StartMailstack]) is the default target; an external stack is described
// by a target file ([LoadFile]) whose links are proxies the operator points
// the stack through ([Open]). A [Spec] is either before it starts: what
// validation checks experiments and faults against ([Spec.Describe]), and
// what a run or an injection starts ([Spec.Start]).
//
// Targets off loopback are refused unless the file says allow-remote: true
// and the caller also allows it (a command-line flag): a guard against
// hurting production by accident.
package targets

import (
	"encoding/json"
	"fmt"
	"net/mail"
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
	// Users are the target's mailboxes: where load and canaries may be
	// sent, and the accounts probes and log-in load read them with.
	Users []FileUser `yaml:"users"`
	// Links are the proxied hops.
	Links []FileLink `yaml:"links"`
	// Quarantine is the mailbox, in each user's account, where the stack
	// files the mail it quarantines (a Junk or Quarantine folder), if it
	// keeps any: accounting counts a message found there as quarantined,
	// not lost. Empty: the stack quarantines nothing a user can read.
	Quarantine string `yaml:"quarantine"`
}

// FileUser is one of a target's users. A file gives either its address
// alone (alice@example.test: it logs in by that address with the default
// password), or a mapping with the address and how it logs in:
//
//	users:
//	  - alice@example.test
//	  - {address: tester@realstack.test, login: tester, password: tester-pass}
type FileUser struct {
	// Address is the mailbox's e-mail address.
	Address string `yaml:"address" json:"address" jsonschema:"required" doc:"the mailbox's e-mail address"`
	// Login is the IMAP log-in name; "" means the address.
	Login string `yaml:"login" json:"login,omitempty" doc:"the IMAP log-in name (default: the address)"`
	// Password is the log-in password; "" means faults.DefaultPassword. It
	// is not written to JSON (run journals).
	Password string `yaml:"password" json:"-" doc:"the log-in password (default: password)"`
}

// UnmarshalText reads the short form: an address alone.
func (u *FileUser) UnmarshalText(b []byte) error {
	*u = FileUser{Address: string(b)}
	return nil
}

// UnmarshalJSON reads either form: a string (the address) or an object.
func (u *FileUser) UnmarshalJSON(b []byte) error {
	var addr string
	if err := json.Unmarshal(b, &addr); err == nil {
		*u = FileUser{Address: addr}
		return nil
	}
	type long FileUser // without the methods, so that this is not called again
	var l long
	if err := json.Unmarshal(b, &l); err != nil {
		return fmt.Errorf("a user is an address or an object with address, login and password: %w", err)
	}
	*u = FileUser(l)
	return nil
}

// User returns u as the faults see it.
func (u FileUser) User() faults.User {
	return faults.User{Address: u.Address, Login: u.Login, Password: u.Password}
}

// validate checks u, the users[i] entry of a file.
func (u FileUser) validate(field string) []yamlfile.FieldError {
	var errs []yamlfile.FieldError
	if parsed, err := mail.ParseAddress(u.Address); u.Address == "" {
		errs = append(errs, yamlfile.FieldError{Field: field + ".address", Msg: "required: the user's e-mail address"})
	} else if err != nil || parsed.Address != u.Address {
		errs = append(errs, yamlfile.FieldError{Field: field + ".address",
			Msg: fmt.Sprintf("%q is not a plain e-mail address such as alice@example.test", u.Address)})
	}
	if strings.ContainsFunc(u.Login, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		errs = append(errs, yamlfile.FieldError{Field: field + ".login",
			Msg: fmt.Sprintf("%q is not a log-in name: no spaces or control characters", u.Login)})
	}
	return errs
}

// FileLink is one proxied hop: the stack is pointed at Listen, the proxy
// forwards to Upstream.
type FileLink struct {
	Name     string `yaml:"name"`
	Listen   string `yaml:"listen"`
	Upstream string `yaml:"upstream"`
	// Toxiproxy is the API of the toxiproxy server that owns this link's
	// proxy, when it is another than the file's: one target's links may
	// live on many hosts, each with its own `mailchaos proxy serve`.
	Toxiproxy string `yaml:"toxiproxy"`
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
		host, _, ok := faults.SplitAddress(addr)
		if !ok {
			add(field, "%q is not a host:port address (a port from 0 to 65535)", addr)
			return
		}
		if !remoteOK && !faults.IsLoopback(host) {
			add(field, "%v", &faults.RemoteError{Addr: addr})
		}
	}
	checkURL := func(field, raw string) {
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
			add(field, "%q is not a URL such as http://127.0.0.1:8474", raw)
		} else {
			check(field, u.Host)
		}
	}
	if f.Toxiproxy != "" {
		checkURL("toxiproxy", f.Toxiproxy)
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
		if l.Toxiproxy != "" {
			checkURL(field+".toxiproxy", l.Toxiproxy)
		}
		if l.Listen == "" && f.Toxiproxy == "" && l.Toxiproxy == "" {
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
	users := map[string]bool{}
	for i, u := range f.Users {
		field := fmt.Sprintf("users[%d]", i)
		errs = append(errs, u.validate(field)...)
		if key := strings.ToLower(u.Address); key != "" && users[key] {
			add(field+".address", "user %s is listed twice", u.Address)
		}
		users[strings.ToLower(u.Address)] = true
	}
	if strings.ContainsFunc(f.Quarantine, func(r rune) bool { return r < ' ' || r == 0x7f }) || strings.EqualFold(f.Quarantine, "INBOX") {
		add("quarantine", "%q is not a mailbox name other than INBOX, such as Quarantine or Junk", f.Quarantine)
	}
	if len(f.Endpoints) == 0 && len(f.Links) == 0 {
		add("endpoints", "a target needs endpoints or links")
	}
	return errs
}

// IsLoopback reports whether host (a name or an IP) is this machine's
// loopback: localhost, 127.0.0.0/8 or ::1. It is [faults.IsLoopback], the
// one guard.
func IsLoopback(host string) bool { return faults.IsLoopback(host) }

// Target returns the target as the faults see it, with its links' listen
// addresses as given (see [Open] for the links' proxies).
func (f File) Target() faults.Target {
	t := faults.Target{Endpoints: map[string]string{}, Toxiproxy: f.Toxiproxy}
	for _, u := range f.Users {
		t.Users = append(t.Users, u.User())
	}
	for k, v := range f.Endpoints {
		t.Endpoints[k] = v
	}
	for _, l := range f.Links {
		t.Links = append(t.Links, faults.Link{Name: l.Name, Listen: l.Listen, Upstream: l.Upstream, Toxiproxy: l.Toxiproxy})
	}
	return t
}
