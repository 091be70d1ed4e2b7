// Package proxy runs the toxiproxy server mailchaos puts its link faults
// on: toxiproxy embedded as a library, its API on loopback behind the
// guards of internal/httpguard and a check that refuses proxies listening
// off loopback, mailchaos' own toxic types (black hole, stall after the
// greeting, slow drip, clamd-aware latency and ERROR replies, divert), a
// [Reaper] that removes toxics past their expiry, and the links a server
// keeps: created at start ([ServerOptions].Links) and, with a state file
// ([ServerOptions].State, [LoadState], [SaveState]), saved after each API
// change and restored at the next start, without their toxics.
//
// It is the server side of faults/network and the only package that
// imports toxiproxy's server and toxics. It is used by what starts a
// server: the targets package (an in-process server for a run) and
// `mailchaos proxy serve`. Faults and plugins reach a server through
// faults/network's client only.
package proxy
