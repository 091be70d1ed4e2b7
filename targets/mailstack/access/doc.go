// Package access is the access tier of the embedded reference mail stack:
// several IMAP sites over one shared mailbox store, behind a TCP balancer
// that users connect to, for replaying the mailbox-access incident (sites
// drained for maintenance while a network element in front of another site
// fails silently).
//
// Each [Site] is a go-imap v2 imapserver front end. The balancer ([Tier])
// accepts users' connections and relays each one, byte for byte, to a site
// it dials through an address that a proxy can sit on (see [Interpose]), so
// network faults on a balancer → site link hurt exactly what users see.
//
// Placement is least-connections or round-robin over the usable sites: not
// draining, healthy by the active checks, not ejected by outlier detection.
//
// Active health checks run per site every interval, through the same
// address sessions use: shallow (a TCP connect) or deep (the IMAP greeting,
// then NOOP or LOGIN with a probe account, then LOGOUT, within a timeout).
// A site turns unhealthy after unhealthy-threshold failed checks in a row
// and healthy again after healthy-threshold passed ones.
//
// Passive outlier ejection watches the start of every session: a failed
// connect, no greeting within the slow bound, a reset or close before the
// greeting, or no reply to the client's first command within the slow
// bound is a failure. Failures in a row eject the site for a back-off
// period that doubles on each ejection without a good session in between;
// when it is over the site is retried, and one more failure ejects it
// again. A session whose site did not greet is placed on another site, so
// the user only sees the delay. The last usable site is never ejected.
//
// Maintenance: [Tier.Drain] stops placement on a site, has the site say BYE
// to its open sessions and greet new connections with BYE, and cuts what is
// left after a grace; [Tier.Restore] ends it.
//
// Limits: every listener (the balancer's and each site's) holds at most
// max-connections connections and answers one more with BYE at once; at its
// cap the balancer first ends its longest-silent session. Sites keep
// [SiteHeadroom] connections over the cap so the balancer's health checks
// always find room. A connection is closed at its max-login-failures-th
// failed log-in, and each site reads commands ahead of go-imap's parser to
// answer BAD to oversized literals, out-of-range sequence numbers, deeply
// nested SEARCH criteria and overlong commands (see [SiteLimits]).
//
// Lifecycle: [New] validates a [Config]; [Tier.Start] binds the sites and
// the balancer and starts the health checkers; [Tier.Close] stops them all
// and waits for every goroutine.
package access
