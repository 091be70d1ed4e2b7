package probes

// CanaryIMAPError returns a canary probe's IMAP error state: the error of
// its last polling round, or of the delete that ended it.
func CanaryIMAPError(p Probe) error {
	c := p.(*canaryProbe)
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.imapErr
}
