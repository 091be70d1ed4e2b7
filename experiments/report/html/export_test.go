package htmlreport

// SetMaxSamples sets how many samples of an SLI, and windows of a load,
// are drawn and kept, until the returned function restores it.
func SetMaxSamples(n int) (restore func()) {
	old := maxSamples
	maxSamples = n
	return func() { maxSamples = old }
}
