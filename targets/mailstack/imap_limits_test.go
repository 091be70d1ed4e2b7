package mailstack_test

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/targets/mailstack"
)

func TestParseConfigAccessLimits(t *testing.T) {
	t.Parallel()
	cfg, err := mailstack.ParseConfig("c.yaml", []byte("access:\n  max-connections: 20\n"), "")
	require.NoError(t, err)
	require.Equal(t, 20, cfg.Access.MaxConnections)
	require.Equal(t, 3, cfg.Access.MaxLoginFailures, "unset limits keep the default")
	require.Equal(t, 1000, mailstack.DefaultConfig().Access.MaxConnections)

	_, err = mailstack.ParseConfig("c.yaml", []byte("access:\n  max-connections: 0\n  max-login-failures: 0\n"), "")
	require.EqualError(t, err, "2 errors:\n"+
		"  c.yaml:2:3: access.max-connections: must be at least 1, got 0\n"+
		"  c.yaml:3:3: access.max-login-failures: must be at least 1, got 0")
}

func TestIMAPAppendLimitIsTheMessageSizeLimit(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, mailstack.ProfileRemediated)
	cfg.SMTP.MaxMessageBytes = 2000
	s := startStack(t, cfg)
	c, err := net.Dial("tcp", s.Endpoint("imap"))
	require.NoError(t, err)
	defer c.Close()
	r := bufio.NewReader(c)
	line := func(send string) string {
		t.Helper()
		_, err := c.Write([]byte(send))
		require.NoError(t, err)
		require.NoError(t, c.SetReadDeadline(time.Now().Add(waitFor)))
		l, err := r.ReadString('\n')
		require.NoError(t, err)
		return l
	}
	require.True(t, strings.HasPrefix(line(""), "* OK"))
	require.True(t, strings.HasPrefix(line("a LOGIN alice@example.test password\r\n"), "a OK"))
	require.Equal(t, "b BAD [CLIENTBUG] literal of 2001 bytes is over the limit of 2000 bytes for APPEND\r\n",
		line("b APPEND INBOX {2001}\r\n"))
	require.True(t, strings.HasPrefix(line(fmt.Sprintf("c APPEND INBOX {%d}\r\n", 2000)), "+"))
}
