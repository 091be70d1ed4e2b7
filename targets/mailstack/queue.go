package mailstack

import (
	"container/heap"
	"sync"
	"time"
)

// message is one accepted message on its way through the stack.
type message struct {
	queueID   string
	from      string
	to        []string
	data      []byte // the message as stored, with the stack's headers
	accepted  time.Time
	deferrals int
	due       time.Time // when a deferred message is ready again
}

// queue holds accepted messages waiting for a scan worker: a FIFO of ready
// messages and a heap of deferred ones ordered by the time they are due.
// A single timer moves due messages to the ready FIFO. Safe for concurrent
// use; pop blocks until a message is ready, the queue is closed, or the
// queue is draining and empty.
type queue struct {
	mu       sync.Mutex
	cond     *sync.Cond
	ready    []*message
	head     int
	deferred deferHeap
	timer    *time.Timer
	closed   bool
	draining bool
	busy     int // messages popped and not yet handed back with done
	m        *metrics
}

func newQueue(m *metrics) *queue {
	q := &queue{m: m}
	q.cond = sync.NewCond(&q.mu)
	return q
}

// push appends a ready message.
func (q *queue) push(msg *message) {
	q.mu.Lock()
	q.ready = append(q.ready, msg)
	q.m.queueReady.Inc()
	q.mu.Unlock()
	q.cond.Signal()
}

// deferUntil parks msg until due.
func (q *queue) deferUntil(msg *message, due time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	msg.due = due
	heap.Push(&q.deferred, msg)
	q.m.queueDeferred.Inc()
	if q.closed {
		return
	}
	q.armLocked()
}

// armLocked points the timer at the earliest deferred message.
func (q *queue) armLocked() {
	if len(q.deferred) == 0 {
		return
	}
	d := time.Until(q.deferred[0].due)
	if q.timer == nil {
		q.timer = time.AfterFunc(d, q.release)
		return
	}
	q.timer.Reset(d)
}

// release moves every due deferred message to the ready FIFO.
func (q *queue) release() {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return
	}
	now := time.Now()
	n := 0
	for len(q.deferred) > 0 && !q.deferred[0].due.After(now) {
		msg := heap.Pop(&q.deferred).(*message)
		q.ready = append(q.ready, msg)
		q.m.queueDeferred.Dec()
		q.m.queueReady.Inc()
		n++
	}
	q.armLocked()
	q.mu.Unlock()
	for ; n > 0; n-- {
		q.cond.Signal()
	}
}

// pop blocks until a message is ready and returns it, or returns false once
// the queue is closed, or once it is draining and holds nothing: no ready
// or deferred message and none popped and not yet done. Every message pop
// returns must be handed back with done once it has been requeued or has
// reached a final state.
func (q *queue) pop() (*message, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for !q.closed && q.head == len(q.ready) && !q.drainedLocked() {
		q.cond.Wait()
	}
	if q.closed || q.head == len(q.ready) {
		return nil, false
	}
	q.busy++
	msg := q.ready[q.head]
	q.ready[q.head] = nil
	q.head++
	if q.head == len(q.ready) {
		q.ready, q.head = q.ready[:0], 0
	} else if q.head > 1024 && q.head*2 > len(q.ready) {
		q.ready, q.head = append(q.ready[:0], q.ready[q.head:]...), 0
	}
	q.m.queueReady.Dec()
	return msg, true
}

// done hands back a message returned by pop.
func (q *queue) done() {
	q.mu.Lock()
	q.busy--
	wake := q.drainedLocked()
	q.mu.Unlock()
	if wake {
		q.cond.Broadcast()
	}
}

// drain makes pop return false once the queue holds nothing, instead of
// waiting for new messages: deferred messages are still waited for.
func (q *queue) drain() {
	q.mu.Lock()
	q.draining = true
	q.mu.Unlock()
	q.cond.Broadcast()
}

// drainedLocked reports whether a draining queue holds nothing.
func (q *queue) drainedLocked() bool {
	return q.draining && q.head == len(q.ready) && len(q.deferred) == 0 && q.busy == 0
}

// remaining takes every message still held, ready ones first, then the
// deferred ones by due time, and empties the queue. Call it once no worker
// runs.
func (q *queue) remaining() []*message {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := append([]*message(nil), q.ready[q.head:]...)
	q.m.queueReady.Sub(float64(len(q.ready) - q.head))
	q.ready, q.head = nil, 0
	q.m.queueDeferred.Sub(float64(len(q.deferred)))
	for len(q.deferred) > 0 {
		out = append(out, heap.Pop(&q.deferred).(*message))
	}
	return out
}

// close wakes every pop and stops the deferral timer. Messages still queued
// stay where they are, to be accounted for by the ledger.
func (q *queue) close() {
	q.mu.Lock()
	q.closed = true
	if q.timer != nil {
		q.timer.Stop()
	}
	q.mu.Unlock()
	q.cond.Broadcast()
}

// deferHeap orders deferred messages by due time.
type deferHeap []*message

func (h deferHeap) Len() int           { return len(h) }
func (h deferHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h deferHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *deferHeap) Push(x any)        { *h = append(*h, x.(*message)) }
func (h *deferHeap) Pop() any {
	old := *h
	n := len(old)
	x := old[n-1]
	old[n-1] = nil
	*h = old[:n-1]
	return x
}
