package targets

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"slices"

	"github.com/mailchaos/mailchaos/faults"
	"github.com/mailchaos/mailchaos/targets/mailstack"
)

// DefaultProfile is the embedded stack's profile when none is named.
const DefaultProfile = mailstack.ProfileRemediated

// inProcessListen is where the toxiproxy servers mailchaos runs for a
// target listen: a free loopback port, chosen when the server starts.
const inProcessListen = "127.0.0.1:0"

// inProcessURL is the API of such a server before it starts.
const inProcessURL = "http://" + inProcessListen

// Spec is a target before it starts: the embedded reference stack with
// its configuration, or an external stack described by a target file
// (read from disk or written inline). [Spec.Describe] is the target as
// faults see it until then, and [Spec.Start] makes it ready.
type Spec struct {
	// Mailstack is the embedded stack's configuration; nil means the
	// external stack File describes.
	Mailstack *mailstack.Config
	// File describes the external stack.
	File File
	// Toxiproxy, when set, is the API of the toxiproxy server that owns the
	// external stack's links, instead of the file's. The embedded stack's
	// links are always on its own in-process server.
	Toxiproxy string
	// SMTPIngress is where the embedded stack's SMTP clients connect: the
	// listen address of its smtp-ingress link, in front of its SMTP server
	// (its smtp endpoint). "" means a free loopback port.
	SMTPIngress string
}

// MailstackConfig returns the embedded stack's configuration as a run
// starts it: the profile's ([DefaultProfile] when profile is ""), with its
// SMTP, IMAP and metrics listeners on free loopback ports. An unknown
// profile is an error that lists the valid ones.
func MailstackConfig(profile string) (mailstack.Config, error) {
	cfg, err := mailstack.ProfileConfig(cmp.Or(profile, DefaultProfile))
	if err != nil {
		return mailstack.Config{}, err
	}
	cfg.SMTP.Listen, cfg.IMAP.Listen, cfg.Metrics.Listen = inProcessListen, inProcessListen, inProcessListen
	return cfg, nil
}

// Describe returns the target as faults see it before it starts, for
// validation: the names of its endpoints and links, its users, and the
// addresses known already. The embedded stack's addresses are all empty
// until [StartMailstack] chooses them.
//
// Toxiproxy is the server that owns the links that name none of their own:
// s.Toxiproxy, else the file's, else (when every link names its own) the
// first link's, else the in-process server mailchaos starts for the target,
// whose port is chosen when it starts (http://127.0.0.1:0 until then). It
// is never empty, so that faults check the links a request names against
// the target's.
func (s Spec) Describe() faults.Target {
	if s.Mailstack != nil {
		t := describeMailstack(*s.Mailstack)
		t.Toxiproxy = inProcessURL
		return t
	}
	t := s.File.Target()
	t.Toxiproxy = cmp.Or(s.Toxiproxy, s.File.Toxiproxy, defaultServer(t), inProcessURL)
	return t
}

// errEmbeddedToxiproxy refuses a toxiproxy server for the embedded stack.
var errEmbeddedToxiproxy = errors.New("targets: the embedded stack's links are on its own in-process toxiproxy server; " +
	"a toxiproxy URL applies to external targets only")

// Start makes the target ready to be hurt: it starts the embedded stack
// ([StartMailstack]) or opens the external one ([Open]). It blocks until
// then or until ctx ends; the returned target's Close stops what it
// started.
func (s Spec) Start(ctx context.Context, log *slog.Logger) (*Running, error) {
	if s.Mailstack == nil {
		return Open(ctx, s.File, s.Toxiproxy, log)
	}
	if s.Toxiproxy != "" {
		return nil, errEmbeddedToxiproxy
	}
	return startMailstack(ctx, *s.Mailstack, s.SMTPIngress, log)
}

// describeMailstack is the one description of the embedded stack a
// configuration makes, with every address empty: the endpoints smtp,
// imap, metrics, each engine it serves and each access site; the links
// smtp-ingress (from SMTP clients to its SMTP server), then one per MTA →
// engine hop and one per balancer → site hop, in the order of
// [mailstack.Stack.Links]; and its users, who log in by their address.
// [StartMailstack] fills in the addresses; validation uses the names.
func describeMailstack(cfg mailstack.Config) faults.Target {
	// Engine and site names default from their place; filled in on copies
	// of the lists, which the caller's configuration shares.
	cfg.Engines, cfg.Access.Sites = slices.Clone(cfg.Engines), slices.Clone(cfg.Access.Sites)
	cfg.FillDefaults()
	t := faults.Target{Endpoints: map[string]string{"smtp": "", "imap": "", "metrics": ""}}
	for _, e := range cfg.Engines {
		if !e.External {
			t.Endpoints[e.Name] = ""
		}
	}
	for _, s := range cfg.Access.Sites {
		t.Endpoints[s.Link()] = ""
	}
	t.Links = append(t.Links, faults.Link{Name: LinkSMTPIngress})
	for _, name := range cfg.LinkNames() {
		t.Links = append(t.Links, faults.Link{Name: name})
	}
	for _, u := range cfg.Users {
		t.Users = append(t.Users, faults.User{Address: u.Address, Login: u.Address, Password: u.Password})
	}
	return t
}
