package mailstack

import (
	"fmt"
	"net"
	"net/mail"
	"strings"
	"time"

	"github.com/mailchaos/mailchaos/targets/mailstack/access"
)

// Profile names. A profile is a named set of defaults for the policy knobs
// of the two incidents (scanning, and the access tier's health checking);
// any field of a configuration file still overrides it.
const (
	// ProfileRemediated is the default: the settings that fixed the
	// incidents. Scanning: short scan timeout, one retry, deferral with
	// exponential back-off, interceptor available. Access: deep health
	// checks and passive outlier ejection.
	ProfileRemediated = "remediated"
	// ProfileIncident has the settings the incidents had. Scanning: a long
	// scan timeout, many retries and no deferral, so that slow scans hold
	// the scanning capacity while clean mail queues behind them. Access:
	// shallow (TCP connect) health checks and no outlier ejection, so a site
	// behind a gray network failure keeps receiving sessions.
	ProfileIncident = "incident"
)

// Profiles lists the valid profile names, default first.
func Profiles() []string { return []string{ProfileRemediated, ProfileIncident} }

// What happens to a message that cannot be scanned after every retry and
// deferral allowed by the policy.
const (
	// UnscannableQuarantine sends it to the quarantine mailbox (fail closed).
	UnscannableQuarantine = "quarantine"
	// UnscannableBounce returns it to its sender with a delivery status
	// notification (delivered to the sender's INBOX when the sender is a
	// local user).
	UnscannableBounce = "bounce"
)

// Config configures a [Stack]. The zero value is not useful: start from
// [DefaultConfig] or [ProfileConfig], or load a file with [LoadConfig].
// Durations in files are Go duration strings ("500ms", "30s").
type Config struct {
	// Profile names the scanning-policy profile the file starts from
	// (remediated or incident). It is informative once the Config is built.
	Profile string `yaml:"profile" json:"profile"`
	// Hostname is the name the SMTP server greets with and writes in
	// Received headers. Default "mx.example.test".
	Hostname string `yaml:"hostname" json:"hostname"`
	// Domains the stack accepts mail for. Default ["example.test"].
	Domains []string `yaml:"domains" json:"domains"`
	// Users are the mailboxes. Default alice@example.test and
	// bob@example.test, password "password" for both.
	Users []User `yaml:"users" json:"users"`
	// SMTP configures the ingress.
	SMTP SMTPConfig `yaml:"smtp" json:"smtp"`
	// IMAP configures mailbox access.
	IMAP IMAPConfig `yaml:"imap" json:"imap"`
	// Access is the access tier: the IMAP sites and the balancer in front
	// of them (the balancer listens on imap.listen). Default: three sites
	// with the profile's health checking.
	Access access.Config `yaml:"access" json:"access"`
	// Metrics configures the HTTP endpoint that serves /metrics and
	// /api/messages.
	Metrics MetricsConfig `yaml:"metrics" json:"metrics"`
	// Engines are the anti-virus engines every message is scanned by.
	// Default: three bundled engines av-engine-1..3.
	Engines []EngineConfig `yaml:"engines" json:"engines"`
	// Scan is the scanning policy.
	Scan ScanConfig `yaml:"scan" json:"scan"`
	// Quarantine is the mailbox that receives quarantined messages; it is an
	// ordinary IMAP account, so quarantined mail can be inspected with any
	// IMAP client.
	Quarantine User `yaml:"quarantine" json:"quarantine"`
	// Spool is the directory where the stack writes the messages it still
	// holds when it stops (accepted, not yet delivered, quarantined or
	// bounced) and takes them back from at the next start. It must not be
	// a symlink or writable by group or others; it is created (0700) when
	// missing. Empty means no spool: such messages are lost, and counted.
	Spool string `yaml:"spool" json:"spool"`
}

// User is one mailbox account.
type User struct {
	// Address is the full e-mail address, also the IMAP login name.
	Address string `yaml:"address" json:"address"`
	// Password is the IMAP password.
	Password string `yaml:"password" json:"password"`
}

// SMTPConfig configures the SMTP ingress.
type SMTPConfig struct {
	// Listen is the address to listen on. Default 127.0.0.1:2525.
	Listen string `yaml:"listen" json:"listen"`
	// MaxMessageBytes is the size limit; larger messages get 552.
	// Default 10 MiB.
	MaxMessageBytes int64 `yaml:"max-message-bytes" json:"max-message-bytes"`
	// MaxRecipients per message. Default 100.
	MaxRecipients int `yaml:"max-recipients" json:"max-recipients"`
	// Timeout is the read and write timeout of a session. Default 5m.
	Timeout time.Duration `yaml:"timeout" json:"timeout"`
	// MaxConnections caps the open connections of the listener; one more
	// is answered "421 4.7.0 too many connections" and closed. Default
	// 1000 (0 means the default).
	MaxConnections int `yaml:"max-connections" json:"max-connections"`
}

// IMAPConfig configures mailbox access.
type IMAPConfig struct {
	// Listen is the address users connect to: the access tier's balancer.
	// Default 127.0.0.1:1143.
	Listen string `yaml:"listen" json:"listen"`
}

// MetricsConfig configures the metrics endpoint.
type MetricsConfig struct {
	// Listen is the address to listen on. Default 127.0.0.1:9464.
	Listen string `yaml:"listen" json:"listen"`
}

// EngineConfig describes one anti-virus engine.
type EngineConfig struct {
	// Name identifies the engine in metrics, endpoints and link names.
	// Default av-engine-N.
	Name string `yaml:"name" json:"name"`
	// External means the stack does not serve this engine: Dial must be the
	// address of a running clamd.
	External bool `yaml:"external" json:"external"`
	// Listen is where the stack serves its bundled engine. Default
	// 127.0.0.1:0 (a free port).
	Listen string `yaml:"listen" json:"listen"`
	// Dial is the address the MTA connects to for scans. Empty means the
	// bundled engine's own address; set it to put a proxy in between.
	Dial string `yaml:"dial" json:"dial"`
	// Delay makes the bundled engine wait this long before answering each
	// scan (a slow engine, for tests and demonstrations).
	Delay time.Duration `yaml:"delay" json:"delay"`
	// DelayMatch limits Delay to payloads containing this string
	// (for example the EICAR test string). Empty means every scan.
	DelayMatch string `yaml:"delay-match" json:"delay-match"`
}

// ScanConfig is the scanning policy: the knobs of the AV-engine incident.
type ScanConfig struct {
	// Workers is the size of the scan worker pool: how many messages are
	// scanned at once.
	Workers int `yaml:"workers" json:"workers"`
	// Timeout bounds one scan attempt of one message by one engine.
	Timeout time.Duration `yaml:"timeout" json:"timeout"`
	// Retries is how many more attempts an engine gets after a failed one
	// (a timeout or an error) within one pass over the message.
	Retries int `yaml:"retries" json:"retries"`
	// Defer moves a message that keeps failing out of the worker's hands.
	Defer DeferConfig `yaml:"defer" json:"defer"`
	// Interceptor quarantines known-bad messages before any scan.
	Interceptor InterceptorConfig `yaml:"interceptor" json:"interceptor"`
	// OnUnscannable says what happens to a message that still cannot be
	// scanned once retries and deferrals are spent: quarantine (default) or
	// bounce.
	OnUnscannable string `yaml:"on-unscannable" json:"on-unscannable"`
}

// DeferConfig is the deferral policy.
type DeferConfig struct {
	// Enabled turns deferral on.
	Enabled bool `yaml:"enabled" json:"enabled"`
	// After is K: once a pass over a message has seen K failed scan
	// attempts (summed over engines), the pass stops and the message is
	// deferred at once, freeing its worker.
	After int `yaml:"after" json:"after"`
	// Backoff is the wait before the first retry of a deferred message; it
	// doubles with every further deferral.
	Backoff time.Duration `yaml:"backoff" json:"backoff"`
	// MaxBackoff caps the back-off.
	MaxBackoff time.Duration `yaml:"max-backoff" json:"max-backoff"`
	// MaxDeferrals is how often one message may be deferred before it is
	// treated as unscannable.
	MaxDeferrals int `yaml:"max-deferrals" json:"max-deferrals"`
}

// InterceptorConfig is the pre-scan interceptor.
type InterceptorConfig struct {
	// Block lists content strings; a message containing any of them, in its
	// raw text or in a decoded (base64, quoted-printable) MIME part, is
	// quarantined without being scanned. Empty means the interceptor is off.
	Block []string `yaml:"block" json:"block"`
}

// DefaultConfig returns the configuration of the remediated profile with
// every default filled in.
func DefaultConfig() Config {
	c, _ := ProfileConfig(ProfileRemediated)
	return c
}

// ProfileConfig returns the full default configuration of a profile.
// An unknown name is an error that lists the valid ones.
func ProfileConfig(name string) (Config, error) {
	c := Config{
		Profile:  name,
		Hostname: "mx.example.test",
		Domains:  []string{"example.test"},
		Users: []User{
			{Address: "alice@example.test", Password: "password"},
			{Address: "bob@example.test", Password: "password"},
		},
		SMTP: SMTPConfig{
			Listen:          "127.0.0.1:2525",
			MaxMessageBytes: 10 << 20,
			MaxRecipients:   100,
			Timeout:         5 * time.Minute,
			MaxConnections:  DefaultSMTPMaxConnections,
		},
		IMAP:       IMAPConfig{Listen: "127.0.0.1:1143"},
		Metrics:    MetricsConfig{Listen: "127.0.0.1:9464"},
		Quarantine: User{Address: "quarantine@example.test", Password: "password"},
	}
	for i := 1; i <= 3; i++ {
		c.Engines = append(c.Engines, EngineConfig{})
	}
	switch name {
	case ProfileRemediated:
		c.Access = access.DefaultConfig()
		c.Scan = ScanConfig{
			Workers: 16,
			Timeout: time.Second,
			Retries: 1,
			Defer: DeferConfig{
				Enabled:      true,
				After:        1,
				Backoff:      time.Second,
				MaxBackoff:   30 * time.Second,
				MaxDeferrals: 5,
			},
			OnUnscannable: UnscannableQuarantine,
		}
	case ProfileIncident:
		c.Access = access.IncidentConfig()
		c.Scan = ScanConfig{
			Workers:       16,
			Timeout:       30 * time.Second,
			Retries:       5,
			OnUnscannable: UnscannableQuarantine,
		}
	default:
		return Config{}, fmt.Errorf("unknown profile %q%s", name, suggestion(name, Profiles()))
	}
	c.FillDefaults()
	return c, nil
}

// FillDefaults completes the parts of c that a file may leave out: engine
// and site names and listen addresses.
func (c *Config) FillDefaults() {
	c.Access.FillDefaults()
	for i := range c.Engines {
		e := &c.Engines[i]
		if e.Name == "" {
			e.Name = fmt.Sprintf("av-engine-%d", i+1)
		}
		if e.Listen == "" && !e.External {
			e.Listen = "127.0.0.1:0"
		}
	}
	if c.Scan.OnUnscannable == "" {
		c.Scan.OnUnscannable = UnscannableQuarantine
	}
	if c.SMTP.MaxConnections == 0 {
		c.SMTP.MaxConnections = DefaultSMTPMaxConnections
	}
}

// DefaultSMTPMaxConnections is the default of smtp.max-connections.
const DefaultSMTPMaxConnections = 1000

// Validate checks every field and returns every problem found (nil when the
// configuration is usable).
func (c *Config) Validate() []FieldError {
	var errs []FieldError
	add := func(field, format string, args ...any) {
		errs = append(errs, FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	if _, err := ProfileConfig(c.Profile); c.Profile != "" && err != nil {
		add("profile", "%v", err)
	}
	if c.Hostname == "" {
		add("hostname", "must not be empty")
	}
	if len(c.Domains) == 0 {
		add("domains", "at least one domain is needed")
	}
	domains := map[string]bool{}
	for i, d := range c.Domains {
		if d == "" || strings.ContainsAny(d, "@ \t") {
			add(fmt.Sprintf("domains[%d]", i), "%q is not a domain name", d)
		}
		domains[strings.ToLower(d)] = true
	}
	seen := map[string]bool{}
	checkUser := func(field string, u User) {
		addr, err := mail.ParseAddress(u.Address)
		if err != nil || addr.Address != u.Address {
			add(field+".address", "%q is not a plain e-mail address", u.Address)
			return
		}
		if dom := domainOf(u.Address); !domains[dom] {
			add(field+".address", "domain %q of %s is not in domains %v", dom, u.Address, c.Domains)
		}
		key := strings.ToLower(u.Address)
		if seen[key] {
			add(field+".address", "%s is defined twice", u.Address)
		}
		seen[key] = true
	}
	if len(c.Users) == 0 {
		add("users", "at least one user is needed")
	}
	for i, u := range c.Users {
		checkUser(fmt.Sprintf("users[%d]", i), u)
	}
	checkUser("quarantine", c.Quarantine)
	checkListen := func(field, addr string) {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			add(field, "%q is not a host:port address", addr)
		}
	}
	checkListen("smtp.listen", c.SMTP.Listen)
	checkListen("imap.listen", c.IMAP.Listen)
	checkListen("metrics.listen", c.Metrics.Listen)
	if c.SMTP.MaxMessageBytes <= 0 {
		add("smtp.max-message-bytes", "must be positive, got %d", c.SMTP.MaxMessageBytes)
	}
	if c.SMTP.MaxRecipients <= 0 {
		add("smtp.max-recipients", "must be positive, got %d", c.SMTP.MaxRecipients)
	}
	if c.SMTP.Timeout <= 0 {
		add("smtp.timeout", "must be positive, got %s", c.SMTP.Timeout)
	}
	if c.SMTP.MaxConnections < 0 {
		add("smtp.max-connections", "must be positive, got %d", c.SMTP.MaxConnections)
	}
	if len(c.Engines) == 0 {
		add("engines", "at least one engine is needed")
	}
	names := map[string]bool{}
	for i, e := range c.Engines {
		f := fmt.Sprintf("engines[%d]", i)
		if names[e.Name] {
			add(f+".name", "engine %q is defined twice", e.Name)
		}
		names[e.Name] = true
		if e.External {
			if e.Dial == "" {
				add(f+".dial", "an external engine needs the address of its clamd")
			}
			if e.Delay != 0 || e.DelayMatch != "" {
				add(f+".delay", "delay applies only to bundled engines")
			}
		} else {
			checkListen(f+".listen", e.Listen)
		}
		if e.Dial != "" {
			checkListen(f+".dial", e.Dial)
		}
		if e.Delay < 0 {
			add(f+".delay", "must not be negative, got %s", e.Delay)
		}
	}
	s := c.Scan
	if s.Workers < 1 {
		add("scan.workers", "must be at least 1, got %d", s.Workers)
	}
	if s.Timeout <= 0 {
		add("scan.timeout", "must be positive, got %s", s.Timeout)
	}
	if s.Retries < 0 {
		add("scan.retries", "must not be negative, got %d", s.Retries)
	}
	if s.Defer.Enabled {
		if s.Defer.After < 1 {
			add("scan.defer.after", "must be at least 1, got %d", s.Defer.After)
		}
		if s.Defer.Backoff <= 0 {
			add("scan.defer.backoff", "must be positive, got %s", s.Defer.Backoff)
		}
		if s.Defer.MaxBackoff < s.Defer.Backoff {
			add("scan.defer.max-backoff", "must be at least backoff (%s), got %s", s.Defer.Backoff, s.Defer.MaxBackoff)
		}
		if s.Defer.MaxDeferrals < 1 {
			add("scan.defer.max-deferrals", "must be at least 1, got %d", s.Defer.MaxDeferrals)
		}
	}
	for i, b := range s.Interceptor.Block {
		if b == "" {
			add(fmt.Sprintf("scan.interceptor.block[%d]", i), "must not be empty")
		}
	}
	errs = append(errs, c.validateAccess()...)
	if s.OnUnscannable != UnscannableQuarantine && s.OnUnscannable != UnscannableBounce {
		add("scan.on-unscannable", "%q is not one of quarantine, bounce%s",
			s.OnUnscannable, suggestion(s.OnUnscannable, []string{UnscannableQuarantine, UnscannableBounce}))
	}
	return errs
}

// domainOf returns the lower-cased domain part of an address.
func domainOf(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return strings.ToLower(addr[i+1:])
	}
	return ""
}

// validateAccess checks the access tier, and that its link names do not
// clash with the engines' and that its probe account is a configured one.
func (c *Config) validateAccess() []FieldError {
	var errs []FieldError
	for _, fe := range c.Access.Validate() {
		errs = append(errs, FieldError{Field: "access." + fe.Field, Msg: fe.Msg})
	}
	engines := map[string]bool{}
	for _, e := range c.Engines {
		engines[e.Name] = true
	}
	for i, s := range c.Access.Sites {
		if engines[s.Link()] {
			errs = append(errs, FieldError{Field: fmt.Sprintf("access.sites[%d].name", i),
				Msg: fmt.Sprintf("the link of site %q, %s, has the name of an engine", s.Name, s.Link())})
		}
	}
	if l := c.Access.Health.Login; l != nil && l.Address != "" {
		found := false
		for _, u := range append([]User{c.Quarantine}, c.Users...) {
			if strings.EqualFold(u.Address, l.Address) {
				found = true
				if u.Password != l.Password {
					errs = append(errs, FieldError{Field: "access.health.login.password",
						Msg: fmt.Sprintf("is not the password of %s: every deep check would fail", l.Address)})
				}
			}
		}
		if !found {
			errs = append(errs, FieldError{Field: "access.health.login.address",
				Msg: fmt.Sprintf("%s is not one of the users", l.Address)})
		}
	}
	return errs
}

// LinkNames lists the names of the internal links a stack with this
// configuration has, in the order of [Stack.Links]: each engine's, then
// each access site's (imap-<site>).
func (c *Config) LinkNames() []string {
	var names []string
	for _, e := range c.Engines {
		names = append(names, e.Name)
	}
	for _, s := range c.Access.Sites {
		names = append(names, s.Link())
	}
	return names
}
