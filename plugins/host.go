package plugins

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	plugin "github.com/hashicorp/go-plugin"

	"github.com/mailchaos/mailchaos/plugins/internal/wire"
)

// ProtocolVersion is the version of the fault-plugin wire contract this
// mailchaos speaks.
const ProtocolVersion = wire.ProtocolVersion

// Default timeouts.
const (
	// DefaultCallTimeout bounds every call to a plugin unless the caller's
	// deadline is sooner.
	DefaultCallTimeout = 15 * time.Second
	// DefaultStartTimeout bounds a plugin's start and handshake.
	DefaultStartTimeout = 10 * time.Second
)

// Options configure a [Host].
type Options struct {
	// Logger receives the plugins' log lines, each tagged with plugin=NAME.
	Logger *slog.Logger
	// CallTimeout bounds each call; 0 means [DefaultCallTimeout].
	CallTimeout time.Duration
	// StartTimeout bounds each start; 0 means [DefaultStartTimeout].
	StartTimeout time.Duration
	// Kill, if set, ends when mailchaos must stop at once (a second
	// signal). From then on the host's own removals of a plugin's faults
	// get [KillGrace] more, and stopping a plugin kills its processes
	// without waiting for it to exit.
	Kill context.Context
}

// KillGrace is how long the host keeps trying to remove a plugin's faults
// itself after [Options.Kill] ends.
const KillGrace = 500 * time.Millisecond

// Host starts plugins and owns their processes: Close stops them all.
type Host struct {
	opts Options
	// giveUp ends KillGrace after opts.Kill (the host's removals stop),
	// or once Close is done.
	giveUp     context.Context
	giveUpDone context.CancelFunc

	mu      sync.Mutex
	plugins []*Plugin
	closed  bool
	// sockets is the folder of this process's plugin sockets, made at
	// the first start and removed by Close.
	sockets string
}

// NewHost returns a host with no plugins running.
func NewHost(opts Options) *Host {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.CallTimeout <= 0 {
		opts.CallTimeout = DefaultCallTimeout
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = DefaultStartTimeout
	}
	giveUp, cancel := context.WithCancel(context.Background())
	if opts.Kill != nil {
		context.AfterFunc(opts.Kill, func() { time.AfterFunc(KillGrace, cancel) })
	} else {
		opts.Kill = giveUp // never ends before the host is dropped
	}
	return &Host{opts: opts, giveUp: giveUp, giveUpDone: cancel}
}

// Launch says how to start one plugin.
type Launch struct {
	// Name is the fault the plugin must serve.
	Name string
	// Path is the executable; Args and Env are added to its command line
	// and to mailchaos' environment.
	Path string
	Args []string
	Env  []string
	// Checksum, if set, is the hex SHA-256 the executable must have
	// (plugins.lock); it is checked before the plugin is run.
	Checksum string
	// Builtin marks mailchaos' own faults, served by mailchaos itself.
	Builtin bool
}

// StartError is a plugin that could not be started.
type StartError struct {
	Plugin string
	Path   string
	Err    error
}

func (e *StartError) Error() string {
	return fmt.Sprintf("plugin %s (%s): %v", e.Plugin, e.Path, e.Err)
}

func (e *StartError) Unwrap() error { return e.Err }

// ErrChecksum is a plugin whose executable differs from plugins.lock.
var ErrChecksum = errors.New("checksum differs from plugins.lock")

// VersionError is a plugin speaking another protocol version.
type VersionError struct {
	Plugin, Host int
}

func (e *VersionError) Error() string {
	return fmt.Sprintf("the plugin speaks fault-plugin protocol %d, this mailchaos speaks protocol %d: rebuild the plugin with an SDK of protocol %d (or use a mailchaos that speaks %d)",
		e.Plugin, e.Host, e.Host, e.Plugin)
}

var pluginVersion = regexp.MustCompile(`Plugin version: (\d+)`)

// Start starts a plugin, checks that it serves the fault its name promises
// and returns it. It gives up when ctx ends or the start timeout passes.
func (h *Host) Start(ctx context.Context, l Launch) (*Plugin, error) {
	h.mu.Lock()
	closed := h.closed
	h.mu.Unlock()
	if closed {
		return nil, errors.New("plugin host is closed")
	}
	if !l.Builtin {
		if err := CheckFile(l.Path); err != nil {
			return nil, &StartError{l.Name, l.Path, err}
		}
	}
	h.mu.Lock()
	if h.sockets == "" {
		dir, err := socketDir()
		if err != nil {
			h.mu.Unlock()
			return nil, &StartError{l.Name, l.Path, err}
		}
		h.sockets = dir
	}
	sockets := h.sockets
	h.mu.Unlock()
	if l.Checksum != "" {
		// go-plugin checks a Cmd's checksum; with our runner, the host does.
		if b, err := hex.DecodeString(l.Checksum); err != nil || len(b) != sha256.Size {
			return nil, &StartError{l.Name, l.Path, fmt.Errorf("bad checksum %q", l.Checksum)}
		}
		got, err := Checksum(l.Path)
		if err != nil {
			return nil, &StartError{l.Name, l.Path, err}
		}
		if got != strings.ToLower(l.Checksum) {
			return nil, &StartError{l.Name, l.Path, h.explain(l, plugin.ErrChecksumsDoNotMatch)}
		}
	}
	p := &Plugin{launch: l, timeout: h.opts.CallTimeout, log: h.opts.Logger.With("plugin", l.Name),
		live: map[string]*tracked{}, lost: make(chan struct{}), stopWatch: make(chan struct{}), watchDone: make(chan struct{}),
		kill: h.opts.Kill, giveUp: h.giveUp}
	p.client = plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  wire.Handshake(wire.ProtocolVersion),
		VersionedPlugins: map[int]plugin.PluginSet{wire.ProtocolVersion: wire.PluginSet(&wire.Plugin{})},
		// The process is ours (see proc): its own process group, and
		// bounded waits for its pipes.
		RunnerFunc:       runnerFunc(l, func(pr *proc) { p.proc = pr }),
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		// Sockets go in a folder of this process's, removed by Close, and
		// by the next host if this process is killed outright.
		UnixSocketConfig: &plugin.UnixSocketConfig{TempDir: sockets},
		StartTimeout:     h.opts.StartTimeout,
		Logger:           newHCLogger(p.log, p.closing.Load),
		SyncStdout:       &lineWriter{log: p.log, level: slog.LevelInfo, what: "stdout"},
		SyncStderr:       &lineWriter{log: p.log, level: slog.LevelWarn, what: "stderr"},
	})
	if err := p.connect(ctx); err != nil {
		p.closing.Store(true)
		p.killProc()
		p.client.Kill()
		return nil, &StartError{l.Name, l.Path, h.explain(l, err)}
	}
	go p.watch()
	dctx, cancel := context.WithTimeout(ctx, h.opts.StartTimeout)
	defer cancel()
	spec, sdk, err := p.describe(dctx)
	if err == nil && spec.Name != l.Name {
		err = fmt.Errorf("it serves fault %q, its name promises %q", spec.Name, l.Name)
	}
	if err != nil {
		p.stop()
		return nil, &StartError{l.Name, l.Path, err}
	}
	p.spec, p.sdkVersion = spec, sdk
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		p.stop()
		return nil, errors.New("plugin host is closed")
	}
	h.plugins = append(h.plugins, p)
	return p, nil
}

// explain turns go-plugin's start errors into what the user can act on.
func (h *Host) explain(l Launch, err error) error {
	switch {
	case errors.Is(err, plugin.ErrChecksumsDoNotMatch):
		got, _ := Checksum(l.Path)
		return fmt.Errorf("%w (it is sha256:%s, plugins.lock says sha256:%s): refused; if you rebuilt it on purpose, run 'mailchaos plugins lock'",
			ErrChecksum, got, l.Checksum)
	case strings.Contains(err.Error(), "incompatible API version"):
		if m := pluginVersion.FindStringSubmatch(err.Error()); m != nil {
			var v int
			fmt.Sscan(m[1], &v)
			return &VersionError{Plugin: v, Host: wire.ProtocolVersion}
		}
	case strings.Contains(err.Error(), "Unrecognized remote plugin message"):
		return fmt.Errorf("not a mailchaos fault plugin, or it wrote to standard output before serving: %w", err)
	case strings.Contains(err.Error(), "timeout while waiting for plugin to start"):
		return fmt.Errorf("did not complete its handshake within %s: %w", h.opts.StartTimeout, err)
	}
	return err
}

// Plugins lists the running plugins.
func (h *Host) Plugins() []*Plugin {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]*Plugin(nil), h.plugins...)
}

// Close stops every plugin: faults still in place are removed by the host
// first, then the processes are stopped and waited for. Safe to call more
// than once.
func (h *Host) Close() {
	h.mu.Lock()
	ps := h.plugins
	h.plugins, h.closed = nil, true
	h.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range ps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.stop()
		}()
	}
	wg.Wait()
	h.mu.Lock()
	if h.sockets != "" {
		_ = os.RemoveAll(h.sockets)
		h.sockets = ""
	}
	h.mu.Unlock()
	h.giveUpDone()
}
