// Package loadsurge is an open-loop SMTP load generator, an open-loop IMAP
// log-in generator, and the load-surge fault built on them.
//
// A [Run] sends messages to one SMTP server at the times an arrival-rate
// [Schedule] sets (constant, ramp, step or spike), whatever the server
// does: a single scheduler goroutine makes messages due, and up to
// Concurrency workers, each with its own SMTP session, send them. When every
// session is busy, due messages wait in a bounded backlog; the wait counts in
// their latency, which runs from the scheduled time to the reply to the end
// of DATA. A slow server therefore shows up as latency and backlog, never as
// a quietly lower offered rate (no coordinated omission). The closed loop
// (rate 0) instead has every worker send back to back, for peak throughput.
// Workers pipeline their commands (RFC 2920) when the server advertises
// PIPELINING, so that a message on a busy session costs one round trip.
//
// Every message carries a unique X-Mailchaos-Id header, "<run ID>-<seq>";
// the run keeps which ones were accepted ([Run.Accepted]) so that what the
// server delivered can be accounted for afterwards. Each message ends with
// one [Outcome]; latencies go to HDR histograms with microsecond resolution.
// A message still in flight at the run's hard end (when the grace after
// its duration or a stop runs out, or it is aborted) is cut, not timed out;
// the run counts those cut after their end of DATA was sent, which the
// server may have accepted ([Result.CutAfterData]). The offered rate is
// over the time the schedule made messages due, not over the grace.
//
// An [IMAPRun] ([StartIMAP]) shares the schedules, the open-loop timing
// (latency from the scheduled time), the backlog, the histograms and the
// summary with the SMTP run; each of its items is a log-in session:
// connect, LOGIN, SELECT, FETCH of the newest envelopes, LOGOUT, on a
// connection of its own, through go-imap's client. A session ends as
// succeeded or with the step that failed ([IMAPOutcome]).
//
// [Injector] is the load-surge fault ([faults.Injector]): Inject starts a
// Run or, with parameter protocol imap, an IMAPRun against the target's
// smtp or imap endpoint; a ramp goes over the request's planned Duration;
// Remove stops it, and it ends by itself when the request's TTL has passed.
// Its Status figures (package loadfig) are cumulative counts and a
// cumulative latency histogram with fixed buckets, so that a reader can
// work out the rates, shares and percentiles of any window from two
// snapshots.
package loadsurge
