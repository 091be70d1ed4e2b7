package loadsurge_test

import (
	"io"
	"log"
	"net"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
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
	mem := imapmemserver.New()
	for _, u := range realUsers() {
		acct := imapmemserver.NewUser(u.LoginName(), u.Secret())
		require.NoError(t, acct.Create("INBOX", nil))
		mem.AddUser(acct)
	}
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return mem.NewSession(), nil, nil
		},
		Caps:         imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapIMAP4rev2: {}},
		InsecureAuth: true,
		Logger:       log.New(io.Discard, "", 0),
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
	})

	l, err := loadsurge.ParseParams(faults.Params{"protocol": "imap", "concurrency": "2"}, realUsers(), time.Second)
	require.NoError(t, err)
	cfg := l.IMAP
	cfg.Addr, cfg.Count = ln.Addr().String(), 10
	res := waitIMAP(t, startIMAP(t, cfg))
	require.EqualValues(t, 10, res.Succeeded, res.String())
}
