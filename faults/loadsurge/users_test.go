package loadsurge_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/faults"
	"github.com/mailchaos/mailchaos/faults/loadsurge"
)

// realUsers log in by short names, one with a password of its own.
func realUsers() []faults.User {
	return []faults.User{
		{Address: "tester@realstack.test", Login: "tester", Password: "tester-pass"},
		{Address: "other@realstack.test", Login: "other"},
	}
}

func TestParseParamsTakesTheTargetUsersAccounts(t *testing.T) {
	t.Parallel()
	l, err := loadsurge.ParseParams(faults.Params{"protocol": "imap"}, realUsers(), time.Second)
	require.NoError(t, err)
	require.Equal(t, []string{"tester", "other"}, l.IMAP.Users, "sessions log in by the log-in names")
	require.Equal(t, map[string]string{"tester": "tester-pass"}, l.IMAP.Passwords)
	require.Equal(t, loadsurge.DefaultPassword, l.IMAP.Password, "for users without a password")

	l, err = loadsurge.ParseParams(faults.Params{"protocol": "imap", "password": "x"}, realUsers(), time.Second)
	require.NoError(t, err)
	require.Nil(t, l.IMAP.Passwords, "a password given applies to every user")
	require.Equal(t, "x", l.IMAP.Password)

	l, err = loadsurge.ParseParams(faults.Params{}, realUsers(), time.Second)
	require.NoError(t, err)
	require.Equal(t, []string{"tester@realstack.test", "other@realstack.test"}, l.SMTP.Rcpts, "mail goes to the addresses")
}

func TestIMAPLogsInWithEachUsersPassword(t *testing.T) {
	t.Parallel()
	srv := startMem(t, memOpts{Plain: true, Users: realUsers()})
	l, err := loadsurge.ParseParams(faults.Params{"protocol": "imap", "concurrency": "2"}, realUsers(), time.Second)
	require.NoError(t, err)
	cfg := l.IMAP
	cfg.Addr, cfg.Count = srv.addr, 10
	res := waitIMAP(t, startIMAP(t, cfg))
	require.EqualValues(t, 10, res.Succeeded, res.String())
}
