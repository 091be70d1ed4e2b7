// Package mailstack is the embedded reference mail stack that mailchaos hurts
// when no external target is given: a small but real mail system, faithful to
// the mechanics of the AV-engine incident.
//
// Mail enters over SMTP (go-smtp) for the configured domains and users and is
// queued. A bounded pool of scan workers takes each queued message and scans it
// with every configured anti-virus engine over the clamd wire protocol, in
// parallel, waiting for every engine's verdict. The policy knobs of the
// incident are all here: a per-scan timeout, retries, deferral after K scan
// failures with exponential back-off (a deferred message goes back to the
// queue and frees its worker), and an interceptor that quarantines messages
// whose content matches a block list without scanning them. Clean mail is
// delivered to the recipients' INBOX, readable over IMAP (go-imap v2);
// infected or unscannable mail goes to the quarantine mailbox.
//
// Users reach their mailboxes through an access tier (package access):
// several IMAP sites over the one mailbox store, behind a balancer that
// listens on the stack's imap endpoint, with configurable health checking
// (shallow, deep, passive outlier ejection) and maintenance: see
// [Stack.Drain], [Stack.Restore] and [Stack.Sites], also served on
// /api/sites. Every accepted
// message is recorded in a ledger by queue ID and Message-ID and ends
// delivered, quarantined or bounced; messages still queued at shutdown are
// reported as such, never silently dropped.
//
// The stack serves its own clamd-compatible engines (package clamd) on
// loopback ports by default, and every MTA → engine hop and every balancer
// → site hop dials an address taken from configuration, so a proxy can sit
// in between (see [Options.Interpose]). Prometheus metrics are served on
// /metrics next to a JSON view of the ledger on /api/messages.
//
// Lifecycle: [New] validates a [Config]; [Stack.Start] binds every listener
// and starts the workers; [Stack.Shutdown] stops accepting mail, lets in-flight
// scans finish (or puts them back in the queue when its context ends) and
// accounts for every message; [Stack.Close] stops at once.
package mailstack
