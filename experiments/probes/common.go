package probes

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/mailchaos/mailchaos/faults"
)

// Uniter is implemented by probes whose unit depends on their parameters
// (imap-login's measure, metric's unit). When a probe implements it, its
// Unit overrides [Kind.Unit]. Every built-in probe implements it.
type Uniter interface {
	Unit() string
}

// Builtin returns the built-in probe kinds: smtp-canary, smtp-transaction,
// imap-login, metric, tcp, banner and load.
func Builtin() []Kind {
	return []Kind{CanaryKind(), SMTPTransactionKind(), IMAPLoginKind(), MetricKind(), TCPKind(), BannerKind(), LoadKind()}
}

// checkParams validates cfg.Params against k's schema, so that New fails
// cleanly even when the caller skipped faults.Check.
func checkParams(k Kind, cfg Config) (faults.Values, error) {
	v, errs := faults.Check(k.Spec(), cfg.Params)
	if len(errs) > 0 {
		return faults.Values{}, errors.Join(errs...)
	}
	return v, nil
}

// resolveEndpoint turns the value of an endpoint parameter into an address:
// a name in the target's endpoints, or else a literal host:port. An unknown
// name is a *faults.ParamError that suggests the nearest endpoint name.
func resolveEndpoint(kind, param, value string, t faults.Target) (string, error) {
	if addr, ok := t.Endpoints[value]; ok {
		if addr == "" {
			return "", &faults.ParamError{Fault: kind, Param: param, Value: value, Msg: "the target's endpoint has no address"}
		}
		return addr, nil
	}
	if _, _, ok := faults.SplitAddress(value); ok {
		return value, nil
	}
	names := make([]string, 0, len(t.Endpoints))
	for n := range t.Endpoints {
		names = append(names, n)
	}
	sort.Strings(names)
	allowed := "a host:port address"
	if len(names) > 0 {
		allowed = "one of " + strings.Join(names, ", ") + ", or a host:port address"
	}
	return "", &faults.ParamError{Fault: kind, Param: param, Value: value,
		Msg: "the target has no such endpoint" + faults.Suggest(value, names), Allowed: allowed}
}

// defaultUser is the target's first user, or alice@example.test (who logs
// in by that address with the default password).
func defaultUser(t faults.Target) faults.User {
	if len(t.Users) > 0 && t.Users[0].Address != "" {
		return t.Users[0]
	}
	return faults.User{Address: "alice@example.test"}
}

// account works out how a probe logs in. user is its user parameter ("" if
// not given), fallback the target user it acts as when user is not given
// (the canary's recipient), password its password parameter and given
// whether it was given. The log-in name is user, else fallback's; the
// password is the one given, else that of the target user the probe logs
// in as (user found by log-in name or address, else fallback), else
// faults.DefaultPassword.
func account(t faults.Target, user string, fallback faults.User, password string, given bool) (login, secret string) {
	login, secret = fallback.LoginName(), fallback.Secret()
	if user != "" {
		login, secret = user, faults.DefaultPassword
		if u, ok := t.User(user); ok {
			secret = u.Secret()
		}
	}
	if given {
		secret = password
	}
	return login, secret
}

// failed returns a failed sample that started at start.
func failed(start time.Time, err error) Sample {
	return Sample{At: start, Failed: true, Err: err.Error()}
}

// ctxErr explains an error that happened while ctx was ending: the
// connection was closed under the operation because ctx ended, so ctx's
// error is the cause. Otherwise err is returned as is.
func ctxErr(ctx context.Context, what string, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("%s: %w", what, cerr)
	}
	if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) && errors.Is(err, os.ErrDeadlineExceeded) {
		// The connection's deadline is ctx's: it can fire a moment
		// before ctx reports it.
		return fmt.Errorf("%s: %w", what, context.DeadlineExceeded)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// dial connects to addr within ctx, and arranges for the connection to be
// closed as soon as ctx ends, so that every later read or write on it is
// bounded by ctx. The returned stop function undoes that arrangement; the
// caller still closes the connection.
func dial(ctx context.Context, addr string) (net.Conn, func() bool, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	return conn, stop, nil
}

// roundDuration rounds d for messages: to the millisecond below a second,
// to the tenth of a second below a minute, to the second above.
func roundDuration(d time.Duration) time.Duration {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond)
	case d < time.Minute:
		return d.Round(100 * time.Millisecond)
	}
	return d.Round(time.Second)
}
