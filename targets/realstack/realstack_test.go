package realstack_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-smtp"
	"github.com/goccy/go-yaml"
	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/cli"
	"github.com/mailchaos/mailchaos/faults"
	"github.com/mailchaos/mailchaos/faults/grayfailure"
	"github.com/mailchaos/mailchaos/faults/network"
	"github.com/mailchaos/mailchaos/internal/testnet"
	"github.com/mailchaos/mailchaos/targets"
	"github.com/mailchaos/mailchaos/targets/realstack"
)

// TestMain lets the test binary stand in for the mailchaos binary when a
// stack runs it as its proxy (Options.Mailchaos, "proxy serve ..."): the
// command line itself runs.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "proxy" {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		code := cli.Run(ctx, append([]string{"mailchaos"}, os.Args[1:]...), cli.Env{Stdout: os.Stdout, Stderr: os.Stderr})
		stop()
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// The test viruses, put together at run time so that this file carries
// neither string whole.
var (
	eicar    = `X5O!P%@AP[4\PZX54(P^)7CC)7}$` + `EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*`
	testSig  = "MAILCHAOS-" + "TEST-VIRUS"
	msgCount atomic.Int64
)

const (
	from = "sender@realstack.test"
	to   = "tester@realstack.test"
)

// send submits one message and returns the server's rejection, if any;
// anything else going wrong fails the test.
func send(t *testing.T, addr, subject, body string) error {
	t.Helper()
	c, err := smtp.Dial(addr)
	require.NoError(t, err, "dial smtp %s", addr)
	defer c.Close()
	c.CommandTimeout = time.Minute
	c.SubmissionTimeout = time.Minute
	require.NoError(t, c.Hello("client.realstack.test"))
	if err := c.Mail(from, nil); err != nil {
		return err
	}
	if err := c.Rcpt(to, nil); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	n := msgCount.Add(1)
	_, err = fmt.Fprintf(w, "From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\nMessage-ID: <%d.%d@client.realstack.test>\r\nDate: %s\r\n\r\n%s\r\n",
		from, to, subject, time.Now().UnixNano(), n, time.Now().Format(time.RFC1123Z), body)
	require.NoError(t, err)
	err = w.Close()
	_ = c.Quit()
	return err
}

// code is the SMTP reply code of a rejection (0 for none).
func code(err error) int {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Code
	}
	return 0
}

func subject(t *testing.T, what string) string {
	return fmt.Sprintf("%s %s %d", what, strings.ReplaceAll(t.Name(), "/", "-"), time.Now().UnixNano())
}

// inMaildir returns the content of the message with that subject in the
// Maildir, or "".
func inMaildir(t *testing.T, dir, subject string) string {
	t.Helper()
	for _, sub := range []string{"new", "cur"} {
		entries, err := os.ReadDir(filepath.Join(dir, sub))
		require.NoError(t, err)
		for _, e := range entries {
			data, err := os.ReadFile(filepath.Join(dir, sub, e.Name()))
			if errors.Is(err, os.ErrNotExist) {
				continue // moved from new to cur meanwhile
			}
			require.NoError(t, err)
			if strings.Contains(string(data), "Subject: "+subject+"\n") {
				return string(data)
			}
		}
	}
	return ""
}

// waitDelivered waits until the message is in the Maildir and returns it.
func waitDelivered(t *testing.T, dir, subject string) string {
	t.Helper()
	var msg string
	require.Eventually(t, func() bool {
		msg = inMaildir(t, dir, subject)
		return msg != ""
	}, 30*time.Second, 20*time.Millisecond, "message %q not delivered to %s", subject, dir)
	return msg
}

// notDelivered sends a clean marker and waits for it: the message that was
// rejected before it would have been delivered by then, had it been queued.
func notDelivered(t *testing.T, s *realstack.Stack, subject string) {
	t.Helper()
	marker := subject + " marker"
	require.NoError(t, send(t, s.SMTP, marker, "marker"))
	waitDelivered(t, s.Maildir("tester"), marker)
	require.Empty(t, inMaildir(t, s.Maildir("tester"), subject), "the rejected message was delivered")
}

func scans(t *testing.T, s *realstack.Stack) int {
	t.Helper()
	n, err := s.ClamdScans()
	require.NoError(t, err)
	return n
}

// waitScans waits until clamd has logged want scans in all (clamd may
// answer a scan before it logs it) and checks there are no more.
func waitScans(t *testing.T, s *realstack.Stack, want int, msg string) {
	t.Helper()
	require.Eventually(t, func() bool { return scans(t, s) >= want }, 10*time.Second, 10*time.Millisecond, msg)
	require.Equal(t, want, scans(t, s), msg)
}

// running reports whether pid is a live process (zombies count as gone:
// the stack's daemons are reaped by init, sometimes late).
func running(pid int) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(data)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && len(s) > i+2 {
		return s[i+2] != 'Z'
	}
	return true
}

func closed(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return true
	}
	c.Close()
	return false
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

// TestStack runs one stack with the incident profile through mail flow,
// idempotent up, the remediated interceptor and down.
func TestStack(t *testing.T) {
	t.Parallel()
	s := realstack.Start(t, realstack.Options{})
	require.Equal(t, realstack.ProfileIncident, s.Profile)
	require.Equal(t, s.Clamd, s.ClamdLink, "no link: the milter talks to clamd directly")
	tester, ok := s.User("tester")
	require.True(t, ok)
	require.Equal(t, realstack.User{Address: to, Login: "tester", Password: "tester-pass"}, tester)
	_, ok = s.User("sender")
	require.True(t, ok)

	t.Run("clean mail is delivered and readable over IMAP", func(t *testing.T) {
		subj := subject(t, "clean")
		before := scans(t, s)
		require.NoError(t, send(t, s.SMTP, subj, "hello tester"))
		msg := waitDelivered(t, s.Maildir("tester"), subj)
		require.Contains(t, msg, "X-Virus-Status: Clean", "scanned by clamav-milter")
		waitScans(t, s, before+1, "one INSTREAM scan in clamd")

		c, err := imapclient.DialInsecure(s.IMAP, nil)
		require.NoError(t, err)
		defer c.Close()
		require.NoError(t, c.Login(tester.Login, tester.Password).Wait())
		var seq []uint32
		require.Eventually(t, func() bool {
			// A new SELECT makes Dovecot look at the Maildir again.
			if _, err := c.Select("INBOX", nil).Wait(); err != nil {
				return false
			}
			data, err := c.Search(&imap.SearchCriteria{
				Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: subj}},
			}, nil).Wait()
			if err != nil {
				return false
			}
			seq = data.AllSeqNums()
			return len(seq) == 1
		}, 30*time.Second, 50*time.Millisecond)
		msgs, err := c.Fetch(imap.SeqSetNum(seq...), &imap.FetchOptions{Envelope: true}).Collect()
		require.NoError(t, err)
		require.Len(t, msgs, 1)
		require.Equal(t, subj, msgs[0].Envelope.Subject)
		require.NoError(t, c.Logout().Wait())
	})

	t.Run("wrong IMAP password is refused", func(t *testing.T) {
		c, err := imapclient.DialInsecure(s.IMAP, nil)
		require.NoError(t, err)
		defer c.Close()
		require.Error(t, c.Login("tester", "wrong").Wait())
	})

	for _, v := range []struct{ name, body, sig string }{
		{"EICAR", "attached: " + eicar, "Eicar-Test-Signature"},
		{"test signature", "this carries " + testSig + " in its body", "MailChaos.Test-Virus"},
	} {
		t.Run(v.name+" is rejected by clamav-milter", func(t *testing.T) {
			subj := subject(t, "virus")
			before := scans(t, s)
			err := send(t, s.SMTP, subj, v.body)
			require.Error(t, err)
			require.Equal(t, 5, code(err)/100, "a 5xx at the end of DATA: %v", err)
			require.Contains(t, err.Error(), v.sig)
			waitScans(t, s, before+1, "clamd scanned it")
			notDelivered(t, s, subj)
		})
	}

	t.Run("unknown recipients and relaying are refused", func(t *testing.T) {
		c, err := smtp.Dial(s.SMTP)
		require.NoError(t, err)
		defer c.Close()
		require.NoError(t, c.Hello("client.realstack.test"))
		require.NoError(t, c.Mail(from, nil))
		require.Equal(t, 5, code(c.Rcpt("nobody@realstack.test", nil))/100)
		require.Equal(t, 5, code(c.Rcpt("someone@example.org", nil))/100)
	})

	t.Run("up again changes nothing", func(t *testing.T) {
		pids, err := s.Processes()
		require.NoError(t, err)
		again, err := realstack.Up(ctx(t), s.Dir, realstack.Options{})
		require.NoError(t, err)
		require.Equal(t, s, again)
		pids2, err := s.Processes()
		require.NoError(t, err)
		require.Equal(t, pids, pids2)
		out, err := s.Status(ctx(t))
		require.NoError(t, err, out)
		require.Contains(t, out, "postfix  running")
	})

	t.Run("target file", func(t *testing.T) {
		data, err := os.ReadFile(s.TargetFile)
		require.NoError(t, err)
		var tf struct {
			Name      string            `yaml:"name"`
			Toxiproxy string            `yaml:"toxiproxy"`
			Endpoints map[string]string `yaml:"endpoints"`
			Users     []struct {
				Address  string `yaml:"address"`
				Login    string `yaml:"login"`
				Password string `yaml:"password"`
			} `yaml:"users"`
			Links []any `yaml:"links"`
		}
		require.NoError(t, yaml.Unmarshal(data, &tf))
		require.Equal(t, map[string]string{"smtp": s.SMTP, "imap": s.IMAP, "clamd": s.Clamd}, tf.Endpoints)
		require.Empty(t, tf.Toxiproxy)
		require.Empty(t, tf.Links)
		require.Len(t, tf.Users, len(s.Users))
		for i, u := range s.Users {
			require.Equal(t, u.Address, tf.Users[i].Address)
			require.Equal(t, u.Login, tf.Users[i].Login)
			require.Equal(t, u.Password, tf.Users[i].Password)
		}
		_, err = targets.LoadFile(s.TargetFile, false)
		require.NoError(t, err, "a valid mailchaos target file")
	})

	t.Run("remediated body_checks keep test viruses from clamd", func(t *testing.T) {
		s.Apply(t, realstack.ProfileRemediated)
		require.Equal(t, realstack.ProfileRemediated, s.Profile)
		before := scans(t, s)
		for _, body := range []string{eicar, testSig} {
			subj := subject(t, "virus")
			err := send(t, s.SMTP, subj, "x "+body+" y")
			require.Equal(t, 5, code(err)/100, "rejected: %v", err)
			require.ErrorContains(t, err, "body_checks")
			notDelivered(t, s, subj)
		}
		// The two markers were scanned, the viruses were not.
		waitScans(t, s, before+2, "clamd saw only the clean markers")
		log, err := os.ReadFile(s.PostfixLog)
		require.NoError(t, err)
		require.Contains(t, string(log), "reject: body")

		s.Apply(t, realstack.ProfileIncident)
		subj := subject(t, "virus")
		err = send(t, s.SMTP, subj, eicar)
		require.ErrorContains(t, err, "Eicar-Test-Signature", "back to the milter")
	})

	t.Run("down stops everything, twice", func(t *testing.T) {
		pids, err := s.Processes()
		require.NoError(t, err)
		for _, d := range []string{"clamd", "milter", "dovecot", "postfix", "watch"} {
			require.Contains(t, pids, d)
			require.True(t, running(pids[d]), "%s runs before down", d)
		}
		out, err := s.Down(ctx(t))
		require.NoError(t, err)
		for _, d := range []string{"clamd", "milter", "dovecot", "postfix", "watchdog"} {
			require.Contains(t, out, "stopped "+d)
		}
		for d, pid := range pids {
			require.False(t, running(pid), "%s (pid %d) still runs after down", d, pid)
		}
		for _, addr := range []string{s.SMTP, s.IMAP, s.Clamd, s.Milter} {
			require.True(t, closed(addr), "%s still accepts connections", addr)
		}
		left, err := s.Processes()
		require.NoError(t, err)
		require.Empty(t, left)
		out, err = s.Down(ctx(t))
		require.NoError(t, err)
		require.Contains(t, out, "nothing running")
		out, err = s.Status(ctx(t))
		require.Error(t, err)
		require.Contains(t, out, "postfix  stopped")
		_, err = os.Stat(s.PostfixLog)
		require.NoError(t, err, "logs stay")
	})
}

func freePort(t *testing.T) int {
	_, port, err := net.SplitHostPort(testnet.FreeAddr(t))
	require.NoError(t, err)
	p, err := strconv.Atoi(port)
	require.NoError(t, err)
	return p
}

// TestClamdVia points clamav-milter at clamd through a forwarder run by the
// test: mail is scanned through it, and with the link broken clean mail is
// deferred (OnFail Defer), not accepted unscanned.
func TestClamdVia(t *testing.T) {
	t.Parallel()
	clamdPort := freePort(t)
	fwd := testnet.Forward(t, "127.0.0.1:"+strconv.Itoa(clamdPort))
	s := realstack.Start(t, realstack.Options{ClamdVia: fwd.Addr, Ports: realstack.Ports{Clamd: clamdPort}})
	require.Equal(t, fwd.Addr, s.ClamdLink)
	require.Equal(t, "127.0.0.1:"+strconv.Itoa(clamdPort), s.Clamd)

	before := fwd.Accepted()
	subj := subject(t, "clean")
	require.NoError(t, send(t, s.SMTP, subj, "through the link"))
	waitDelivered(t, s.Maildir("tester"), subj)
	require.Greater(t, fwd.Accepted(), before, "the milter reached clamd through the link")

	err := send(t, s.SMTP, subject(t, "virus"), eicar)
	require.Equal(t, 5, code(err)/100, "infected mail is still rejected through the link: %v", err)

	// The remediated interceptor: the milter does not even connect to
	// clamd for a message body_checks rejected.
	s.Apply(t, realstack.ProfileRemediated)
	before = fwd.Accepted()
	err = send(t, s.SMTP, subject(t, "virus"), eicar)
	require.ErrorContains(t, err, "body_checks")
	require.Equal(t, before, fwd.Accepted(), "no connection to clamd for an intercepted message")

	fwd.Close()
	scanned := scans(t, s)
	subj = subject(t, "clean")
	err = send(t, s.SMTP, subj, "link broken")
	require.Error(t, err)
	require.Equal(t, 4, code(err)/100, "a broken link defers: %v", err)
	require.Equal(t, scanned, scans(t, s), "clamd saw nothing")
	require.Empty(t, inMaildir(t, s.Maildir("tester"), subj))
}

// TestMailchaosProxy runs the stack with mailchaos' proxy (this test binary
// stands in for the mailchaos binary) and the remediated profile: a black
// hole on the clamd link defers clean mail within seconds.
func TestMailchaosProxy(t *testing.T) {
	t.Parallel()
	self, err := os.Executable()
	require.NoError(t, err)
	s := realstack.Start(t, realstack.Options{Mailchaos: self, Profile: realstack.ProfileRemediated})
	require.NotEmpty(t, s.Proxy)
	require.NotEqual(t, s.Clamd, s.ClamdLink)

	f, err := targets.LoadFile(s.TargetFile, false)
	require.NoError(t, err)
	require.Equal(t, s.Proxy, f.Toxiproxy)
	require.Len(t, f.Links, 1)
	require.Equal(t, targets.FileLink{Name: "clamd", Listen: s.ClamdLink, Upstream: s.Clamd}, f.Links[0])

	api := network.NewClient(s.Proxy)
	p, err := api.Proxy(ctx(t), "clamd")
	require.NoError(t, err)
	require.Equal(t, s.ClamdLink, p.Listen)
	require.Equal(t, s.Clamd, p.Upstream)

	subj := subject(t, "clean")
	require.NoError(t, send(t, s.SMTP, subj, "through mailchaos"))
	waitDelivered(t, s.Maildir("tester"), subj)

	// A gray failure on the link, through the gray-failure fault itself:
	// bytes vanish both ways and nothing is closed. The milter's stream to
	// clamd vanishes (clamd waits for it, the milter for clamd's answer):
	// the milter gives up after its ReadTimeout (2s) and Postfix defers.
	// (A black hole on the downstream alone defers at once: clamd answers
	// and closes, and the proxy passes the close on.)
	gray := grayfailure.New()
	req := faults.Request{ID: "gray", Owner: "test", Fault: "gray-failure", Target: f.Target(), Links: []string{"clamd"},
		Params: faults.Params{"mode": "blackhole"}, Duration: time.Minute, TTL: 2 * time.Minute}
	require.NoError(t, gray.Validate(ctx(t), req))
	h, err := gray.Inject(ctx(t), req)
	require.NoError(t, err)
	start := time.Now()
	err = send(t, s.SMTP, subject(t, "clean"), "black hole")
	took := time.Since(start)
	require.Equal(t, 4, code(err)/100, "deferred: %v", err)
	require.GreaterOrEqual(t, took, 1500*time.Millisecond, "the milter waited for clamd")
	require.Less(t, took, 15*time.Second, "remediated defers in seconds, not minutes")
	t.Logf("deferred after %v with the milter's link to clamd black-holed", took.Round(time.Millisecond))

	require.NoError(t, gray.Remove(ctx(t), h))
	p, err = api.Proxy(ctx(t), "clamd")
	require.NoError(t, err)
	require.Empty(t, p.Toxics, "the gray failure is removed")
	subj = subject(t, "clean")
	require.NoError(t, send(t, s.SMTP, subj, "healed"))
	waitDelivered(t, s.Maildir("tester"), subj)
}

// TestAvailable checks that Available explains itself.
func TestAvailable(t *testing.T) {
	t.Parallel()
	err := realstack.Available()
	if err == nil {
		return
	}
	require.Contains(t, err.Error(), "to get it:")
}

// TestLoad reads an env file as the script writes it.
func TestLoad(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	env := "DIR=" + dir + "\nPROFILE=remediated\nSMTP=127.0.0.1:2001\nIMAP=127.0.0.1:2002\nCLAMD=127.0.0.1:2003\n" +
		"MILTER=127.0.0.1:2004\nCLAMD_LINK=127.0.0.1:2005\nPROXY=http://127.0.0.1:2006\nDOMAIN=realstack.test\n" +
		"USERS=tester@realstack.test:tester:tester-pass,sender@realstack.test:sender:sender-pass\n" +
		"MAILDIR=" + dir + "/mail/realstack.test\nPOSTFIX_CONFIG=" + dir + "/postfix\nPOSTFIX_LOG=" + dir + "/log/postfix.log\n" +
		"CLAMD_LOG=" + dir + "/log/clamd.log\nSMTPD_MAXPROC=20\nTARGET=" + dir + "/target.yaml\n"
	require.NoError(t, os.WriteFile(filepath.Join(dir, "env"), []byte(env), 0o644))
	s, err := realstack.Load(dir)
	require.NoError(t, err)
	require.Equal(t, "remediated", s.Profile)
	require.Equal(t, "127.0.0.1:2001", s.SMTP)
	require.Equal(t, "127.0.0.1:2005", s.ClamdLink)
	require.Equal(t, "http://127.0.0.1:2006", s.Proxy)
	require.Equal(t, 20, s.SMTPDMaxProc)
	require.Equal(t, []realstack.User{
		{Address: "tester@realstack.test", Login: "tester", Password: "tester-pass"},
		{Address: "sender@realstack.test", Login: "sender", Password: "sender-pass"},
	}, s.Users)
	require.Equal(t, filepath.Join(dir, "mail/realstack.test/tester"), s.Maildir("tester"))

	require.NoError(t, os.WriteFile(filepath.Join(dir, "env"), []byte("DIR="+dir+"\n"), 0o644))
	_, err = realstack.Load(dir)
	require.ErrorContains(t, err, "incomplete")
}

// TestUpRefusesSymlink: nothing is written through a symlinked folder.
func TestUpRefusesSymlink(t *testing.T) {
	t.Parallel()
	real := t.TempDir()
	link := filepath.Join(t.TempDir(), "link")
	require.NoError(t, os.Symlink(real, link))
	_, err := realstack.Up(ctx(t), link, realstack.Options{})
	require.ErrorContains(t, err, "symlink")
	entries, err := os.ReadDir(real)
	require.NoError(t, err)
	require.Empty(t, entries)
}

// TestCheckDirRefusesFoldersThatAreNotAStacks: a stack is brought up only
// in a new or empty folder or one it had before, under folders only root
// can write: never in /etc, where the script would rewrite the system's own
// configuration.
func TestCheckDirRefusesFoldersThatAreNotAStacks(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("realstack: folders are checked for root ownership; run as root")
	}
	require.ErrorContains(t, realstack.CheckDir("/etc"), "not a stack's folder")
	require.ErrorContains(t, realstack.CheckDir("/var/lib"), "not a stack's folder")

	base, err := os.MkdirTemp("", "checkdir-")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(base) })
	require.NoError(t, os.Chmod(base, 0o755))
	require.NoError(t, realstack.CheckDir(filepath.Join(base, "new")), "a new folder")
	empty := filepath.Join(base, "empty")
	require.NoError(t, os.Mkdir(empty, 0o755))
	require.NoError(t, realstack.CheckDir(empty), "an empty folder")
	require.NoError(t, os.WriteFile(filepath.Join(empty, "notes.txt"), nil, 0o644))
	require.ErrorContains(t, realstack.CheckDir(empty), "not a stack's folder")
	require.NoError(t, os.WriteFile(filepath.Join(empty, realstack.Marker), nil, 0o644))
	require.NoError(t, realstack.CheckDir(empty), "a stack's folder")

	require.NoError(t, os.Chmod(empty, 0o777))
	require.ErrorContains(t, realstack.CheckDir(empty), "writable by other users")
	require.NoError(t, os.Chmod(empty, 0o755))
	open := filepath.Join(base, "open")
	require.NoError(t, os.Mkdir(open, 0o777))
	require.NoError(t, os.Chmod(open, 0o777))
	require.ErrorContains(t, realstack.CheckDir(filepath.Join(open, "stack")), "writable by other users", "a folder above it others can write")
	link := filepath.Join(base, "link")
	require.NoError(t, os.Symlink(empty, link))
	require.ErrorContains(t, realstack.CheckDir(link), "symlink")
}

// TestScriptRefusesAFolderItDidNotMake: the script itself, run by hand on a
// folder that holds something else, writes nothing there.
func TestScriptRefusesAFolderItDidNotMake(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("realstack: the script runs as root only; run as root")
	}
	tool, err := os.MkdirTemp("", "realstack-tool-")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(tool) })
	require.NoError(t, os.Chmod(tool, 0o755))
	script, err := realstack.Install(tool)
	require.NoError(t, err)

	dir, err := os.MkdirTemp("", "not-a-stack-")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	require.NoError(t, os.Chmod(dir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "main.cf"), []byte("keep me\n"), 0o644))
	for _, cmd := range []string{"up", "down", "status"} {
		out, err := exec.Command("bash", script, cmd, dir).CombinedOutput()
		require.Error(t, err, "%s: %s", cmd, out)
		require.Contains(t, string(out), "not a folder realstack.sh made", cmd)
	}
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 1, "nothing was written")
}
