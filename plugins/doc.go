// Package plugins is mailchaos' side of the fault-plugin boundary: it finds
// plugin executables, checks them against plugins.lock, starts them with
// hashicorp/go-plugin (gRPC only, automatic mutual TLS) and hands each one
// out as a [faults.Injector].
//
// Every call carries a timeout. A plugin that crashes or hangs becomes an
// error naming the plugin and the call; the host removes the faults the
// plugin had in place itself (link faults are toxics named after their
// owner and ID, see faults/network), and [Plugin.Lost] tells the run. A
// plugin whose host dies removes its own faults and exits (plugins/sdk).
//
// The built-in faults go through the same boundary: mailchaos starts
// itself in plugin mode for each (see [Builtin]).
package plugins
