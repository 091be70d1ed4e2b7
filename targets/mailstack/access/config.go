package access

import (
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/mailchaos/mailchaos/internal/suggest"
	"github.com/mailchaos/mailchaos/internal/yamlfile"
)

// Placement policies: how the balancer picks a site for a new session.
const (
	// PlacementLeastConnections picks the usable site with the fewest
	// sessions (ties go round-robin).
	PlacementLeastConnections = "least-connections"
	// PlacementRoundRobin takes the usable sites in turn.
	PlacementRoundRobin = "round-robin"
)

// Active health-check modes.
const (
	// HealthNone runs no active checks: every site counts as healthy.
	HealthNone = "none"
	// HealthShallow checks that a TCP connection to the site opens.
	HealthShallow = "shallow"
	// HealthDeep checks the IMAP protocol: the greeting, then NOOP (or LOGIN
	// with the probe account, when one is set) and LOGOUT, all within the
	// check's timeout.
	HealthDeep = "deep"
)

// Placements lists the valid placement policies, default first.
func Placements() []string { return []string{PlacementLeastConnections, PlacementRoundRobin} }

// HealthModes lists the valid active health-check modes.
func HealthModes() []string { return []string{HealthNone, HealthShallow, HealthDeep} }

// LinkPrefix is put before a site's name to name its balancer → site link
// (site-b's link is imap-site-b).
const LinkPrefix = "imap-"

// Config configures the access tier: the sites and the balancer in front of
// them. Start from [DefaultConfig] or [IncidentConfig]; [Config.FillDefaults]
// completes what a file leaves out.
type Config struct {
	// Sites are the IMAP front ends. Default three: site-a, site-b, site-c.
	Sites []SiteConfig `yaml:"sites" json:"sites"`
	// Placement is how a new session's site is chosen: least-connections
	// (default) or round-robin.
	Placement string `yaml:"placement" json:"placement"`
	// ConnectTimeout bounds the balancer's TCP connect to a site; a site
	// that does not accept in time is skipped for that session.
	// Default 2s.
	ConnectTimeout time.Duration `yaml:"connect-timeout" json:"connect-timeout"`
	// DrainGrace is how long the sessions of a site being drained get to
	// end after the site said BYE; the balancer then cuts what is left.
	// Default 5s.
	DrainGrace time.Duration `yaml:"drain-grace" json:"drain-grace"`
	// Health is the balancer's active health checking.
	Health HealthConfig `yaml:"health" json:"health"`
	// Passive is the balancer's outlier ejection, from what users' sessions
	// see.
	Passive PassiveConfig `yaml:"passive" json:"passive"`
	// MaxConnections caps the connections of each listener: the balancer
	// holds at most this many sessions, and each site accepts this many
	// plus a small headroom kept for the balancer's health checks (see
	// [SiteHeadroom]). A connection over the cap is answered
	// "* BYE too many connections" and closed at once; at its cap the
	// balancer first makes room by ending its longest-silent session (one
	// whose client has sent nothing for [SilentAfter]). Default 1000.
	MaxConnections int `yaml:"max-connections" json:"max-connections"`
	// MaxLoginFailures is how many failed LOGIN or AUTHENTICATE commands
	// one connection may make: the last one is answered
	// "* BYE too many failed log-ins" and the connection closed.
	// Default 3.
	MaxLoginFailures int `yaml:"max-login-failures" json:"max-login-failures"`
}

// SiteConfig is one site.
type SiteConfig struct {
	// Name identifies the site in the API, metrics and its link's name
	// (imap-<name>). Default site-a, site-b, ...
	Name string `yaml:"name" json:"name"`
	// Listen is where the site's IMAP front end listens. Default
	// 127.0.0.1:0 (a free port).
	Listen string `yaml:"listen" json:"listen"`
	// Dial is the address the balancer connects to for this site. Empty
	// means the site's own address; set it to put a proxy in between.
	Dial string `yaml:"dial" json:"dial"`
}

// Link returns the name of the balancer → site link.
func (s SiteConfig) Link() string { return LinkPrefix + s.Name }

// HealthConfig is the active health checking: the balancer checks every
// site on its own, through the same address its sessions use.
type HealthConfig struct {
	// Mode is none, shallow (TCP connect) or deep (IMAP greeting plus NOOP,
	// or LOGIN with Login when set).
	Mode string `yaml:"mode" json:"mode"`
	// Interval between two checks of one site. Default 1s.
	Interval time.Duration `yaml:"interval" json:"interval"`
	// Timeout bounds one check. Default 1s.
	Timeout time.Duration `yaml:"timeout" json:"timeout"`
	// HealthyThreshold is how many checks in a row must pass before an
	// unhealthy site takes sessions again. Default 2.
	HealthyThreshold int `yaml:"healthy-threshold" json:"healthy-threshold"`
	// UnhealthyThreshold is how many checks in a row must fail before a
	// healthy site stops taking sessions. Default 2.
	UnhealthyThreshold int `yaml:"unhealthy-threshold" json:"unhealthy-threshold"`
	// Login is the probe account of deep checks: when set, a deep check
	// logs in with it instead of sending NOOP.
	Login *Login `yaml:"login" json:"login,omitempty"`
}

// Login is an IMAP account.
type Login struct {
	// Address is the log-in name.
	Address string `yaml:"address" json:"address"`
	// Password is the account's password.
	Password string `yaml:"password" json:"password"`
}

// PassiveConfig is outlier ejection: the balancer watches the start of every
// session it places and ejects a site whose sessions keep failing or
// stalling, for a back-off period, after which the site is retried.
// While it is on, a session whose site does not greet in time is placed on
// another site without the user noticing more than the delay.
type PassiveConfig struct {
	// Enabled turns outlier ejection on.
	Enabled bool `yaml:"enabled" json:"enabled"`
	// Failures is how many failed sessions in a row eject a site: a failed
	// connect, no greeting within Slow, a reset or close before the
	// greeting or before the reply to the client's first command, or no
	// such reply within Slow. Default 3.
	Failures int `yaml:"failures" json:"failures"`
	// Slow bounds the greeting and the reply to the client's first
	// command. Default 2s.
	Slow time.Duration `yaml:"slow" json:"slow"`
	// Ejection is how long a site is ejected the first time; it doubles
	// with every ejection that follows the site's return without a
	// successful session in between. Default 10s.
	Ejection time.Duration `yaml:"ejection" json:"ejection"`
	// MaxEjection caps the ejection time. Default 1m.
	MaxEjection time.Duration `yaml:"max-ejection" json:"max-ejection"`
}

// DefaultConfig is the access tier of the remediated profile: deep health
// checks and passive outlier ejection, as fixed after the mailbox-access
// incident.
func DefaultConfig() Config {
	c := Config{
		Sites:          make([]SiteConfig, 3),
		Placement:      PlacementLeastConnections,
		ConnectTimeout: 2 * time.Second,
		DrainGrace:     5 * time.Second,
		Health: HealthConfig{
			Mode:               HealthDeep,
			Interval:           time.Second,
			Timeout:            time.Second,
			HealthyThreshold:   2,
			UnhealthyThreshold: 2,
		},
		Passive: PassiveConfig{
			Enabled:     true,
			Failures:    3,
			Slow:        2 * time.Second,
			Ejection:    10 * time.Second,
			MaxEjection: time.Minute,
		},
		MaxConnections:   1000,
		MaxLoginFailures: 3,
	}
	c.FillDefaults()
	return c
}

// IncidentConfig is the access tier as it was during the mailbox-access
// incident: shallow (TCP connect) health checks and no outlier ejection, so
// a site behind a gray network failure keeps receiving sessions.
func IncidentConfig() Config {
	c := DefaultConfig()
	c.Health.Mode = HealthShallow
	c.Passive.Enabled = false
	return c
}

// FillDefaults completes the parts of c that a file may leave out: site
// names and listen addresses.
func (c *Config) FillDefaults() {
	for i := range c.Sites {
		s := &c.Sites[i]
		if s.Name == "" {
			s.Name = defaultSiteName(i)
		}
		if s.Listen == "" {
			s.Listen = "127.0.0.1:0"
		}
	}
}

func defaultSiteName(i int) string {
	if i < 26 {
		return "site-" + string(rune('a'+i))
	}
	return fmt.Sprintf("site-%d", i+1)
}

// Validate checks every field and returns every problem, with field paths
// relative to the access configuration (health.mode, sites[1].name).
func (c *Config) Validate() []yamlfile.FieldError {
	var errs []yamlfile.FieldError
	add := func(field, format string, args ...any) {
		errs = append(errs, yamlfile.FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	positive := func(field string, d time.Duration) {
		if d <= 0 {
			add(field, "must be positive, got %s", d)
		}
	}
	if len(c.Sites) == 0 {
		add("sites", "at least one site is needed")
	}
	names := map[string]bool{}
	for i, s := range c.Sites {
		f := fmt.Sprintf("sites[%d]", i)
		switch {
		case s.Name == "":
			add(f+".name", "a site needs a name")
		case strings.ContainsAny(s.Name, "./ \t:"):
			add(f+".name", "%q: a site name cannot contain dots, slashes, colons or spaces", s.Name)
		case names[s.Name]:
			add(f+".name", "site %q is defined twice", s.Name)
		}
		names[s.Name] = true
		if _, _, err := net.SplitHostPort(s.Listen); err != nil {
			add(f+".listen", "%q is not a host:port address", s.Listen)
		}
		if s.Dial != "" {
			if _, _, err := net.SplitHostPort(s.Dial); err != nil {
				add(f+".dial", "%q is not a host:port address", s.Dial)
			}
		}
	}
	if c.Placement != PlacementLeastConnections && c.Placement != PlacementRoundRobin {
		add("placement", "%q is not one of %s%s", c.Placement, strings.Join(Placements(), ", "),
			suggest.Hint(c.Placement, Placements()))
	}
	if c.MaxConnections < 1 {
		add("max-connections", "must be at least 1, got %d", c.MaxConnections)
	}
	if c.MaxLoginFailures < 1 {
		add("max-login-failures", "must be at least 1, got %d", c.MaxLoginFailures)
	}
	positive("connect-timeout", c.ConnectTimeout)
	positive("drain-grace", c.DrainGrace)
	h := c.Health
	switch h.Mode {
	case HealthNone, HealthShallow, HealthDeep:
	default:
		add("health.mode", "%q is not one of %s%s", h.Mode, strings.Join(HealthModes(), ", "),
			suggest.Hint(h.Mode, HealthModes()))
	}
	if h.Mode != HealthNone {
		positive("health.interval", h.Interval)
		positive("health.timeout", h.Timeout)
		if h.HealthyThreshold < 1 {
			add("health.healthy-threshold", "must be at least 1, got %d", h.HealthyThreshold)
		}
		if h.UnhealthyThreshold < 1 {
			add("health.unhealthy-threshold", "must be at least 1, got %d", h.UnhealthyThreshold)
		}
	}
	if h.Login != nil {
		if h.Mode != HealthDeep {
			add("health.login", "a probe account is used by deep checks only; health.mode is %q", h.Mode)
		}
		if h.Login.Address == "" {
			add("health.login.address", "the probe account needs an address")
		}
	}
	p := c.Passive
	if p.Enabled {
		if p.Failures < 1 {
			add("passive.failures", "must be at least 1, got %d", p.Failures)
		}
		positive("passive.slow", p.Slow)
		positive("passive.ejection", p.Ejection)
		if p.MaxEjection < p.Ejection {
			add("passive.max-ejection", "must be at least ejection (%s), got %s", p.Ejection, p.MaxEjection)
		}
	}
	return errs
}
