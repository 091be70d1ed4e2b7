// Package network puts faults on the TCP links of a target through
// Toxiproxy: it embeds a toxiproxy server bound to loopback, or drives an
// existing one over its HTTP API, and it provides mailchaos' own toxics for
// gray failures (black hole, stall after the greeting, slow drip, half-open)
// and for clamd-aware AV-engine faults (latency on matching scans only, ERROR
// replies).
//
// It is the only package that imports toxiproxy's toxics. Every control
// call takes a context and has a deadline. Toxics that mailchaos adds are
// named after their owner, injection and expiry time ([ToxicName]), so a
// [Reaper] can remove them once their time-to-live has passed even if the
// process that added them is gone, and a later run can find them.
package network
