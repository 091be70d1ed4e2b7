// Package wire carries mailchaos' fault contract over go-plugin's gRPC
// transport: the handshake both sides must agree on, the go-plugin plugin
// type, and the conversions between faults' Go types and plugins/proto's
// messages. The host (package plugins) and the SDK (plugins/sdk) both use
// it, so that the two ends cannot drift apart.
package wire

import (
	"context"
	"io"

	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/mailchaos/mailchaos/faults"
	"github.com/mailchaos/mailchaos/plugins/proto"
)

// ProtocolVersion is the version of the wire contract (plugins/proto). It
// changes whenever the contract changes incompatibly; a host and a plugin
// of different versions refuse each other at the handshake.
const ProtocolVersion = 1

// PluginKey is the name the fault service is dispensed under.
const PluginKey = "fault"

// Handshake is the go-plugin handshake for protocol version v. The cookie
// only tells a plugin that it was started by mailchaos (run by hand, it
// says so and exits); it is not a security measure.
func Handshake(v uint) plugin.HandshakeConfig {
	return plugin.HandshakeConfig{
		ProtocolVersion:  v,
		MagicCookieKey:   "MAILCHAOS_FAULT_PLUGIN",
		MagicCookieValue: "4f3c2a9e-mailchaos-fault-plugin",
	}
}

// Plugin is the go-plugin plugin of a fault: on the plugin's side Impl is
// served, on the host's side GRPCClient returns a [*Client]. It speaks gRPC
// only.
type Plugin struct {
	plugin.NetRPCUnsupportedPlugin
	// Impl is the injector a plugin serves; unused on the host's side.
	Impl faults.Injector
	// SDKVersion is reported by Describe.
	SDKVersion string
	// OnInject and OnRemove, if set, are told of every fault the plugin
	// injects and removes (the SDK keeps the list to clean up on exit).
	OnInject func(faults.Handle)
	OnRemove func(faults.Handle)
	// OnRequest, if set, is told of every injection before it starts, and
	// the function it returns once it has ended (ok: it returned a handle),
	// so that a fault is known before anything of it exists.
	OnRequest func(faults.Request) (ended func(ok bool))
	// PanicLog, if set, receives the stack of a recovered panic.
	PanicLog io.Writer
}

var _ plugin.GRPCPlugin = (*Plugin)(nil)

// GRPCServer registers the fault service.
func (p *Plugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	proto.RegisterFaultServer(s, &server{impl: p.Impl, sdkVersion: p.SDKVersion, onInject: p.OnInject, onRemove: p.OnRemove,
		onRequest: p.OnRequest, panicLog: p.PanicLog})
	return nil
}

// GRPCClient returns a [*Client] on conn.
func (p *Plugin) GRPCClient(ctx context.Context, _ *plugin.GRPCBroker, conn *grpc.ClientConn) (any, error) {
	return &Client{c: proto.NewFaultClient(conn), done: ctx.Done()}, nil
}

// PluginSet is the plugin set both sides use, keyed by protocol version on
// the host's side.
func PluginSet(p *Plugin) plugin.PluginSet {
	return plugin.PluginSet{PluginKey: p}
}
