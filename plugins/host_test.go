package plugins_test

import (
	"bufio"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/mailchaos/mailchaos/faults"
	"github.com/mailchaos/mailchaos/internal/testnet"
	"github.com/mailchaos/mailchaos/plugins"
	"github.com/mailchaos/mailchaos/targets/proxy"
)

// misbehave is the path of the test plugin, built once for the package.
var misbehave string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "mailchaos-plugins-test")
	if err != nil {
		panic(err)
	}
	misbehave = filepath.Join(dir, plugins.Prefix+"misbehave")
	out, err := exec.Command("go", "build", "-o", misbehave, "./internal/misbehave").CombinedOutput()
	if err != nil {
		panic("build the test plugin: " + err.Error() + "\n" + string(out))
	}
	code := m.Run()
	os.RemoveAll(dir)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			println("goleak:", err.Error())
			code = 1
		}
	}
	os.Exit(code)
}

const waitFor = 20 * time.Second

// fixture is a toxiproxy server with one link, "banner", in front of a
// server that greets each connection with a line.
type fixture struct {
	srv    *proxy.Server
	target faults.Target
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	ctx := context.Background()
	up := testnet.Serve(t, func(_ context.Context, c net.Conn) { _, _ = c.Write([]byte("220 hello\r\n")) })
	srv, err := proxy.StartServer(ctx, "127.0.0.1:0", nil)
	require.NoError(t, err)
	listen, err := srv.Link(ctx, "banner", "127.0.0.1:0", up.Addr)
	require.NoError(t, err)
	t.Cleanup(srv.Close)
	return &fixture{srv: srv, target: faults.Target{Toxiproxy: srv.URL(), Endpoints: map[string]string{},
		Links: []faults.Link{{Name: "banner", Listen: listen, Upstream: up.Addr}}}}
}

// greeting reads the greeting through the link and says how long it took.
func (f *fixture) greeting(t *testing.T) time.Duration {
	t.Helper()
	start := time.Now()
	c, err := net.DialTimeout("tcp", f.target.Links[0].Listen, 5*time.Second)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
	line, err := bufio.NewReader(c).ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "220 hello\r\n", line)
	return time.Since(start)
}

// toxics lists the mailchaos toxics on the server.
func (f *fixture) toxics(t *testing.T) []string {
	t.Helper()
	ps, err := f.srv.Client().Proxies(context.Background())
	require.NoError(t, err)
	var out []string
	for _, p := range ps {
		for _, x := range p.Toxics {
			out = append(out, p.Name+"/"+x.Name)
		}
	}
	return out
}

func (f *fixture) request(id string) faults.Request {
	return faults.Request{ID: id, Owner: "test", Fault: "misbehave", Target: f.target, Links: []string{"banner"},
		Params: faults.Params{"latency": "1500ms"}, Duration: time.Minute, TTL: 2 * time.Minute}
}

// start starts the test plugin with the given environment.
func start(t *testing.T, opts plugins.Options, env ...string) (*plugins.Host, *plugins.Plugin) {
	t.Helper()
	h := plugins.NewHost(opts)
	t.Cleanup(h.Close)
	p, err := h.Start(context.Background(), plugins.Launch{Name: "misbehave", Path: misbehave, Env: env})
	require.NoError(t, err)
	return h, p
}

// gone reports whether a process has exited (a zombie counts: it runs no
// code).
func gone(pid int) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	fields := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
	return len(fields) > 0 && fields[0] == "Z"
}

func TestInjectRemoveThroughThePlugin(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	_, p := start(t, plugins.Options{})
	ctx := context.Background()
	spec, err := p.Describe(ctx)
	require.NoError(t, err)
	require.Equal(t, "misbehave", spec.Name)
	require.NotEmpty(t, p.SDKVersion())

	h, err := p.Inject(ctx, f.request("r1"))
	require.NoError(t, err)
	require.Len(t, h.Toxics, 1)
	require.Equal(t, "test", h.Owner)
	require.GreaterOrEqual(t, f.greeting(t), time.Second, "the latency toxic is in place")
	st, err := p.Status(ctx, h)
	require.NoError(t, err)
	require.True(t, st.Active)

	require.NoError(t, p.Remove(ctx, h))
	require.Empty(t, f.toxics(t))
	require.NoError(t, p.Remove(ctx, h), "remove is idempotent")
	st, err = p.Status(ctx, h)
	require.NoError(t, err)
	require.False(t, st.Active)
}

func TestInvalidParametersCrossTheBoundary(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	_, p := start(t, plugins.Options{})
	req := f.request("r1")
	req.Params = faults.Params{"latency": "soon", "latencyy": "1s"}
	req.Links = []string{"bannr"}
	err := p.Validate(context.Background(), req)
	require.Error(t, err)
	var pe *faults.ParamError
	require.ErrorAs(t, err, &pe)
	msg := err.Error()
	require.Contains(t, msg, "latency")
	require.Contains(t, msg, `did you mean "latency"`)
	require.Contains(t, msg, `did you mean "banner"`)
	var inv interface{ InvalidInput() bool }
	require.ErrorAs(t, err, &inv)
	require.True(t, inv.InvalidInput())
}

func TestPluginKilledMidFaultIsCleanedUpByTheHost(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	_, p := start(t, plugins.Options{})
	ctx := context.Background()
	h, err := p.Inject(ctx, f.request("r1"))
	require.NoError(t, err)
	require.NotEmpty(t, f.toxics(t))

	require.NoError(t, syscall.Kill(p.Pid(), syscall.SIGKILL))
	select {
	case <-p.Lost():
	case <-time.After(waitFor):
		t.Fatal("the host did not notice the plugin die")
	}
	var lost *plugins.LostError
	require.ErrorAs(t, p.LostErr(), &lost)
	require.Contains(t, lost.Error(), "plugin misbehave")
	require.Contains(t, lost.Error(), "exited unexpectedly")
	require.Equal(t, 1, lost.Removed)
	require.Empty(t, f.toxics(t), "the host removed the plugin's toxic")
	require.Less(t, f.greeting(t), time.Second, "the link carries traffic normally")

	// The run's rollback still works: the fault is gone, so removal succeeds.
	require.NoError(t, p.Remove(ctx, h))
	_, err = p.Inject(ctx, f.request("r2"))
	require.ErrorContains(t, err, "plugin misbehave")
}

func TestPluginExitingDuringInject(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	_, p := start(t, plugins.Options{}, "MISBEHAVE_EXIT=inject")
	_, err := p.Inject(context.Background(), f.request("r1"))
	var ce *plugins.CallError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, "inject", ce.Call)
	var lost *plugins.LostError
	require.ErrorAs(t, err, &lost, "the call's error says the plugin is gone: %v", err)
	require.Contains(t, err.Error(), "plugin misbehave: inject:")
	require.Empty(t, f.toxics(t), "the toxic added before the crash is gone")
	<-p.Lost()
}

func TestPluginPanicIsAnErrorAndLeavesNothing(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	_, p := start(t, plugins.Options{}, "MISBEHAVE_PANIC=inject")
	_, err := p.Inject(context.Background(), f.request("r1"))
	require.ErrorContains(t, err, "inject panicked")
	require.Empty(t, f.toxics(t), "the host removed what the panicking inject left")
	require.Nil(t, p.LostErr(), "a recovered panic does not kill the plugin")
	spec, err := p.Describe(context.Background())
	require.NoError(t, err)
	require.Equal(t, "misbehave", spec.Name)
}

func TestHungPluginIsKilledAndItsFaultRemoved(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	_, p := start(t, plugins.Options{CallTimeout: time.Second}, "MISBEHAVE_HANG=remove")
	ctx := context.Background()
	h, err := p.Inject(ctx, f.request("r1"))
	require.NoError(t, err)
	err = p.Remove(ctx, h)
	require.NoError(t, err, "the host removed the fault itself")
	select {
	case <-p.Lost():
	default:
		t.Fatal("a hung plugin is lost")
	}
	require.ErrorContains(t, p.LostErr(), "hung: remove did not answer")
	require.Empty(t, f.toxics(t))
	require.Eventually(t, func() bool { return gone(p.Pid()) }, waitFor, 20*time.Millisecond, "the hung plugin was not killed")
}

func TestHungInjectTimesOut(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	_, p := start(t, plugins.Options{CallTimeout: time.Second}, "MISBEHAVE_HANG=inject")
	_, err := p.Inject(context.Background(), f.request("r1"))
	require.ErrorIs(t, err, plugins.ErrHung)
	require.Empty(t, f.toxics(t))
}

func TestChecksumMismatchIsRefused(t *testing.T) {
	t.Parallel()
	h := plugins.NewHost(plugins.Options{})
	defer h.Close()
	_, err := h.Start(context.Background(), plugins.Launch{Name: "misbehave", Path: misbehave,
		Checksum: strings.Repeat("ab", 32)})
	require.ErrorIs(t, err, plugins.ErrChecksum)
	require.Contains(t, err.Error(), "plugin misbehave")
	require.Contains(t, err.Error(), "mailchaos plugins lock")

	sum, err := plugins.Checksum(misbehave)
	require.NoError(t, err)
	p, err := h.Start(context.Background(), plugins.Launch{Name: "misbehave", Path: misbehave, Checksum: sum})
	require.NoError(t, err, "the right checksum is accepted")
	require.Equal(t, "misbehave", p.Name())
}

func TestProtocolVersionMismatchNamesBoth(t *testing.T) {
	t.Parallel()
	h := plugins.NewHost(plugins.Options{})
	defer h.Close()
	_, err := h.Start(context.Background(), plugins.Launch{Name: "misbehave", Path: misbehave, Env: []string{"MISBEHAVE_PROTOCOL=99"}})
	var ve *plugins.VersionError
	require.ErrorAs(t, err, &ve)
	require.Equal(t, 99, ve.Plugin)
	require.Equal(t, plugins.ProtocolVersion, ve.Host)
	require.Contains(t, err.Error(), "protocol 99")
	require.Contains(t, err.Error(), "protocol "+strconv.Itoa(plugins.ProtocolVersion))
}

func TestStdoutBeforeServeIsExplained(t *testing.T) {
	t.Parallel()
	h := plugins.NewHost(plugins.Options{})
	defer h.Close()
	_, err := h.Start(context.Background(), plugins.Launch{Name: "misbehave", Path: misbehave, Env: []string{"MISBEHAVE_STDOUT=hello"}})
	require.ErrorContains(t, err, "wrote to standard output before serving")
}

func TestWrongNameIsRefused(t *testing.T) {
	t.Parallel()
	h := plugins.NewHost(plugins.Options{})
	defer h.Close()
	_, err := h.Start(context.Background(), plugins.Launch{Name: "other", Path: misbehave})
	require.ErrorContains(t, err, `serves fault "misbehave", its name promises "other"`)
}

func TestCloseRemovesFaultsLeftInPlace(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	h, p := start(t, plugins.Options{})
	_, err := p.Inject(context.Background(), f.request("r1"))
	require.NoError(t, err)
	h.Close()
	require.Empty(t, f.toxics(t))
	require.Eventually(t, func() bool { return gone(p.Pid()) }, waitFor, 20*time.Millisecond, "the plugin was not stopped")
	require.False(t, errors.Is(p.LostErr(), context.Canceled))
}

// TestPluginSocketsLeaveNothingBehind: a host's plugin sockets live in a
// folder of its own, removed when it closes; a folder left by a process
// that was killed outright is removed by the next host.
func TestPluginSocketsLeaveNothingBehind(t *testing.T) {
	base := filepath.Join(os.TempDir(), "mailchaos-plugins")
	// A process that no longer exists: a child that has exited.
	cmd := exec.Command("true")
	require.NoError(t, cmd.Run())
	stale := filepath.Join(base, strconv.Itoa(cmd.Process.Pid)+"-1")
	require.NoError(t, os.MkdirAll(stale, 0o700))
	require.NoError(t, os.Chmod(base, 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(stale, "plugin123"), nil, 0o600))

	h, _ := start(t, plugins.Options{})
	_, err := os.Stat(stale)
	require.ErrorIs(t, err, os.ErrNotExist, "the dead process's sockets are removed")
	mine, err := filepath.Glob(filepath.Join(base, strconv.Itoa(os.Getpid())+"-*"))
	require.NoError(t, err)
	require.NotEmpty(t, mine, "the host's sockets are in its own folder")
	h.Close()
	for _, d := range mine {
		_, err := os.Stat(d)
		require.ErrorIs(t, err, os.ErrNotExist, "closed, the host removed its folder")
	}
}
