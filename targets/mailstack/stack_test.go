package mailstack_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/mailchaos/mailchaos/targets/mailstack"
)

func TestMain(m *testing.M) {
	flag.Parse()
	var opts []goleak.Option
	if f := flag.Lookup("test.bench"); f != nil && f.Value.String() != "" {
		// BenchmarkEjectGraySite opens thousands of connections through a
		// reset_peer toxic. When such a toxic has closed a connection, the
		// toxic before it in toxiproxy's chain can block for ever handing
		// on the connection's last chunk (NoopToxic.Pipe sends without
		// watching its interrupt): a leak inside toxiproxy, tolerated for
		// benchmarks only; tests stay strict.
		opts = append(opts, goleak.IgnoreTopFunction("github.com/Shopify/toxiproxy/v2/toxics.(*NoopToxic).Pipe"))
	}
	goleak.VerifyTestMain(m, opts...)
}

// eicar is the EICAR anti-virus test string.
const eicar = `X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*`

// waitFor is how long a test waits for a condition before failing; generous
// so that a busy 2-core machine does not fail tests.
const waitFor = 20 * time.Second

// testConfig is the default configuration on free loopback ports.
func testConfig(t testing.TB, profile string) mailstack.Config {
	t.Helper()
	cfg, err := mailstack.ProfileConfig(profile)
	require.NoError(t, err)
	cfg.SMTP.Listen = "127.0.0.1:0"
	cfg.IMAP.Listen = "127.0.0.1:0"
	cfg.Metrics.Listen = "127.0.0.1:0"
	return cfg
}

// startStack starts a stack and stops it (gracefully, then for good) when
// the test ends.
func startStack(t testing.TB, cfg mailstack.Config) *mailstack.Stack {
	t.Helper()
	s, err := mailstack.New(cfg, mailstack.Options{})
	require.NoError(t, err)
	require.NoError(t, s.Start(context.Background()))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
		_ = s.Close()
	})
	return s
}

// sendMail sends one message with a real SMTP client and returns its
// Message-ID.
func sendMail(t testing.TB, addr, from string, to []string, subject, body string) string {
	t.Helper()
	id := fmt.Sprintf("<%d.%s@test>", time.Now().UnixNano(), strings.ReplaceAll(subject, " ", "-"))
	msg := fmt.Sprintf("From: %s\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: %s\r\n\r\n%s\r\n",
		from, strings.Join(to, ", "), subject, id, body)
	require.NoError(t, plainSendMail(addr, nil, from, to, strings.NewReader(msg)))
	return id
}

// imapLogin returns a logged-in IMAP client, logged out at the end of the test.
func imapLogin(t testing.TB, addr, user string) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialInsecure(addr, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	require.NoError(t, c.Login(user, "password").Wait())
	return c
}

// searchMessageID returns the sequence numbers of INBOX messages with the
// given Message-ID, using IMAP SEARCH HEADER.
func searchMessageID(t testing.TB, c *imapclient.Client, id string) []uint32 {
	t.Helper()
	_, err := c.Select("INBOX", nil).Wait()
	require.NoError(t, err)
	data, err := c.Search(&imap.SearchCriteria{
		Header: []imap.SearchCriteriaHeaderField{{Key: "Message-Id", Value: id}},
	}, nil).Wait()
	require.NoError(t, err)
	return data.AllSeqNums()
}

// scrape reads the stack's /metrics with a real HTTP client and the
// Prometheus text parser.
func scrape(t testing.TB, s *mailstack.Stack) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + s.Endpoint("metrics") + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	require.NoError(t, err)
	return fams
}

// metricValue sums the samples of a gauge or counter whose labels include
// every label given as name=value pairs.
func metricValue(fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	f, ok := fams[name]
	if !ok {
		return 0
	}
	var sum float64
next:
	for _, m := range f.GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, lp := range m.GetLabel() {
				if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		case m.Histogram != nil:
			sum += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return sum
}

// waitState waits until every message with the given Message-IDs is in a
// final state and returns their records.
func waitFinal(t testing.TB, s *mailstack.Stack, ids ...string) []mailstack.Record {
	t.Helper()
	var recs []mailstack.Record
	require.Eventually(t, func() bool {
		recs = recs[:0]
		for _, id := range ids {
			rs := s.MessagesByID(id)
			if len(rs) != 1 || !rs[0].State.Final() {
				return false
			}
			recs = append(recs, rs[0])
		}
		return true
	}, waitFor, 10*time.Millisecond, "messages never reached a final state")
	return recs
}

func TestDeliveredMailIsReadableOverIMAP(t *testing.T) {
	t.Parallel()
	s := startStack(t, testConfig(t, mailstack.ProfileRemediated))
	id := sendMail(t, s.Endpoint("smtp"), "alice@example.test", []string{"bob@example.test"}, "hello bob", "clean body")
	recs := waitFinal(t, s, id)
	require.Equal(t, mailstack.StateDelivered, recs[0].State)

	c := imapLogin(t, s.Endpoint("imap"), "bob@example.test")
	boxes, err := c.List("", "*", nil).Collect()
	require.NoError(t, err)
	require.NotEmpty(t, boxes)
	require.Equal(t, "INBOX", boxes[0].Mailbox)

	seq := searchMessageID(t, c, id)
	require.Len(t, seq, 1)
	msgs, err := c.Fetch(imap.SeqSetNum(seq...), &imap.FetchOptions{
		Envelope: true, BodySection: []*imap.FetchItemBodySection{{}},
	}).Collect()
	require.NoError(t, err)
	require.Len(t, msgs, 1)
	require.Equal(t, "hello bob", msgs[0].Envelope.Subject)
	body := msgs[0].FindBodySection(&imap.FetchItemBodySection{})
	require.Contains(t, string(body), "clean body")
	require.Contains(t, string(body), "Received: from ")

	fams := scrape(t, s)
	require.Equal(t, 1.0, metricValue(fams, mailstack.MetricDelivered))
	require.Equal(t, 1.0, metricValue(fams, mailstack.MetricDeliveryLatency))
	require.Equal(t, 3.0, metricValue(fams, mailstack.MetricScans, "result", "clean"))
	require.Equal(t, 0.0, metricValue(fams, mailstack.MetricQueueDepth))
}

func TestSMTPRejections(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, mailstack.ProfileRemediated)
	cfg.SMTP.MaxMessageBytes = 1024
	s := startStack(t, cfg)
	addr := s.Endpoint("smtp")

	var se *smtp.SMTPError
	err := plainSendMail(addr, nil, "alice@example.test", []string{"nobody@example.test"}, strings.NewReader("Subject: x\r\n\r\nx\r\n"))
	require.ErrorAs(t, err, &se)
	require.Equal(t, 550, se.Code)
	require.Contains(t, se.Message, "no such user")

	err = plainSendMail(addr, nil, "alice@example.test", []string{"someone@elsewhere.test"}, strings.NewReader("Subject: x\r\n\r\nx\r\n"))
	require.ErrorAs(t, err, &se)
	require.Equal(t, 550, se.Code)
	require.Contains(t, se.Message, "relay")

	big := "Subject: big\r\n\r\n" + strings.Repeat("0123456789abcdef\r\n", 200)
	err = plainSendMail(addr, nil, "alice@example.test", []string{"bob@example.test"}, strings.NewReader(big))
	require.ErrorAs(t, err, &se)
	require.Equal(t, 552, se.Code)

	fams := scrape(t, s)
	require.Equal(t, 1.0, metricValue(fams, mailstack.MetricRejected, "reason", "unknown-recipient"))
	require.Equal(t, 1.0, metricValue(fams, mailstack.MetricRejected, "reason", "relay-denied"))
	require.Equal(t, 1.0, metricValue(fams, mailstack.MetricRejected, "reason", "too-large"))
	require.Equal(t, 0, s.Counts().Accepted, "rejected mail must not be accepted")
}

func TestEICARIsQuarantinedNeverDelivered(t *testing.T) {
	t.Parallel()
	s := startStack(t, testConfig(t, mailstack.ProfileRemediated))
	id := sendMail(t, s.Endpoint("smtp"), "alice@example.test", []string{"bob@example.test"}, "infected", eicar)
	recs := waitFinal(t, s, id)
	require.Equal(t, mailstack.StateQuarantined, recs[0].State)
	require.Equal(t, "virus", recs[0].Reason)
	require.Equal(t, "Win.Test.EICAR_HDB-1", recs[0].Signature)

	bob := imapLogin(t, s.Endpoint("imap"), "bob@example.test")
	require.Empty(t, searchMessageID(t, bob, id), "infected mail reached a mailbox")
	q := imapLogin(t, s.Endpoint("imap"), "quarantine@example.test")
	require.Len(t, searchMessageID(t, q, id), 1, "infected mail is not in quarantine")

	fams := scrape(t, s)
	require.Equal(t, 1.0, metricValue(fams, mailstack.MetricQuarantined, "reason", "virus"))
	require.Equal(t, 0.0, metricValue(fams, mailstack.MetricDelivered))
}

func TestInterceptorQuarantinesWithoutScanning(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, mailstack.ProfileRemediated)
	cfg.Scan.Interceptor.Block = []string{"EICAR-STANDARD-ANTIVIRUS-TEST-FILE"}
	s := startStack(t, cfg)
	id := sendMail(t, s.Endpoint("smtp"), "alice@example.test", []string{"bob@example.test"}, "blocked", eicar)
	recs := waitFinal(t, s, id)
	require.Equal(t, mailstack.StateQuarantined, recs[0].State)
	require.Equal(t, "interceptor", recs[0].Reason)
	fams := scrape(t, s)
	require.Equal(t, 0.0, metricValue(fams, mailstack.MetricScans), "an intercepted message was scanned")
	require.Equal(t, 1.0, metricValue(fams, mailstack.MetricQuarantined, "reason", "interceptor"))
}

// slowEngineConfig makes av-engine-2 slow on infected payloads, with a small
// worker pool so that a handful of infected messages can occupy it.
func slowEngineConfig(t testing.TB, profile string, delay time.Duration) mailstack.Config {
	cfg := testConfig(t, profile)
	cfg.Scan.Workers = 2
	cfg.Engines[1].Delay = delay
	cfg.Engines[1].DelayMatch = eicar
	return cfg
}

func TestIncidentProfileLetsTheQueueGrowBehindASlowEngine(t *testing.T) {
	t.Parallel()
	// The slow engine answers after 30 s, within the incident profile's
	// timeout: each infected message holds a worker all that time.
	s := startStack(t, slowEngineConfig(t, mailstack.ProfileIncident, 30*time.Second))
	addr := s.Endpoint("smtp")
	for i := 0; i < 2; i++ {
		sendMail(t, addr, "alice@example.test", []string{"bob@example.test"}, fmt.Sprintf("infected %d", i), eicar)
	}
	var clean []string
	for i := 0; i < 5; i++ {
		clean = append(clean, sendMail(t, addr, "alice@example.test", []string{"bob@example.test"}, fmt.Sprintf("clean %d", i), "hello"))
	}
	var fams map[string]*dto.MetricFamily
	require.Eventually(t, func() bool {
		fams = scrape(t, s)
		return metricValue(fams, mailstack.MetricWorkersBusy) == 2 &&
			metricValue(fams, mailstack.MetricQueueMessages, "state", "ready") == 5
	}, waitFor, 10*time.Millisecond, "workers should all be held by slow scans with clean mail waiting")
	require.Equal(t, 7.0, metricValue(fams, mailstack.MetricQueueDepth))
	require.Equal(t, 0.0, metricValue(fams, mailstack.MetricDelivered), "clean mail got past the stuck workers")
	for _, id := range clean {
		r := s.MessagesByID(id)
		require.Len(t, r, 1)
		require.Equal(t, mailstack.StateQueued, r[0].State)
	}
	bob := imapLogin(t, s.Endpoint("imap"), "bob@example.test")
	require.Empty(t, searchMessageID(t, bob, clean[0]))
	// Stop at once rather than wait out the slow scans.
	require.NoError(t, s.Close())
}

func TestRemediatedProfileKeepsCleanMailFlowingPastASlowEngine(t *testing.T) {
	t.Parallel()
	cfg := slowEngineConfig(t, mailstack.ProfileRemediated, 30*time.Second)
	cfg.Scan.Timeout = 300 * time.Millisecond
	s := startStack(t, cfg)
	addr := s.Endpoint("smtp")
	var infected, clean []string
	for i := 0; i < 4; i++ {
		infected = append(infected, sendMail(t, addr, "alice@example.test", []string{"bob@example.test"}, fmt.Sprintf("infected %d", i), eicar))
	}
	for i := 0; i < 5; i++ {
		clean = append(clean, sendMail(t, addr, "alice@example.test", []string{"bob@example.test"}, fmt.Sprintf("clean %d", i), "hello"))
	}
	for _, r := range waitFinal(t, s, clean...) {
		require.Equal(t, mailstack.StateDelivered, r.State)
	}
	for _, r := range waitFinal(t, s, infected...) {
		require.Equal(t, mailstack.StateQuarantined, r.State)
		require.Equal(t, "virus", r.Reason)
	}
	bob := imapLogin(t, s.Endpoint("imap"), "bob@example.test")
	for _, id := range clean {
		require.Len(t, searchMessageID(t, bob, id), 1)
	}
	for _, id := range infected {
		require.Empty(t, searchMessageID(t, bob, id))
	}
	fams := scrape(t, s)
	require.GreaterOrEqual(t, metricValue(fams, mailstack.MetricScanTimeouts, "engine", "av-engine-2"), 4.0)
	require.Equal(t, 0.0, metricValue(fams, mailstack.MetricQueueDepth))
}

func TestRemediatedProfileDefersWhatNoEngineCanScan(t *testing.T) {
	t.Parallel()
	// av-engine-2 is slow on a marker no engine calls a virus: with no
	// verdict from it, the message is deferred with back-off, then
	// quarantined as unscannable once the deferrals are spent.
	const marker = "SLOW-SCAN-MARKER"
	cfg := testConfig(t, mailstack.ProfileRemediated)
	cfg.Engines[1].Delay = 30 * time.Second
	cfg.Engines[1].DelayMatch = marker
	cfg.Scan.Timeout = 100 * time.Millisecond
	cfg.Scan.Defer.Backoff = 50 * time.Millisecond
	cfg.Scan.Defer.MaxBackoff = 100 * time.Millisecond
	cfg.Scan.Defer.MaxDeferrals = 2
	s := startStack(t, cfg)
	slow := sendMail(t, s.Endpoint("smtp"), "alice@example.test", []string{"bob@example.test"}, "slow", marker)
	clean := sendMail(t, s.Endpoint("smtp"), "alice@example.test", []string{"bob@example.test"}, "clean", "hello")
	require.Equal(t, mailstack.StateDelivered, waitFinal(t, s, clean)[0].State)
	r := waitFinal(t, s, slow)[0]
	require.Equal(t, mailstack.StateQuarantined, r.State)
	require.Equal(t, "unscannable", r.Reason)
	require.Equal(t, 2, r.Deferrals)
	require.Equal(t, 3, r.Attempts)
	fams := scrape(t, s)
	require.Equal(t, 2.0, metricValue(fams, mailstack.MetricDeferred))
	require.Equal(t, 1.0, metricValue(fams, mailstack.MetricQuarantined, "reason", "unscannable"))
}

func TestUnscannableBounceGoesBackToALocalSender(t *testing.T) {
	t.Parallel()
	const marker = "SLOW-SCAN-MARKER"
	cfg := testConfig(t, mailstack.ProfileRemediated)
	cfg.Engines[0].Delay = 30 * time.Second
	cfg.Engines[0].DelayMatch = marker
	cfg.Scan.Timeout = 100 * time.Millisecond
	cfg.Scan.Defer.Enabled = false
	cfg.Scan.Retries = 0
	cfg.Scan.OnUnscannable = mailstack.UnscannableBounce
	s := startStack(t, cfg)
	id := sendMail(t, s.Endpoint("smtp"), "alice@example.test", []string{"bob@example.test"}, "slow", marker)
	r := waitFinal(t, s, id)[0]
	require.Equal(t, mailstack.StateBounced, r.State)
	alice := imapLogin(t, s.Endpoint("imap"), "alice@example.test")
	_, err := alice.Select("INBOX", nil).Wait()
	require.NoError(t, err)
	data, err := alice.Search(&imap.SearchCriteria{
		Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "Undelivered Mail"}},
	}, nil).Wait()
	require.NoError(t, err)
	require.Len(t, data.AllSeqNums(), 1)
}

func TestEveryAcceptedMessageIsAccountedFor(t *testing.T) {
	t.Parallel()
	s := startStack(t, testConfig(t, mailstack.ProfileRemediated))
	c, err := smtp.Dial(s.Endpoint("smtp"))
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.Hello("test"))
	var ids []string
	for i := 0; i < 30; i++ {
		body := "clean"
		if i%3 == 0 {
			body = eicar
		}
		id := fmt.Sprintf("<acct-%d@test>", i)
		require.NoError(t, c.Mail("alice@example.test", nil))
		require.NoError(t, c.Rcpt("bob@example.test", nil))
		require.NoError(t, c.Rcpt("alice@example.test", nil))
		w, err := c.Data()
		require.NoError(t, err)
		_, err = fmt.Fprintf(w, "Subject: %d\r\nMessage-ID: %s\r\nX-Mailchaos-Id: mc-%d\r\n\r\n%s\r\n", i, id, i, body)
		require.NoError(t, err)
		require.NoError(t, w.Close())
		ids = append(ids, id)
	}
	require.NoError(t, c.Quit())
	recs := waitFinal(t, s, ids...)
	for i, r := range recs {
		require.Equal(t, fmt.Sprintf("mc-%d", i), r.MailchaosID)
		require.Equal(t, []string{"bob@example.test", "alice@example.test"}, r.To)
		if i%3 == 0 {
			require.Equal(t, mailstack.StateQuarantined, r.State)
		} else {
			require.Equal(t, mailstack.StateDelivered, r.State)
		}
	}
	require.Equal(t, mailstack.Counts{Accepted: 30, Delivered: 20, Quarantined: 10}, s.Counts())
	bob := imapLogin(t, s.Endpoint("imap"), "bob@example.test")
	sel, err := bob.Select("INBOX", nil).Wait()
	require.NoError(t, err)
	require.Equal(t, uint32(20), sel.NumMessages)
}

func TestMessageWithoutMessageIDGetsOne(t *testing.T) {
	t.Parallel()
	s := startStack(t, testConfig(t, mailstack.ProfileRemediated))
	require.NoError(t, plainSendMail(s.Endpoint("smtp"), nil, "alice@example.test", []string{"bob@example.test"},
		strings.NewReader("Subject: no id\r\n\r\nbody\r\n")))
	require.Eventually(t, func() bool { return s.Counts().Delivered == 1 }, waitFor, 10*time.Millisecond)
	r := s.Messages()[0]
	require.True(t, strings.HasPrefix(r.MessageID, "<") && strings.HasSuffix(r.MessageID, "@mx.example.test>"), r.MessageID)
	bob := imapLogin(t, s.Endpoint("imap"), "bob@example.test")
	require.Len(t, searchMessageID(t, bob, r.MessageID), 1)
}

func TestSMTPAuthPlain(t *testing.T) {
	t.Parallel()
	s := startStack(t, testConfig(t, mailstack.ProfileRemediated))
	c, err := smtp.Dial(s.Endpoint("smtp"))
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.Hello("test"))
	require.Error(t, c.Auth(saslPlain("alice@example.test", "wrong")))
	require.NoError(t, c.Auth(saslPlain("alice@example.test", "password")))
}

func TestShutdownWaitsForScansInProgress(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, mailstack.ProfileIncident)
	cfg.Engines[0].Delay = 500 * time.Millisecond
	s, err := mailstack.New(cfg, mailstack.Options{})
	require.NoError(t, err)
	require.NoError(t, s.Start(context.Background()))
	defer s.Close()
	id := sendMail(t, s.Endpoint("smtp"), "alice@example.test", []string{"bob@example.test"}, "slowish", "hello")
	require.Eventually(t, func() bool { return s.MessagesByID(id)[0].State == mailstack.StateScanning }, waitFor, time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	require.NoError(t, s.Shutdown(ctx))
	require.Equal(t, mailstack.StateDelivered, s.MessagesByID(id)[0].State)
	_, err = smtp.Dial(s.Endpoint("smtp"))
	require.Error(t, err, "SMTP still accepts connections after shutdown")
}

func TestShutdownDeadlineAccountsForAbandonedScans(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, mailstack.ProfileIncident)
	cfg.Engines[0].Delay = time.Hour
	s, err := mailstack.New(cfg, mailstack.Options{})
	require.NoError(t, err)
	require.NoError(t, s.Start(context.Background()))
	defer s.Close()
	id := sendMail(t, s.Endpoint("smtp"), "alice@example.test", []string{"bob@example.test"}, "stuck", "hello")
	require.Eventually(t, func() bool { return s.MessagesByID(id)[0].State == mailstack.StateScanning }, waitFor, time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	err = s.Shutdown(ctx)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Equal(t, mailstack.StateQueued, s.MessagesByID(id)[0].State)
	require.Equal(t, mailstack.Counts{Accepted: 1, Queued: 1}, s.Counts())
}

func TestCloseIsImmediateAndIdempotent(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, mailstack.ProfileIncident)
	cfg.Engines[0].Delay = time.Hour
	s, err := mailstack.New(cfg, mailstack.Options{})
	require.NoError(t, err)
	require.NoError(t, s.Start(context.Background()))
	sendMail(t, s.Endpoint("smtp"), "alice@example.test", []string{"bob@example.test"}, "stuck", "hello")
	start := time.Now()
	require.NoError(t, s.Close())
	require.NoError(t, s.Close())
	require.Less(t, time.Since(start), 10*time.Second)
}

func TestInterposeRoutesScansThroughTheGivenAddress(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	cfg := testConfig(t, mailstack.ProfileRemediated)
	var links []mailstack.Link
	s, err := mailstack.New(cfg, mailstack.Options{Interpose: func(_ context.Context, l mailstack.Link) (string, error) {
		calls.Add(1)
		links = append(links, l)
		if l.Name == "av-engine-3" {
			return "127.0.0.1:1", nil // nothing listens there: scans on this link fail
		}
		return l.Upstream, nil
	}})
	require.NoError(t, err)
	require.NoError(t, s.Start(context.Background()))
	t.Cleanup(func() { _ = s.Close() })
	// Three engine links, then three site links.
	require.Equal(t, int32(6), calls.Load())
	require.Equal(t, "av-engine-3", links[2].Name)
	require.Equal(t, s.Endpoint("av-engine-3"), links[2].Upstream)
	require.Equal(t, "127.0.0.1:1", s.Links()[2].Dial)
	require.Equal(t, "imap-site-b", links[4].Name)
	require.Equal(t, s.Endpoint("imap-site-b"), links[4].Upstream)
	require.Equal(t, cfg.LinkNames(), []string{links[0].Name, links[1].Name, links[2].Name, links[3].Name, links[4].Name, links[5].Name})

	sendMail(t, s.Endpoint("smtp"), "alice@example.test", []string{"bob@example.test"}, "x", "hello")
	require.Eventually(t, func() bool {
		return metricValue(scrape(t, s), mailstack.MetricScanErrors, "engine", "av-engine-3") >= 1
	}, waitFor, 10*time.Millisecond)
}

func TestInterposeErrorStopsStart(t *testing.T) {
	t.Parallel()
	s, err := mailstack.New(testConfig(t, mailstack.ProfileRemediated), mailstack.Options{
		Interpose: func(context.Context, mailstack.Link) (string, error) { return "", errors.New("no proxy") },
	})
	require.NoError(t, err)
	err = s.Start(context.Background())
	require.ErrorContains(t, err, "no proxy")
	require.NoError(t, s.Close())
}

func TestLedgerOverHTTP(t *testing.T) {
	t.Parallel()
	s := startStack(t, testConfig(t, mailstack.ProfileRemediated))
	id := sendMail(t, s.Endpoint("smtp"), "alice@example.test", []string{"bob@example.test"}, "hi", "hello")
	waitFinal(t, s, id)
	resp, err := http.Get("http://" + s.Endpoint("metrics") + "/api/messages?id=" + id)
	require.NoError(t, err)
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, err = buf.ReadFrom(resp.Body)
	require.NoError(t, err)
	require.Contains(t, buf.String(), `"state":"delivered"`)
	require.Contains(t, buf.String(), `"delivered":1`)
}

func saslPlain(user, pass string) sasl.Client { return sasl.NewPlainClient("", user, pass) }

// plainSendMail sends one message over a plain (no STARTTLS) SMTP session
// with the go-smtp client, as an MTA talking to an MX on loopback does.
func plainSendMail(addr string, _ sasl.Client, from string, to []string, r io.Reader) error {
	c, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		return err
	}
	if err := c.Mail(from, nil); err != nil {
		return err
	}
	for _, rcpt := range to {
		if err := c.Rcpt(rcpt, nil); err != nil {
			return err
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := io.Copy(w, r); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}

// TestShutdownWhileClientsConnect shuts stacks down while clients keep
// connecting to their SMTP port: a connection accepted as the shutdown
// starts must neither race with it (go test -race) nor keep it from
// ending.
func TestShutdownWhileClientsConnect(t *testing.T) {
	t.Parallel()
	for range 5 {
		cfg := testConfig(t, mailstack.ProfileRemediated)
		s, err := mailstack.New(cfg, mailstack.Options{})
		require.NoError(t, err)
		require.NoError(t, s.Start(context.Background()))
		addr := s.Endpoint("smtp")
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
						_ = c.Close()
					}
				}
			}()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		require.NoError(t, s.Shutdown(ctx))
		cancel()
		close(stop)
		wg.Wait()
		require.NoError(t, s.Close())
	}
}
