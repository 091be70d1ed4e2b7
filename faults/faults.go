package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Injector is one family of faults. Implementations must be safe for
// concurrent use. Every method honours ctx's deadline.
type Injector interface {
	// Describe returns the injector's name, summary and parameter schema.
	Describe(ctx context.Context) (Spec, error)
	// Validate checks a request without touching the target. Errors name
	// the parameter ([*ParamError]).
	Validate(ctx context.Context, req Request) error
	// Inject starts the fault and returns the handle that removes it. The
	// fault must end by itself once req.TTL has passed, even if Remove is
	// never called.
	Inject(ctx context.Context, req Request) (Handle, error)
	// Remove ends the fault. It is idempotent: removing a fault that is
	// already gone, or whose link no longer exists, is not an error.
	Remove(ctx context.Context, h Handle) error
	// Status reports on an injected fault: whether it is still active and
	// any figures it keeps (a load generator's counts and latencies).
	Status(ctx context.Context, h Handle) (Status, error)
}

// Request asks for one fault.
type Request struct {
	// ID identifies this injection; it is unique within a run and is
	// written into whatever the fault leaves on the target (toxic names),
	// so a crashed run's faults can be found and removed.
	ID string
	// Owner names who injected the fault (a run ID, "inject", a plugin).
	Owner string
	// Fault is the injector's name.
	Fault string
	// Target is the system under test.
	Target Target
	// Links names the links the fault sits on, for faults that need one.
	Links []string
	// Params are the fault's parameters, as written by the user.
	Params Params
	// Duration is how long the fault is planned to last; 0 means until it
	// is removed. Faults that unfold over time (a load ramp) schedule
	// themselves over it.
	Duration time.Duration
	// TTL bounds the fault's life: the planned duration plus a grace period.
	TTL time.Duration
}

// Target describes the system under test as plain data.
type Target struct {
	// Endpoints are named addresses: smtp, imap, metrics, av engines.
	Endpoints map[string]string
	// Links are the proxied hops faults can sit on.
	Links []Link
	// Users are the target's mailboxes: where load and canaries may be
	// sent, and the accounts probes and log-in load use to read them.
	Users []User
	// Toxiproxy is the base URL of the toxiproxy API that owns the links'
	// proxies (http://127.0.0.1:PORT).
	Toxiproxy string
}

// DefaultPassword is the password of a [User] that gives none: that of
// the embedded stack's users.
const DefaultPassword = "password"

// User is one mailbox of the target and the account that reads it. Only
// Address is required: a user who logs in by its address with the default
// password needs nothing else.
//
// In JSON (journals) a user is {"address", "login"}: the password is left
// out, and a plain string, as older journals have it, is read as an
// address.
type User struct {
	// Address is the mailbox's e-mail address, where mail for it is sent.
	Address string `json:"address"`
	// Login is the name the user logs in with over IMAP (a real server
	// often wants the local part, or a name of its own); "" means Address.
	Login string `json:"login,omitempty"`
	// Password is the log-in password; "" means [DefaultPassword].
	Password string `json:"-"`
}

// UnmarshalJSON reads a user object or, as older journals wrote it, an
// address alone.
func (u *User) UnmarshalJSON(b []byte) error {
	var addr string
	if err := json.Unmarshal(b, &addr); err == nil {
		*u = User{Address: addr}
		return nil
	}
	type plain User
	var p plain
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	*u = User(p)
	return nil
}

// LoginName returns the name u logs in with: Login, else Address.
func (u User) LoginName() string {
	if u.Login != "" {
		return u.Login
	}
	return u.Address
}

// Secret returns u's log-in password: Password, else [DefaultPassword].
func (u User) Secret() string {
	if u.Password != "" {
		return u.Password
	}
	return DefaultPassword
}

// Addresses returns the addresses of t's users, in order.
func (t Target) Addresses() []string {
	out := make([]string, 0, len(t.Users))
	for _, u := range t.Users {
		out = append(out, u.Address)
	}
	return out
}

// User returns the user of t whose address (compared without regard to
// case) is name, else the one whose log-in name is name.
func (t Target) User(name string) (User, bool) {
	for _, u := range t.Users {
		if strings.EqualFold(u.Address, name) {
			return u, true
		}
	}
	for _, u := range t.Users {
		if u.LoginName() == name {
			return u, true
		}
	}
	return User{}, false
}

// Link is a proxied hop: clients connect to Listen, the proxy forwards to
// Upstream. Its proxy on the toxiproxy server has the link's name.
type Link struct {
	Name     string
	Listen   string
	Upstream string
	// Toxiproxy is the API of the toxiproxy server that owns this link's
	// proxy, when it is not the target's ([Target.Toxiproxy]): links may
	// live on many hosts, each with its own server.
	Toxiproxy string
}

// Server returns the API of the toxiproxy server that owns the named link:
// the link's own, else the target's.
func (t Target) Server(link string) string {
	if l, ok := t.Link(link); ok && l.Toxiproxy != "" {
		return l.Toxiproxy
	}
	return t.Toxiproxy
}

// Servers lists the toxiproxy servers of t without repeats: the target's
// first (if any), then those its links name, in order.
func (t Target) Servers() []string {
	var out []string
	seen := map[string]bool{}
	for _, s := range append([]string{t.Toxiproxy}, linkServers(t.Links)...) {
		if s != "" && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

func linkServers(links []Link) []string {
	out := make([]string, 0, len(links))
	for _, l := range links {
		out = append(out, l.Toxiproxy)
	}
	return out
}

// Link returns the named link.
func (t Target) Link(name string) (Link, bool) {
	for _, l := range t.Links {
		if l.Name == name {
			return l, true
		}
	}
	return Link{}, false
}

// LinkNames lists the names of t's links.
func (t Target) LinkNames() []string {
	names := make([]string, len(t.Links))
	for i, l := range t.Links {
		names[i] = l.Name
	}
	return names
}

// Handle is what Inject returns and Remove takes. It is plain data, so it can
// cross a process boundary and be written to a journal, and a later process
// can remove the fault from it.
type Handle struct {
	// ID is the request's ID.
	ID string `json:"id"`
	// Fault is the injector's name.
	Fault string `json:"fault"`
	// Owner is the request's owner.
	Owner string `json:"owner,omitempty"`
	// Toxiproxy is the API the fault's toxics live on, if any: the
	// target's server, or the first of its links'.
	Toxiproxy string `json:"toxiproxy,omitempty"`
	// Servers are the other toxiproxy servers of the target (those its
	// links name), on which the fault may have toxics too; empty when the
	// target has one server.
	Servers []string `json:"servers,omitempty"`
	// Toxics are the toxics the fault added, by proxy.
	Toxics []ToxicRef `json:"toxics,omitempty"`
	// Injected is when the fault started.
	Injected time.Time `json:"injected"`
	// Expires is when the fault ends by itself (Injected + TTL).
	Expires time.Time `json:"expires"`
	// Data is whatever else the injector needs to remove the fault, such
	// as the address it must call.
	Data map[string]string `json:"data,omitempty"`
}

// DataUndoPost is the key in [Handle.Data] of a URL that undoes the fault
// when POSTed an empty JSON object (an HTTP restore, such as an access
// site's). Whoever removes a fault in its injector's place (the plugin host
// for a plugin that died, `mailchaos recover`) calls it, so a fault that
// changed something over HTTP is undone on every exit path.
const DataUndoPost = "undo-post"

// Intent is the handle of req before anything is injected: its ID,
// fault, owner, expiry and every toxiproxy server of its target. It is
// what a journal notes before an injection, and what undoes one cut short
// (every toxic named after the owner and ID, on every server).
func Intent(req Request) Handle {
	h := Handle{ID: req.ID, Fault: req.Fault, Owner: req.Owner}
	if req.TTL > 0 {
		h.Expires = time.Now().Add(req.TTL)
	}
	h.Toxiproxy, h.Servers = splitServers(req.Target.Servers())
	return h
}

// splitServers returns the first server and the others (nil when none).
func splitServers(all []string) (string, []string) {
	if len(all) == 0 {
		return "", nil
	}
	if len(all) == 1 {
		return all[0], nil
	}
	return all[0], all[1:]
}

// ServerOf returns the API of the server that holds ref: its own, else
// h's.
func (h Handle) ServerOf(ref ToxicRef) string {
	if ref.Toxiproxy != "" {
		return ref.Toxiproxy
	}
	return h.Toxiproxy
}

// AllServers lists, without repeats, every toxiproxy server h may have
// toxics on: Toxiproxy, Servers, and the server of each of its toxics.
func (h Handle) AllServers() []string {
	var out []string
	seen := map[string]bool{}
	add := func(s string) {
		if s != "" && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	add(h.Toxiproxy)
	for _, s := range h.Servers {
		add(s)
	}
	for _, t := range h.Toxics {
		add(h.ServerOf(t))
	}
	return out
}

// ToxicRef names one toxic on a toxiproxy server.
type ToxicRef struct {
	Proxy string `json:"proxy"`
	Name  string `json:"name"`
	// Toxiproxy is the API of the server the toxic is on; "" means the
	// handle's ([Handle.Toxiproxy]).
	Toxiproxy string `json:"toxiproxy,omitempty"`
}

// Status is an injected fault's state.
type Status struct {
	// Active is false once the fault has ended (removed or expired).
	Active bool `json:"active"`
	// Figures are named measurements kept by the fault, if any.
	Figures map[string]float64 `json:"figures,omitempty"`
	// Detail is free text (for example a load generator's summary).
	Detail string `json:"detail,omitempty"`
}

// DefaultTTLGrace is how long a fault may outlive its planned end when the
// process that injected it dies: a request's TTL is its duration plus this.
const DefaultTTLGrace = 30 * time.Second

// RollbackError is a fault that could not be removed: it may still be in
// place. Handle says what it was, so the user (or `mailchaos recover`) can
// remove it.
type RollbackError struct {
	Handle Handle
	Err    error
}

func (e *RollbackError) Error() string {
	msg := fmt.Sprintf("fault %s (%s) may still be in place: removing it failed: %v", e.Handle.ID, e.Handle.Fault, e.Err)
	for _, t := range e.Handle.Toxics {
		msg += fmt.Sprintf("\n  remove it with: curl -X DELETE %s/proxies/%s/toxics/%s", e.Handle.ServerOf(t), t.Proxy, t.Name)
	}
	if !e.Handle.Expires.IsZero() {
		msg += fmt.Sprintf("\n  it ends by itself at %s at the latest", e.Handle.Expires.Format(time.RFC3339))
	}
	return msg
}

func (e *RollbackError) Unwrap() error { return e.Err }

// RollbackFailed marks the error for the exit code table (exit 4).
func (e *RollbackError) RollbackFailed() bool { return true }
