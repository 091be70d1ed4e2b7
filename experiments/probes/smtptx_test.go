package probes_test

import (
	"io"
	"log"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/experiments/probes"
	"github.com/mailchaos/mailchaos/faults"
	"github.com/mailchaos/mailchaos/internal/testnet"
)

func TestSMTPTransactionAgainstTheStack(t *testing.T) {
	t.Parallel()
	s, target := startStack(t, testConfig(t))
	p := newProbe(t, probes.SMTPTransactionKind(), target, faults.Params{"size": "2KiB"})
	require.Equal(t, "s", p.(probes.Uniter).Unit())
	sample := measure(p, waitFor)
	requireOK(t, sample)
	require.Equal(t, probes.Class2xx, sample.Class)
	require.Empty(t, sample.Err)
	require.Greater(t, sample.Value, 0.0)
	require.Less(t, sample.Value, waitFor.Seconds())

	// The server recorded the message as accepted when it answered 250.
	recs := s.Messages()
	require.Len(t, recs, 1)
	require.Equal(t, "run1-sli-1", recs[0].MailchaosID)
	require.True(t, strings.HasPrefix(recs[0].MessageID, "<run1-sli-1@example.test>"), recs[0].MessageID)
	require.Equal(t, "alice@example.test", recs[0].From, "the first user sends by default ...")
	require.Equal(t, []string{"alice@example.test"}, recs[0].To, "... to itself")
	require.Greater(t, recs[0].Size, 2048)
	require.Less(t, recs[0].Size, 2048+1024)

	p = newProbe(t, probes.SMTPTransactionKind(), target, faults.Params{"measure": "success", "to": "bob@example.test"})
	require.Equal(t, "ratio", p.(probes.Uniter).Unit())
	sample = measure(p, waitFor)
	requireOK(t, sample)
	require.Equal(t, 1.0, sample.Value)
	require.Equal(t, probes.Class2xx, sample.Class)
	recs = s.Messages()
	require.Len(t, recs, 2)
	require.Equal(t, []string{"bob@example.test"}, recs[1].To)
	// Both probes are the same SLI of the same run: their messages share
	// an ID. The stack delivers both, as any clean mail.
	require.Eventually(t, func() bool { return s.Counts().Delivered == 2 }, waitFor, 5*time.Millisecond)
}

func TestSMTPTransactionRefusedRecipient(t *testing.T) {
	t.Parallel()
	s, target := startStack(t, testConfig(t))
	p := newProbe(t, probes.SMTPTransactionKind(), target, faults.Params{"to": "nobody@example.test"})
	sample := measure(p, waitFor)
	require.True(t, sample.Failed, "a refusal is a failed latency sample")
	require.Equal(t, probes.Class5xx, sample.Class)
	require.Regexp(t, `^5xx: smtp 127\.0\.0\.1:\d+: RCPT TO: 550 5\.1\.1 no such user: nobody@example\.test$`, sample.Err)
	require.Empty(t, s.Messages())
}

// replyServer is a go-smtp server on 127.0.0.1:0 whose Data calls data to
// answer the end of DATA. It is closed when the test ends.
func replyServer(t *testing.T, data func() error) string {
	t.Helper()
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &replySession{data: data}, nil }))
	srv.Domain = "reply.test"
	srv.ErrorLog = log.New(io.Discard, "", 0)
	return testnet.Run(t, srv)
}

type replySession struct{ data func() error }

func (s *replySession) Reset()                               {}
func (s *replySession) Logout() error                        { return nil }
func (s *replySession) Mail(string, *smtp.MailOptions) error { return nil }
func (s *replySession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s *replySession) Data(r io.Reader) error               { _, _ = io.Copy(io.Discard, r); return s.data() }

func TestSMTPTransactionClasses(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var once sync.Once
	hang := replyServer(t, func() error { <-release; return nil })
	t.Cleanup(func() { once.Do(func() { close(release) }) }) // before the server closes
	servers := map[string]string{
		"451": replyServer(t, func() error {
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 1}, Message: "scanner busy, try later"}
		}),
		"554": replyServer(t, func() error {
			return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "virus found"}
		}),
		"hang":    hang,
		"refused": testnet.FreeAddr(t),
		"ok":      replyServer(t, func() error { return nil }),
	}
	for _, tc := range []struct {
		server, class string
		err           string // a regular expression
		timeout       time.Duration
	}{
		{"ok", probes.Class2xx, `^$`, waitFor},
		{"451", probes.Class4xx, `^4xx: smtp 127\.0\.0\.1:\d+: end of DATA: 451 4\.7\.1 scanner busy, try later$`, waitFor},
		{"554", probes.Class5xx, `^5xx: smtp 127\.0\.0\.1:\d+: end of DATA: 554 5\.7\.1 virus found$`, waitFor},
		{"hang", probes.ClassTimeout, `^timeout: smtp 127\.0\.0\.1:\d+: end of DATA: context deadline exceeded$`, 300 * time.Millisecond},
		{"refused", probes.ClassConnError, `^conn-error: smtp: connect to 127\.0\.0\.1:\d+: .*connection refused$`, waitFor},
	} {
		t.Run(tc.server, func(t *testing.T) {
			target := faults.Target{Endpoints: map[string]string{"smtp": servers[tc.server]}}
			ok := tc.class == probes.Class2xx

			p := newProbe(t, probes.SMTPTransactionKind(), target, faults.Params{})
			start := time.Now()
			s := measure(p, tc.timeout)
			require.Less(t, time.Since(start), tc.timeout+5*time.Second, "Measure returns by its deadline")
			require.Equal(t, tc.class, s.Class)
			require.Regexp(t, tc.err, s.Err)
			require.Equal(t, !ok, s.Failed, "measure latency: anything but 2xx fails the sample")
			if ok {
				require.Greater(t, s.Value, 0.0)
			}

			p = newProbe(t, probes.SMTPTransactionKind(), target, faults.Params{"measure": "success"})
			s = measure(p, tc.timeout)
			require.False(t, s.Failed, "measure success: a value, not a failed sample")
			require.Equal(t, tc.class, s.Class)
			require.Regexp(t, tc.err, s.Err)
			want := 0.0
			if ok {
				want = 1
			}
			require.Equal(t, want, s.Value)
		})
	}
}

func TestSMTPTransactionRejectsBadParameters(t *testing.T) {
	t.Parallel()
	target := faults.Target{Endpoints: map[string]string{"smtp": "127.0.0.1:1"}}
	for _, tc := range []struct {
		params faults.Params
		param  string
		want   string
	}{
		{faults.Params{"endpoint": "smpt"}, "endpoint", `did you mean "smtp"?`},
		{faults.Params{"to": "bob"}, "to", "not a plain e-mail address"},
		{faults.Params{"from": "<a@b>"}, "from", "not a plain e-mail address"},
		{faults.Params{"measure": "latancy"}, "measure", `did you mean "latency"?`},
		{faults.Params{"size": "20MiB"}, "size", "above the maximum"},
	} {
		_, err := probes.SMTPTransactionKind().New(probes.Config{Name: "sli", Params: tc.params, Target: target, RunID: "run1"})
		require.ErrorContains(t, err, "parameter "+tc.param, "%v", tc.params)
		require.ErrorContains(t, err, tc.want, "%v", tc.params)
	}
	_, err := probes.SMTPTransactionKind().New(probes.Config{Name: "my sli", Target: target, RunID: "run1"})
	require.ErrorContains(t, err, "must not contain spaces")
}
