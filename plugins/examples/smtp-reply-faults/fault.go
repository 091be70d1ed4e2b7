package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mailchaos/mailchaos/plugins/sdk"
)

// Name is the fault's name.
const Name = "smtp-reply-faults"

// DefaultLink is the link the fault sits on when a request names none: the
// embedded mail stack's SMTP ingress.
const DefaultLink = "smtp-ingress"

// Commands the fault can answer in the server's place.
var commands = []string{"greeting", "helo", "mail", "rcpt", "data", "rset", "noop", "quit"} //nolint:gochecknoglobals // constant list

func spec() sdk.Spec {
	return sdk.Spec{
		Name:      Name,
		Summary:   "SMTP-aware: answer a share of one SMTP command with a chosen 4xx/5xx reply in the server's place, or tarpit the greeting",
		NeedsLink: true,
		// The relay diverts the link: a toxic of mailchaos' own.
		Toxics: []string{sdk.ToxicDivert},
		Params: []sdk.Param{
			{Name: "command", Type: sdk.TypeEnum, Enum: commands, Default: "rcpt",
				Doc: "the command to answer: greeting (the server's banner), helo (HELO and EHLO), mail, rcpt, data, rset, noop, quit"},
			{Name: "code", Type: sdk.TypeInt, Default: "451", Min: "400", Max: "599", Doc: "the reply code; 421 also closes the connection, as a server does"},
			{Name: "text", Type: sdk.TypeString, Default: "4.3.0 temporary failure (mailchaos)", Doc: "the reply text after the code"},
			{Name: "fraction", Type: sdk.TypeFraction, Default: "1", Doc: "share of the matching commands answered with the fault"},
			{Name: "tarpit", Type: sdk.TypeDuration, Default: "0s", Min: "0s", Max: "10m", Doc: "hold every greeting back this long before it reaches the client"},
		},
	}
}

// Injector is the fault. It diverts the link through an SMTP-aware relay
// (sdk.Interceptor), one per injected fault.
type Injector struct {
	ic *sdk.Interceptor

	mu    sync.Mutex
	stats map[string]*counters // by owner/id
}

// counters are what one injected fault did.
type counters struct {
	seen, faulted, connections atomic.Int64
}

// New returns the injector.
func New() *Injector { return &Injector{ic: sdk.NewInterceptor(), stats: map[string]*counters{}} }

var _ sdk.Injector = (*Injector)(nil)

// Describe returns the spec.
func (i *Injector) Describe(context.Context) (sdk.Spec, error) { return spec(), nil }

// Validate checks a request.
func (i *Injector) Validate(_ context.Context, req sdk.Request) error {
	_, _, err := check(req)
	return err
}

// config is a checked request.
type config struct {
	command  string
	code     int
	text     string
	fraction float64
	tarpit   time.Duration
}

func check(req sdk.Request) (config, string, error) {
	v, err := sdk.Check(spec(), req.Params)
	link := DefaultLink
	switch len(req.Links) {
	case 0:
	case 1:
		link = req.Links[0]
	default:
		err = errors.Join(err, &sdk.ParamError{Fault: Name, Param: "link", Value: strings.Join(req.Links, ","),
			Msg: "the fault sits on one link", Allowed: "one SMTP link, such as " + DefaultLink})
	}
	if len(req.Target.Servers()) > 0 { // the target is known: its links can be checked
		err = errors.Join(err, sdk.CheckLinks(Name, req.Target, []string{link}))
	}
	text := v.String("text")
	if strings.ContainsAny(text, "\r\n") {
		err = errors.Join(err, &sdk.ParamError{Fault: Name, Param: "text", Value: text, Msg: "must be one line"})
	}
	return config{command: v.String("command"), code: v.Int("code"), text: text, fraction: v.Float("fraction"),
		tarpit: v.Duration("tarpit")}, link, err
}

func key(h sdk.Handle) string { return h.Owner + "/" + h.ID }

// Inject diverts the link through the SMTP relay.
func (i *Injector) Inject(ctx context.Context, req sdk.Request) (sdk.Handle, error) {
	cfg, link, err := check(req)
	if err != nil {
		return sdk.Handle{}, err
	}
	c := &counters{}
	h, err := i.ic.Start(ctx, req, link, func(ctx context.Context, client, upstream net.Conn) {
		c.connections.Add(1)
		relay(ctx, cfg, c, client, upstream)
	})
	if err != nil {
		return sdk.Handle{}, err
	}
	i.mu.Lock()
	i.stats[key(h)] = c
	i.mu.Unlock()
	sdk.Logger().Info("injected", "id", req.ID, "link", link, "command", cfg.command, "code", cfg.code, "fraction", cfg.fraction)
	return h, nil
}

// Remove points the link back at the server; idempotent.
func (i *Injector) Remove(ctx context.Context, h sdk.Handle) error { return i.ic.Stop(ctx, h) }

// Status says whether the relay runs, and what it did.
func (i *Injector) Status(_ context.Context, h sdk.Handle) (sdk.Status, error) {
	i.mu.Lock()
	c := i.stats[key(h)]
	i.mu.Unlock()
	st := sdk.Status{Active: i.ic.Active(h)}
	if c != nil {
		st.Figures = map[string]float64{"connections": float64(c.connections.Load()), "seen": float64(c.seen.Load()),
			"faulted": float64(c.faulted.Load())}
		st.Detail = "smtp-reply-faults: " + strconv.FormatInt(c.faulted.Load(), 10) + " of " +
			strconv.FormatInt(c.seen.Load(), 10) + " matching commands answered with the fault, over " +
			fmt.Sprint(c.connections.Load()) + " connections"
	}
	return st, nil
}
