// Package realstack runs a real mail stack on loopback: private instances of
// Debian's Postfix, clamav-milter, clamd and Dovecot, everything under one
// folder. It is to mail what net/http/httptest is to HTTP: tests in any
// package call [Start] to get a running stack, send mail to it over SMTP,
// read it back over IMAP, and hurt it (a slow or broken clamd link, a load
// surge) to see how real software behaves, not only the embedded reference
// stack.
//
// The stack is brought up and down by realstack.sh (embedded in this package
// and also usable by hand; see the README next to it). The stack needs root
// and the packages postfix, dovecot-imapd, clamav-daemon and clamav-milter;
// [Available] says what is missing, and [Start] skips the test when something
// is, except under CI=true, where it fails it.
//
// Mail path: SMTP (Postfix smtpd) hands each message to clamav-milter at the
// end of DATA; the milter streams it to clamd (INSTREAM), directly or through
// a link (a proxy on which faults are injected). Infected mail is rejected
// with 5xx, a failing scan gives 4xx (OnFail Defer). Accepted mail is
// delivered by Postfix's virtual(8) into Maildirs that Dovecot serves.
package realstack

import (
	"bufio"
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The profiles: the pair of configurations of the AV-latency experiment.
const (
	// ProfileIncident is the configuration as commonly deployed: Postfix's
	// milter_content_timeout default (300s), clamav-milter's ReadTimeout
	// default (120s), clamd's queue defaults, no interceptor.
	ProfileIncident = "incident"
	// ProfileRemediated defers early (milter ReadTimeout 2s, Postfix
	// milter_content_timeout 3s), gives clamd longer queues and rejects
	// known test viruses with body_checks before they reach the milter.
	ProfileRemediated = "remediated"
)

// Domain is the mail domain the stack accepts mail for.
const Domain = "realstack.test"

//go:embed realstack.sh
var script []byte

//go:embed db
var db embed.FS

// Options configure a stack. The zero value is the incident profile with
// clamav-milter talking to clamd directly.
type Options struct {
	// Profile is ProfileIncident (the default) or ProfileRemediated.
	Profile string
	// ClamdVia is a loopback host:port that clamav-milter uses to reach
	// clamd instead of clamd's own address: a link (proxy) in front of
	// clamd that the caller runs, forwarding to clamd (fix clamd's port
	// with Ports.Clamd so that the link knows it before the stack starts:
	// clamav-milter probes clamd through the link when it starts). With
	// Mailchaos set, the link is created on mailchaos' proxy at this
	// address instead.
	ClamdVia string
	// Mailchaos is the path of a mailchaos binary. When set, the stack also
	// runs "mailchaos proxy serve" and puts a link named "clamd" on it
	// between clamav-milter and clamd ([Stack.Proxy], [Stack.ClamdLink]).
	Mailchaos string
	// Ports fixes listening ports; zero ones are chosen free.
	Ports Ports
	// SMTPDMaxProc is Postfix's smtpd process limit (default 20, the same
	// in both profiles).
	SMTPDMaxProc int
	// Watch is the PID of a process whose exit takes the stack down (a
	// watchdog runs "down" then), so that a killed test leaves no daemons.
	// Zero means none.
	Watch int
}

// Ports are fixed listening ports on 127.0.0.1; zero means a free one.
type Ports struct {
	SMTP, IMAP, Clamd, Milter int
	// Proxy is the API port of mailchaos' proxy (with Options.Mailchaos).
	Proxy int
	// Link is the port of the clamd link on that proxy, unless
	// Options.ClamdVia gives its address.
	Link int
}

// User is a mailbox of the stack.
type User struct {
	// Address is the e-mail address, such as tester@realstack.test.
	Address string
	// Login is the IMAP user name (the local part: Dovecot logs users in by
	// the short name).
	Login string
	// Password is the IMAP password.
	Password string
}

// Stack is a running (or stopped) stack, as described by its folder's env
// file.
type Stack struct {
	// Dir is the folder holding everything of the stack.
	Dir string
	// Profile is the profile the stack runs with.
	Profile string
	// SMTP is Postfix's smtpd address (host:port).
	SMTP string
	// IMAP is Dovecot's IMAP address (plain IMAP, plaintext log-in allowed).
	IMAP string
	// Clamd is clamd's address.
	Clamd string
	// Milter is clamav-milter's address (Postfix's smtpd_milters).
	Milter string
	// ClamdLink is the address clamav-milter reaches clamd at: Clamd, or
	// the link in front of it.
	ClamdLink string
	// Proxy is the API URL of mailchaos' proxy server, when one runs.
	Proxy string
	// Users are the stack's mailboxes.
	Users []User
	// MaildirRoot is the folder holding one Maildir per login.
	MaildirRoot string
	// PostfixConfig is Postfix's configuration folder (postfix -c,
	// postqueue -c).
	PostfixConfig string
	// PostfixLog, DovecotLog, ClamdLog, MilterLog and ProxyLog are the
	// daemons' log files (ProxyLog empty without a proxy).
	PostfixLog, DovecotLog, ClamdLog, MilterLog, ProxyLog string
	// TargetFile is the mailchaos target file describing the stack.
	TargetFile string
	// SMTPDMaxProc is Postfix's smtpd process limit.
	SMTPDMaxProc int
}

// Available reports whether a stack can run here: Linux, root, and the
// programs and system users of the packages postfix, dovecot-imapd,
// clamav-daemon and clamav-milter. The error says what is missing and how to
// get it.
func Available() error {
	if runtime.GOOS != "linux" {
		return fmt.Errorf("realstack needs Linux with Debian's mail packages, not %s", runtime.GOOS)
	}
	var missing, hints []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root (the daemons start as root and drop privileges)")
		hints = append(hints, "run as root")
	}
	var progs []string
	for _, p := range []string{"bash", "postfix", "postconf", "dovecot", "clamd", "clamav-milter", "flock", "setsid"} {
		if lookPath(p) == "" {
			progs = append(progs, p)
		}
	}
	if len(progs) > 0 {
		missing = append(missing, "programs "+strings.Join(progs, ", "))
	}
	var users []string
	for _, u := range []string{"nobody", "postfix", "dovecot", "dovenull", "clamav"} {
		if _, err := user.Lookup(u); err != nil {
			users = append(users, u)
		}
	}
	if len(users) > 0 {
		missing = append(missing, "system users "+strings.Join(users, ", "))
	}
	if d := lookPath("dovecot"); d != "" {
		// The configuration written is Dovecot 2.3's; 2.4 refuses it.
		if out, err := exec.Command(d, "--version").Output(); err == nil && !bytes.HasPrefix(out, []byte("2.3")) {
			missing = append(missing, fmt.Sprintf("Dovecot 2.3 (this is %s)", bytes.TrimSpace(out)))
			hints = append(hints, "Debian 12's dovecot-imapd")
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if len(progs) > 0 || len(users) > 0 {
		hints = append(hints, "apt-get install postfix dovecot-imapd clamav-daemon clamav-milter")
	}
	return fmt.Errorf("the real mail stack cannot run here: missing %s (to get it: %s)",
		strings.Join(missing, "; "), strings.Join(hints, ", and "))
}

func lookPath(name string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, d := range []string{"/usr/sbin", "/sbin"} {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p
		}
	}
	return ""
}

// Install writes realstack.sh and its signature database into dir/tool and
// returns the script's path. [Up] does it; it is exported for callers that
// want to run the script by hand on a folder.
func Install(dir string) (string, error) {
	tool := filepath.Join(dir, "tool")
	if err := mkdirNoLink(tool); err != nil {
		return "", err
	}
	if err := mkdirNoLink(filepath.Join(tool, "db")); err != nil {
		return "", err
	}
	path := filepath.Join(tool, "realstack.sh")
	if err := writeNoLink(path, script, 0o755); err != nil {
		return "", err
	}
	err := fs.WalkDir(db, "db", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := db.ReadFile(p)
		if err != nil {
			return err
		}
		return writeNoLink(filepath.Join(tool, p), data, 0o644)
	})
	if err != nil {
		return "", fmt.Errorf("install signature database: %w", err)
	}
	return path, nil
}

// Marker is the file that marks a folder as a stack's: the script writes,
// reconfigures and stops nothing in a folder without it, unless the folder
// is new or empty.
const Marker = ".realstack"

// CheckDir checks that dir may hold a stack, before anything is written
// into it as root: it is not a symlink; it does not exist, is empty, or
// holds [Marker] (or only the script's tool folder); it and every folder
// above it are owned by root and writable by root alone (a sticky folder
// such as /tmp excepted above it). It is what keeps `up /etc` from
// rewriting the system's own Postfix, Dovecot and ClamAV configuration.
func CheckDir(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	for p := filepath.Dir(abs); ; p = filepath.Dir(p) {
		st, err := os.Lstat(p)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		if err := rootOnly(p, st, true); err != nil {
			return err
		}
		if p == "/" {
			break
		}
	}
	st, err := os.Lstat(abs)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := rootOnly(abs, st, false); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(abs, Marker)); err == nil {
		return nil
	}
	entries, err := os.ReadDir(abs)
	if err != nil {
		return err
	}
	if len(entries) == 0 || len(entries) == 1 && entries[0].Name() == "tool" {
		return nil
	}
	return fmt.Errorf("%s is not a stack's folder (no %s in it) and not empty: a stack is brought up only in a new or empty folder", abs, Marker)
}

// rootOnly refuses a symlink and a folder that users other than root can
// write (a sticky one allowed when sticky is true).
func rootOnly(p string, st fs.FileInfo, sticky bool) error {
	if st.Mode()&fs.ModeSymlink != 0 {
		return fmt.Errorf("%s is a symlink; give a path without one", p)
	}
	if !st.IsDir() {
		return fmt.Errorf("%s is not a directory", p)
	}
	owner := -1
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		owner = int(sys.Uid)
	}
	writable := st.Mode().Perm()&0o022 != 0 && !(sticky && st.Mode()&fs.ModeSticky != 0)
	if owner != 0 || writable {
		return fmt.Errorf("%s is not owned by root or is writable by other users; give a folder only root can write", p)
	}
	return nil
}

func mkdirNoLink(dir string) error {
	if st, err := os.Lstat(dir); err == nil {
		if !st.IsDir() {
			return fmt.Errorf("%s exists and is not a directory", dir)
		}
		return nil
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	return os.Chmod(dir, 0o755)
}

// writeNoLink writes through a temporary file and a rename, so that a
// symlink at path is replaced rather than followed.
func writeNoLink(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".write-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	_, werr := f.Write(data)
	cerr := f.Close()
	if err := errors.Join(werr, cerr, os.Chmod(f.Name(), mode)); err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// Up brings a stack up in dir (created if missing; it must be a real
// directory that the daemons' unprivileged users can traverse, on a path of
// at most 60 bytes) and returns it. The folder must be new, empty, or one a
// stack was brought up in before (see [CheckDir]). On a folder whose stack
// runs already it starts nothing: it rewrites the script, env and
// target.yaml and re-arms the watchdog. A failed Up leaves nothing running;
// its error carries the end of the failing daemon's log.
func Up(ctx context.Context, dir string, opts Options) (*Stack, error) {
	if err := CheckDir(dir); err != nil {
		return nil, fmt.Errorf("realstack up: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("realstack up: %w", err)
	}
	path, err := Install(dir)
	if err != nil {
		return nil, fmt.Errorf("realstack up: %w", err)
	}
	args := []string{"up", dir}
	if opts.Profile != "" {
		args = append(args, "--profile", opts.Profile)
	}
	if opts.ClamdVia != "" {
		args = append(args, "--clamd-via", opts.ClamdVia)
	}
	if opts.Mailchaos != "" {
		args = append(args, "--mailchaos", opts.Mailchaos)
	}
	if opts.Watch != 0 {
		args = append(args, "--watch", strconv.Itoa(opts.Watch))
	}
	env := []string{}
	for k, v := range map[string]int{
		"REALSTACK_SMTP_PORT": opts.Ports.SMTP, "REALSTACK_IMAP_PORT": opts.Ports.IMAP,
		"REALSTACK_CLAMD_PORT": opts.Ports.Clamd, "REALSTACK_MILTER_PORT": opts.Ports.Milter,
		"REALSTACK_PROXY_PORT": opts.Ports.Proxy, "REALSTACK_LINK_PORT": opts.Ports.Link,
		"REALSTACK_SMTPD_MAXPROC": opts.SMTPDMaxProc,
	} {
		if v != 0 {
			env = append(env, k+"="+strconv.Itoa(v))
		}
	}
	// Free ports are chosen before the daemons bind them; another process
	// may take one in between. Then the script has stopped everything and
	// a second attempt picks other ports.
	for attempt := 1; ; attempt++ {
		out, err := run(ctx, path, env, args...)
		if err == nil {
			break
		}
		if attempt < 3 && ctx.Err() == nil && bytes.Contains(bytes.ToLower(out), []byte("address already in use")) {
			continue
		}
		return nil, fmt.Errorf("realstack up %s: %w\n%s", dir, err, out)
	}
	return Load(dir)
}

// run runs the script and returns its combined output.
func run(ctx context.Context, path string, env []string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "bash", append([]string{path}, args...)...)
	// The caller's own REALSTACK_* settings (a port fixed for a stack by
	// hand, another signature database) must not leak into this one.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "REALSTACK_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	// On cancellation the script gets SIGTERM, on which an unfinished up
	// stops what it started; SIGKILL follows if it takes too long. The
	// daemons do not inherit our pipes, so Wait does not wait for them.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	err := cmd.Run()
	return out.Bytes(), err
}

// Load reads the env file of the stack in dir.
func Load(dir string) (*Stack, error) {
	f, err := os.Open(filepath.Join(dir, "env"))
	if err != nil {
		return nil, fmt.Errorf("load realstack: %w", err)
	}
	defer f.Close()
	kv := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			kv[k] = v
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("load realstack %s: %w", f.Name(), err)
	}
	s := &Stack{
		Dir: kv["DIR"], Profile: kv["PROFILE"],
		SMTP: kv["SMTP"], IMAP: kv["IMAP"], Clamd: kv["CLAMD"], Milter: kv["MILTER"],
		ClamdLink: kv["CLAMD_LINK"], Proxy: kv["PROXY"],
		MaildirRoot: kv["MAILDIR"], PostfixConfig: kv["POSTFIX_CONFIG"],
		PostfixLog: kv["POSTFIX_LOG"], DovecotLog: kv["DOVECOT_LOG"], ClamdLog: kv["CLAMD_LOG"],
		MilterLog: kv["MILTER_LOG"], ProxyLog: kv["PROXY_LOG"], TargetFile: kv["TARGET"],
	}
	s.SMTPDMaxProc, _ = strconv.Atoi(kv["SMTPD_MAXPROC"])
	for _, u := range strings.Split(kv["USERS"], ",") {
		parts := strings.SplitN(u, ":", 3)
		if len(parts) == 3 {
			s.Users = append(s.Users, User{Address: parts[0], Login: parts[1], Password: parts[2]})
		}
	}
	if s.Dir == "" || s.SMTP == "" || s.IMAP == "" || s.Clamd == "" || len(s.Users) == 0 {
		return nil, fmt.Errorf("load realstack: %s is incomplete", f.Name())
	}
	return s, nil
}

func (s *Stack) script() string { return filepath.Join(s.Dir, "tool", "realstack.sh") }

// Down stops every daemon of the stack (by PID) and the watchdog; logs and
// mail stay in Dir. Stopping a stopped stack succeeds. It returns what the
// script printed: one line per daemon stopped.
func (s *Stack) Down(ctx context.Context) (string, error) {
	out, err := run(ctx, s.script(), nil, "down", s.Dir)
	if err != nil {
		return string(out), fmt.Errorf("realstack down %s: %w\n%s", s.Dir, err, out)
	}
	return string(out), nil
}

// ApplyProfile rewrites the configuration for profile and restarts or
// reloads what it changes (clamd and clamav-milter are restarted, Postfix
// reloaded); sessions that start after it returns run with the new
// settings.
func (s *Stack) ApplyProfile(ctx context.Context, profile string) error {
	out, err := run(ctx, s.script(), nil, "apply", s.Dir, "--profile", profile)
	if err != nil {
		return fmt.Errorf("realstack apply %s: %w\n%s", profile, err, out)
	}
	n, err := Load(s.Dir)
	if err != nil {
		return err
	}
	*s = *n
	return nil
}

// Status returns the script's status report: 0 when every daemon runs.
func (s *Stack) Status(ctx context.Context) (string, error) {
	out, err := run(ctx, s.script(), nil, "status", s.Dir)
	if err != nil {
		return string(out), fmt.Errorf("realstack status %s: %w", s.Dir, err)
	}
	return string(out), nil
}

// Maildir returns the Maildir of the user who logs in as login.
func (s *Stack) Maildir(login string) string { return filepath.Join(s.MaildirRoot, login) }

// User returns the user who logs in as login.
func (s *Stack) User(login string) (User, bool) {
	for _, u := range s.Users {
		if u.Login == login {
			return u, true
		}
	}
	return User{}, false
}

// Processes returns the PIDs recorded in the stack's pid files, by daemon
// (clamd, milter, dovecot, postfix, proxy, watch). A stopped stack has none.
func (s *Stack) Processes() (map[string]int, error) {
	files, err := filepath.Glob(filepath.Join(s.Dir, "run", "*.pid"))
	if err != nil {
		return nil, fmt.Errorf("realstack processes: %w", err)
	}
	sort.Strings(files)
	pids := map[string]int{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return nil, fmt.Errorf("realstack processes: %w", err)
		}
		fields := strings.Fields(string(data))
		if len(fields) == 0 {
			continue
		}
		pid, err := strconv.Atoi(fields[0])
		if err != nil {
			return nil, fmt.Errorf("realstack processes: %s: %w", f, err)
		}
		pids[strings.TrimSuffix(filepath.Base(f), ".pid")] = pid
	}
	return pids, nil
}

// ClamdScans counts the INSTREAM scans clamd has logged (clean and
// infected): how many messages reached the engine.
func (s *Stack) ClamdScans() (int, error) {
	data, err := os.ReadFile(s.ClamdLog)
	if err != nil {
		return 0, fmt.Errorf("count clamd scans: %w", err)
	}
	return bytes.Count(data, []byte("instream(")), nil
}
