package loadsurge

// RequestStop starts a graceful stop without waiting for it, so a test can
// order the stop before what it lets happen next.
func (r *Run) RequestStop() { r.requestStop() }

// EndAsPlanned ends the run as a removal at its planned end does, without
// waiting for it.
func (r *Run) EndAsPlanned() { r.endAsPlanned() }
