package wire

import (
	"io"

	"github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"
)

// Serve serves p as a plugin speaking protocol version, until the host
// kills the process. logOut is the plugin's original standard error (go-
// plugin replaces os.Stderr once serving).
func Serve(p *Plugin, version uint, logOut io.Writer) {
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: Handshake(version),
		Plugins:         PluginSet(p),
		GRPCServer:      plugin.DefaultGRPCServer,
		// go-plugin's own messages, as JSON the host relays at their level.
		Logger: hclog.New(&hclog.LoggerOptions{Output: logOut, JSONFormat: true, Level: hclog.Warn}),
	})
}
