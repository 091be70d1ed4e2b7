package loadsurge

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// DataQuery is the [faults.Handle] Data key by which a Status call asks an
// SMTP load run for more than its status; its one value is
// QueryAccounting. The handle crosses the plugin boundary with its Data,
// so the question reaches the injector wherever it runs.
const DataQuery = "query"

// QueryAccounting asks Status for the run's [Accounting], as JSON in the
// Status' Detail ("" for a run the injector does not know or an IMAP run).
const QueryAccounting = "accounting"

// Accounting is what an SMTP load run had the server accept: enough to
// find each accepted message again (its X-Mailchaos-Id and recipient) and
// to tell which carry the EICAR attachment, without a list of them: the
// recipient and the infection of a message are drawn from the run ID and
// its sequence number ([Accounting.Message]). It is plain data, so that it
// crosses the plugin boundary as JSON: one bit per message sent.
type Accounting struct {
	// RunID prefixes every X-Mailchaos-Id of the run.
	RunID string `json:"run"`
	// Rcpts, Size and Infected are the run's configuration.
	Rcpts    []string  `json:"rcpts"`
	Size     SizeRange `json:"size"`
	Infected float64   `json:"infected"`
	// Accepted has bit seq%8 of byte seq/8 set when message seq was
	// accepted: the server answered 250 to its end of DATA.
	Accepted []byte `json:"accepted"`
	// Sent counts the messages that reached the server; Rejected,
	// Tempfail and Uncertain (cut after their end of DATA: the server may
	// have taken them) those that ended so.
	Sent      int64 `json:"sent"`
	Rejected  int64 `json:"rejected"`
	Tempfail  int64 `json:"tempfail"`
	Uncertain int64 `json:"uncertain"`
	// Over is true when the run had ended when this was taken.
	Over bool `json:"over"`
}

// AcceptedMessage is one message of an [Accounting].
type AcceptedMessage struct {
	Seq int64
	// ID is its X-Mailchaos-Id.
	ID string
	// Rcpt is its recipient.
	Rcpt string
	// Infected is true when it carries the EICAR test file.
	Infected bool
}

// Accounting returns what the run has had accepted so far.
func (r *Run) Accounting() Accounting {
	res := r.Snapshot()
	a := Accounting{RunID: r.cfg.RunID, Rcpts: r.cfg.Rcpts, Size: r.cfg.Size, Infected: r.cfg.Infected,
		Sent: res.Sent, Rejected: res.Rejected, Tempfail: res.Tempfail, Uncertain: res.CutAfterData, Over: res.Over()}
	r.mu.Lock()
	a.Accepted = make([]byte, 0, len(r.accepted)*8)
	for _, w := range r.accepted {
		for b := 0; b < 8; b++ {
			a.Accepted = append(a.Accepted, byte(w>>(8*b)))
		}
	}
	r.mu.Unlock()
	for len(a.Accepted) > 0 && a.Accepted[len(a.Accepted)-1] == 0 {
		a.Accepted = a.Accepted[:len(a.Accepted)-1]
	}
	return a
}

// ParseAccounting decodes and checks an Accounting from a Status' Detail.
func ParseAccounting(detail string) (Accounting, error) {
	var a Accounting
	if err := json.Unmarshal([]byte(detail), &a); err != nil {
		return Accounting{}, fmt.Errorf("%s: accounting: %w", Name, err)
	}
	if err := CheckRunID(a.RunID); err != nil {
		return Accounting{}, fmt.Errorf("%s: accounting: run ID: %w", Name, err)
	}
	if len(a.Rcpts) == 0 && (a.Sent > 0 || a.Len() > 0) {
		return Accounting{}, errors.New(Name + ": accounting: messages sent but no recipients")
	}
	return a, nil
}

// Count returns how many messages were accepted.
func (a *Accounting) Count() int {
	n := 0
	for _, b := range a.Accepted {
		for ; b != 0; b &= b - 1 {
			n++
		}
	}
	return n
}

// Len is one more than the highest sequence number the bitmap can hold.
func (a *Accounting) Len() int64 { return int64(len(a.Accepted)) * 8 }

// IsAccepted reports whether message seq was accepted.
func (a *Accounting) IsAccepted(seq int64) bool {
	return seq >= 0 && seq < a.Len() && a.Accepted[seq/8]&(1<<(seq%8)) != 0
}

// Message returns message seq as the run composed it (whether or not it
// was accepted).
func (a *Accounting) Message(seq int64) AcceptedMessage {
	p := newPlan(a.RunID, a.Rcpts, a.Size, a.Infected)
	_, rcpt, infected := p.draw(seq)
	return AcceptedMessage{Seq: seq, ID: string(p.appendID(nil, seq)), Rcpt: rcpt, Infected: infected}
}

// Each calls fn with every accepted message in sequence order, until fn
// returns false.
func (a *Accounting) Each(fn func(AcceptedMessage) bool) {
	if a.Count() == 0 {
		return
	}
	p := newPlan(a.RunID, a.Rcpts, a.Size, a.Infected)
	for seq := int64(0); seq < a.Len(); seq++ {
		if !a.IsAccepted(seq) {
			continue
		}
		_, rcpt, infected := p.draw(seq)
		if !fn(AcceptedMessage{Seq: seq, ID: string(p.appendID(nil, seq)), Rcpt: rcpt, Infected: infected}) {
			return
		}
	}
}

// SeqOf returns the sequence number of an X-Mailchaos-Id of this run, or
// false when id is not "<run ID>-<seq>".
func (a *Accounting) SeqOf(id string) (int64, bool) {
	rest, ok := strings.CutPrefix(id, a.RunID+"-")
	if !ok || rest == "" || rest[0] == '+' || rest[0] == '-' {
		return 0, false
	}
	seq, err := strconv.ParseInt(rest, 10, 64)
	return seq, err == nil
}

// accountingStatus answers a Status call that asks for the accounting.
func accountingStatus(g Generator) string {
	r, ok := g.(*Run)
	if !ok {
		return ""
	}
	b, err := json.Marshal(r.Accounting())
	if err != nil {
		return ""
	}
	return string(b)
}
