package loadsurge_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/faults"
	"github.com/mailchaos/mailchaos/faults/loadsurge"
	"github.com/mailchaos/mailchaos/targets/realstack"
)

// TestLoadOnARealStack drives both protocols of load-surge against Debian's
// Postfix (clamav-milter, clamd) and Dovecot through the fault's own
// request, with the users of the stack's target file: SMTP messages, the
// infected share refused by the milter (5xx), the rest accepted; IMAP
// log-in sessions by the users' short names and their own passwords. Every
// outcome is counted exactly.
func TestLoadOnARealStack(t *testing.T) {
	t.Parallel()
	stack := realstack.Start(t, realstack.Options{Profile: realstack.ProfileIncident})
	target := faults.Target{Endpoints: map[string]string{"smtp": stack.SMTP, "imap": stack.IMAP}}
	for _, u := range stack.Users {
		target.Users = append(target.Users, faults.User{Address: u.Address, Login: u.Login, Password: u.Password})
	}
	inj := loadsurge.New()
	ctx := context.Background()
	for _, tt := range []struct {
		name   string
		params faults.Params
		check  func(t *testing.T, f map[string]float64, detail string)
	}{
		{"smtp", faults.Params{"rate": "40/s", "infected": "0.25", "concurrency": "8", "per-session": "1"},
			func(t *testing.T, f map[string]float64, detail string) {
				require.Equal(t, f["scheduled"], f["accepted"]+f["rejected"], detail)
				require.Positive(t, f["rejected"], "infected messages are refused by clamav-milter: %s", detail)
				require.Positive(t, f["accepted"], detail)
				require.Zero(t, f["tempfail"]+f["conn_error"]+f["timeout"]+f["cut"]+f["unsent"], detail)
			}},
		{"imap", faults.Params{"protocol": "imap", "rate": "40/s", "concurrency": "8", "fetch": "2"},
			func(t *testing.T, f map[string]float64, detail string) {
				require.Equal(t, f["scheduled"], f["succeeded"], detail)
				require.Zero(t, f["failed"]+f["unsent"], detail)
			}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req := faults.Request{ID: "real-" + tt.name, Owner: "test", Fault: loadsurge.Name, Target: target,
				Params: tt.params, Duration: 2 * time.Second, TTL: time.Minute}
			require.NoError(t, inj.Validate(ctx, req))
			h, err := inj.Inject(ctx, req)
			require.NoError(t, err)
			t.Cleanup(func() { _ = inj.Remove(ctx, h) })
			st := waitInactive(t, inj, h)
			t.Log(st.Detail)
			require.Equal(t, 80.0, st.Figures["scheduled"], "40/s for 2s")
			tt.check(t, st.Figures, st.Detail)
		})
	}
}
