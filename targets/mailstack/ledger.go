package mailstack

import (
	"sort"
	"sync"
	"time"
)

// State is where an accepted message is in the stack.
type State string

// Message states. Queued, Deferred and Scanning are transient; Delivered,
// Quarantined and Bounced are final.
const (
	StateQueued      State = "queued"
	StateScanning    State = "scanning"
	StateDeferred    State = "deferred"
	StateDelivered   State = "delivered"
	StateQuarantined State = "quarantined"
	StateBounced     State = "bounced"
)

// Final reports whether the message has left the stack's queue for good.
func (s State) Final() bool {
	return s == StateDelivered || s == StateQuarantined || s == StateBounced
}

// Record is the ledger entry of one accepted message.
type Record struct {
	// QueueID is the stack's own identifier, unique per accepted message.
	QueueID string `json:"queue_id"`
	// MessageID is the Message-ID header (the stack adds one when missing).
	MessageID string `json:"message_id"`
	// MailchaosID is the X-Mailchaos-Id header, if the sender set one.
	MailchaosID string `json:"mailchaos_id,omitempty"`
	// From is the envelope sender.
	From string `json:"from"`
	// To is the envelope recipients.
	To []string `json:"to"`
	// Size is the message size in bytes as received.
	Size int `json:"size"`
	// State is the current state.
	State State `json:"state"`
	// Reason explains a quarantine or bounce (for example "virus",
	// "interceptor", "unscannable").
	Reason string `json:"reason,omitempty"`
	// Signature is the virus signature an engine reported, if any.
	Signature string `json:"signature,omitempty"`
	// Attempts counts the scan passes started.
	Attempts int `json:"attempts"`
	// Deferrals counts the deferrals.
	Deferrals int `json:"deferrals"`
	// Accepted is when SMTP accepted the message.
	Accepted time.Time `json:"accepted"`
	// Finished is when it reached its final state (zero until then).
	Finished time.Time `json:"finished,omitzero"`
}

// Counts sums the ledger by state.
type Counts struct {
	Accepted    int `json:"accepted"`
	Queued      int `json:"queued"` // queued, scanning or deferred
	Delivered   int `json:"delivered"`
	Quarantined int `json:"quarantined"`
	Bounced     int `json:"bounced"`
}

// ledger records every accepted message. Safe for concurrent use.
type ledger struct {
	mu      sync.Mutex
	recs    map[string]*Record  // by queue ID
	byMsgID map[string][]string // Message-ID -> queue IDs
	order   []string            // queue IDs in acceptance order
}

func newLedger() *ledger {
	return &ledger{recs: map[string]*Record{}, byMsgID: map[string][]string{}}
}

func (l *ledger) add(r Record) {
	l.mu.Lock()
	defer l.mu.Unlock()
	rec := r
	l.recs[r.QueueID] = &rec
	l.byMsgID[r.MessageID] = append(l.byMsgID[r.MessageID], r.QueueID)
	l.order = append(l.order, r.QueueID)
}

// update applies fn to the record of queueID under the ledger's lock.
func (l *ledger) update(queueID string, fn func(*Record)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if r, ok := l.recs[queueID]; ok {
		fn(r)
	}
}

func (l *ledger) get(queueID string) (Record, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r, ok := l.recs[queueID]
	if !ok {
		return Record{}, false
	}
	return r.clone(), true
}

func (l *ledger) byMessageID(id string) []Record {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Record
	for _, q := range l.byMsgID[id] {
		out = append(out, l.recs[q].clone())
	}
	return out
}

func (l *ledger) all() []Record {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Record, 0, len(l.order))
	for _, q := range l.order {
		out = append(out, l.recs[q].clone())
	}
	return out
}

func (l *ledger) counts() Counts {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := Counts{Accepted: len(l.recs)}
	for _, r := range l.recs {
		switch r.State {
		case StateDelivered:
			c.Delivered++
		case StateQuarantined:
			c.Quarantined++
		case StateBounced:
			c.Bounced++
		default:
			c.Queued++
		}
	}
	return c
}

// unfinished lists the records not yet in a final state, oldest first.
func (l *ledger) unfinished() []Record {
	all := l.all()
	out := all[:0]
	for _, r := range all {
		if !r.State.Final() {
			out = append(out, r)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Accepted.Before(out[j].Accepted) })
	return out
}

func (r *Record) clone() Record {
	c := *r
	c.To = append([]string(nil), r.To...)
	return c
}
