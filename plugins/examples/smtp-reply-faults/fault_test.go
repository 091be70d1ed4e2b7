package main

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/plugins/sdk"
	"github.com/mailchaos/mailchaos/plugins/sdk/sdktest"
	"github.com/mailchaos/mailchaos/targets"
	"github.com/mailchaos/mailchaos/targets/mailstack"
)

func TestConformance(t *testing.T) {
	sdktest.Run(t, New(), sdktest.Config{
		Params:       map[string]string{"command": "rcpt", "code": "451"},
		BadParams:    map[string]string{"code": "250"},
		SecondInject: sdktest.Refuse, // a link is diverted through one relay at a time
	})
}

// stack starts the embedded mail stack, whose SMTP clients go through the
// smtp-ingress link.
func stack(t *testing.T) *targets.Running {
	t.Helper()
	cfg := mailstack.DefaultConfig()
	run, err := targets.StartMailstack(context.Background(), cfg, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = run.Close(ctx)
	})
	return run
}

// send sends one message and returns the error of the step that failed.
func send(t *testing.T, addr, to string) error {
	t.Helper()
	c, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Hello("test.example"); err != nil {
		return err
	}
	if err := c.Mail("sender@example.test", nil); err != nil {
		return err
	}
	if err := c.Rcpt(to, nil); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write([]byte("Subject: hi\r\n\r\nhello\r\n")); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}

func request(run *targets.Running, params sdk.Params) sdk.Request {
	return sdk.Request{ID: "t1", Owner: "test", Fault: Name, Target: run.Target, Params: params,
		Duration: time.Minute, TTL: 2 * time.Minute}
}

func TestRcptAnsweredWithTheFault(t *testing.T) {
	run := stack(t)
	inj := New()
	ctx := context.Background()
	to := run.Target.Users[0].Address
	require.NoError(t, send(t, run.Target.Endpoints["smtp"], to), "mail flows before the fault")

	h, err := inj.Inject(ctx, request(run, sdk.Params{"command": "rcpt", "code": "452", "text": "4.2.2 mailbox full"}))
	require.NoError(t, err)
	err = send(t, run.Target.Endpoints["smtp"], to)
	var se *smtp.SMTPError
	require.True(t, errors.As(err, &se), "want an SMTP error, got %v", err)
	require.Equal(t, 452, se.Code)
	require.Contains(t, se.Message, "mailbox full")
	st, err := inj.Status(ctx, h)
	require.NoError(t, err)
	require.True(t, st.Active)
	require.Equal(t, 1.0, st.Figures["faulted"])

	require.NoError(t, inj.Remove(ctx, h))
	require.NoError(t, send(t, run.Target.Endpoints["smtp"], to), "mail flows after the fault")
	require.Equal(t, 2, run.Stack.Counts().Accepted, "the server never saw the faulted message")
}

func TestFractionOfMailAnswered(t *testing.T) {
	run := stack(t)
	inj := New()
	ctx := context.Background()
	h, err := inj.Inject(ctx, request(run, sdk.Params{"command": "mail", "code": "421", "fraction": "50%"}))
	require.NoError(t, err)
	defer func() { require.NoError(t, inj.Remove(ctx, h)) }()
	failed := 0
	const n = 60
	for range n {
		if err := send(t, run.Target.Endpoints["smtp"], run.Target.Users[0].Address); err != nil {
			require.Contains(t, err.Error(), "421")
			failed++
		}
	}
	// Binomial(60, 0.5): 10..50 holds with probability 1 - 1e-7.
	require.Greater(t, failed, 10)
	require.Less(t, failed, 50)
	st, err := inj.Status(ctx, h)
	require.NoError(t, err)
	require.Equal(t, float64(failed), st.Figures["faulted"])
}

func TestGreetingRefusedAndTarpit(t *testing.T) {
	run := stack(t)
	inj := New()
	ctx := context.Background()
	h, err := inj.Inject(ctx, request(run, sdk.Params{"command": "greeting", "code": "554", "text": "5.7.1 go away"}))
	require.NoError(t, err)
	err = send(t, run.Target.Endpoints["smtp"], run.Target.Users[0].Address)
	require.Error(t, err)
	require.True(t, strings.Contains(err.Error(), "554") || strings.Contains(err.Error(), "go away"), err.Error())
	require.NoError(t, inj.Remove(ctx, h))
	require.NoError(t, send(t, run.Target.Endpoints["smtp"], run.Target.Users[0].Address))
}

func TestEndsByItselfAtTTL(t *testing.T) {
	run := stack(t)
	inj := New()
	req := request(run, sdk.Params{"command": "rcpt"})
	req.TTL = time.Second
	h, err := inj.Inject(context.Background(), req)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return !inj.ic.Active(h) }, 20*time.Second, 50*time.Millisecond,
		"the interception outlived its TTL")
	require.NoError(t, send(t, run.Target.Endpoints["smtp"], run.Target.Users[0].Address))
}
