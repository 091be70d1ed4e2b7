package loadsurge_test

import (
	"bytes"
	"context"
	"net/mail"
	"regexp"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"
	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/faults"
	"github.com/mailchaos/mailchaos/faults/loadsurge"
	"github.com/mailchaos/mailchaos/faults/loadsurge/sinktest"
)

func TestRunIDOf(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ owner, id, want string }{
		{"run-1712", "s0", "run-1712-s0"},
		{"", "s0", "s0"},
		{"inject", "inject-1712", "inject-1712"},
		{"inject", "other", "inject-other"},
	} {
		require.Equal(t, tt.want, loadsurge.RunIDOf(tt.owner, tt.id), "%q %q", tt.owner, tt.id)
	}
}

// TestRunsOfTwoOwnersNeverShareIDs: the same step of two runs, side by
// side on one injector, sends messages whose X-Mailchaos-Id and
// Message-ID carry the run's ID: no id is sent twice, and every one is
// valid header and Message-ID text.
func TestRunsOfTwoOwnersNeverShareIDs(t *testing.T) {
	t.Parallel()
	s := sinktest.Start(t, sinktest.Options{Keep: true})
	inj := loadsurge.New()
	ctx := context.Background()
	var hs []faults.Handle
	for _, owner := range []string{"run-1712000000001", "run-1712000000002"} {
		req := request("s0", s.Addr, faults.Params{"rate": "0", "concurrency": "2"})
		req.Owner = owner
		h, err := inj.Inject(ctx, req)
		require.NoError(t, err, "the same step ID in another run is another load")
		hs = append(hs, h)
	}
	wctx, cancel := context.WithTimeout(ctx, waitFor)
	defer cancel()
	require.True(t, s.WaitCount(wctx, 40))
	for _, h := range hs {
		require.NoError(t, inj.Remove(ctx, h))
	}
	idRe := regexp.MustCompile(`^run-171200000000[12]-s0-[0-9]+$`)
	msgIDs := map[string]bool{}
	perRun := map[string]int{}
	for _, m := range s.Messages() {
		require.Regexp(t, idRe, m.ID)
		perRun[m.ID[:len("run-1712000000001")]]++
		msg, err := mail.ReadMessage(bytes.NewReader(m.Raw))
		require.NoError(t, err)
		mid := msg.Header.Get("Message-Id")
		require.Equal(t, "<"+m.ID+"@example.test>", mid)
		addr, err := mail.ParseAddress(strings.Trim(mid, "<>"))
		require.NoError(t, err, "a Message-ID is an addr-spec in angle brackets")
		require.Equal(t, strings.Trim(mid, "<>"), addr.Address)
		require.LessOrEqual(t, len(mid), 128, "ids are bounded")
		require.False(t, msgIDs[mid], "Message-ID %s sent twice", mid)
		msgIDs[mid] = true
	}
	require.Len(t, perRun, 2, "both runs sent")
	for _, h := range hs {
		require.Len(t, inj.Accepted(h), perRun[h.Owner])
	}
}

// TestOwnerAndIDBoundTheRunID: a run ID that could not go into a header as
// it is, or is too long, is refused before anything is sent.
func TestOwnerAndIDBoundTheRunID(t *testing.T) {
	t.Parallel()
	inj := loadsurge.New()
	req := request("s0", "127.0.0.1:25", nil)
	req.Owner = strings.Repeat("r", 62)
	require.ErrorContains(t, inj.Validate(context.Background(), req), "must be 1 to 64 characters")
	req.Owner = "has space"
	require.ErrorContains(t, inj.Validate(context.Background(), req), "may only hold letters")
}

// TestAccountingNamesEveryAcceptedMessage: the accounting a Status call
// asks for names exactly the messages the server accepted (the infected
// ones it refused are not among them), each with the recipient it was
// sent to and whether it carried the EICAR file, and survives JSON.
func TestAccountingNamesEveryAcceptedMessage(t *testing.T) {
	t.Parallel()
	type got struct {
		rcpt     string
		infected bool
	}
	s := sinktest.Start(t, sinktest.Options{
		Data: func(msg []byte) error {
			if bytes.Contains(msg, []byte("eicar.com")) {
				return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "virus found"}
			}
			return nil
		},
		Keep: true,
	})
	inj := loadsurge.New()
	ctx := context.Background()
	req := request("acc", s.Addr, faults.Params{"rate": "0", "concurrency": "3", "infected": "0.4",
		"to": "alice@example.test,bob@example.test,carol@example.test", "size": "600-3000"})
	h, err := inj.Inject(ctx, req)
	require.NoError(t, err)
	wctx, cancel := context.WithTimeout(ctx, waitFor)
	defer cancel()
	require.True(t, s.WaitCount(wctx, 60))
	require.NoError(t, inj.Remove(ctx, h))

	q := h
	q.Data = map[string]string{loadsurge.DataQuery: loadsurge.QueryAccounting}
	st, err := inj.Status(ctx, q)
	require.NoError(t, err)
	require.False(t, st.Active)
	acc, err := loadsurge.ParseAccounting(st.Detail)
	require.NoError(t, err)
	require.Equal(t, "test-acc", acc.RunID)
	require.True(t, acc.Over)
	require.Positive(t, acc.Rejected, "the sink refused the infected ones")
	require.Equal(t, int(s.Count()), acc.Count())

	delivered := map[string]got{}
	for _, m := range s.Messages() {
		msg, err := mail.ReadMessage(bytes.NewReader(m.Raw))
		require.NoError(t, err)
		delivered[m.ID] = got{rcpt: strings.Trim(msg.Header.Get("To"), "<>"), infected: bytes.Contains(m.Raw, []byte("eicar.com"))}
	}
	n := 0
	acc.Each(func(m loadsurge.AcceptedMessage) bool {
		n++
		d, ok := delivered[m.ID]
		require.True(t, ok, "accounted %s was not accepted", m.ID)
		require.Equal(t, d.rcpt, m.Rcpt, m.ID)
		require.False(t, m.Infected, "the infected ones were refused: %s", m.ID)
		seq, ok := acc.SeqOf(m.ID)
		require.True(t, ok)
		require.Equal(t, m.Seq, seq)
		require.Equal(t, m, acc.Message(seq))
		return true
	})
	require.Equal(t, len(delivered), n)
	// The refused ones are composed infected: the plan says so too.
	infected := 0
	for seq := int64(0); seq < acc.Len(); seq++ {
		if !acc.IsAccepted(seq) && acc.Message(seq).Infected {
			infected++
		}
	}
	require.Positive(t, infected)
	_, ok := acc.SeqOf("test-acc-x1")
	require.False(t, ok)
	_, ok = acc.SeqOf("other-acc-1")
	require.False(t, ok)

	unknown, err := inj.Status(ctx, faults.Handle{ID: "never", Data: q.Data})
	require.NoError(t, err)
	require.Empty(t, unknown.Detail, "no accounting for a run the injector does not know")
	_, err = loadsurge.ParseAccounting(`{"run":"x","accepted":"AQ=="}`)
	require.ErrorContains(t, err, "no recipients")
	// Sent but none accepted: still nothing to draw recipients from, which
	// every message of the run needs (one cut after DATA may be delivered).
	_, err = loadsurge.ParseAccounting(`{"run":"x","sent":3}`)
	require.ErrorContains(t, err, "no recipients")
	_, err = loadsurge.ParseAccounting(`{"run":"x","accepted":"AA=="}`)
	require.ErrorContains(t, err, "no recipients")
}
