// Package clamd speaks the ClamAV daemon (clamd) wire protocol: a small
// clamd-compatible scanning engine and a client for any clamd.
//
// The engine ([Server]) implements the subset of clamd(8) that mail systems
// use: PING, VERSION, INSTREAM and IDSESSION/END, in the z (NUL-terminated),
// n (newline-terminated) and, where clamd allows it, the legacy unprefixed
// form. It detects payloads with a [Matcher], which looks at the raw bytes and
// at base64 / quoted-printable encoded MIME parts, so the EICAR test file is
// found whether it is sent raw or as a mail attachment, as with a real clamd.
//
// The [Client] works against this engine or any real clamd.
package clamd

import "time"

// EICAR is the 68-byte EICAR anti-virus test string. Every anti-virus engine,
// including a real clamd, reports it as a virus; it is harmless.
//
// It is written as two halves so that this source file is not itself
// flagged by scanners.
const EICAR = `X5O!P%@AP[4\PZX54(P^)7CC)7}$` + `EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*`

// EICARSignature is the signature name a real ClamAV reports for [EICAR].
const EICARSignature = "Win.Test.EICAR_HDB-1"

// TestMarker is a harmless marker that only the bundled engine detects (as
// [TestMarkerSignature]); a real clamd reports it clean. Chaos scenarios use it
// to make engines disagree.
const TestMarker = "MAILCHAOS-TEST-MARKER-7d1f0c2a-DO-NOT-DELIVER"

// TestMarkerSignature is the signature name the bundled engine reports for
// [TestMarker].
const TestMarkerSignature = "Mailchaos.Test.Marker-1"

// Defaults used when the corresponding field is zero.
const (
	// DefaultVersion is the VERSION reply of a [Server] whose Version is
	// empty. It keeps clamd's "ClamAV <version>/<db version>/<db date>" shape.
	DefaultVersion = "ClamAV 1.4.2/27500/mailchaos"
	// DefaultStreamMaxLength is clamd's default StreamMaxLength (25 MiB).
	DefaultStreamMaxLength int64 = 25 << 20
	// DefaultIdleTimeout is how long a [Server] waits for a client that sends
	// nothing before closing the connection.
	DefaultIdleTimeout = 30 * time.Second
	// DefaultChunkSize is the INSTREAM chunk size a [Client] uses.
	DefaultChunkSize = 32 << 10
)

// Signature is one pattern the bundled engine detects: Pattern is searched
// for as a plain byte string, and Name is what the engine reports (as
// "stream: <Name> FOUND").
type Signature struct {
	// Name is the reported signature name. NUL, CR and LF are replaced by
	// '_' when a [Matcher] is built, so the name cannot break protocol
	// framing.
	Name string
	// Pattern is the byte string to look for. An empty pattern never matches.
	Pattern []byte
}

// DefaultSignatures returns the bundled engine's signatures: [EICAR] as
// [EICARSignature] (what a real ClamAV reports) and [TestMarker] as
// [TestMarkerSignature]. It returns a fresh slice on each call; callers may
// modify it.
func DefaultSignatures() []Signature {
	return []Signature{
		{Name: EICARSignature, Pattern: []byte(EICAR)},
		{Name: TestMarkerSignature, Pattern: []byte(TestMarker)},
	}
}

// constError is an error that can be declared as a constant, so the package
// needs no mutable package-level state.
type constError string

// Error implements error.
func (e constError) Error() string { return string(e) }

const (
	// errServerClosed reports that Close interrupted a command.
	errServerClosed = constError("clamd: server closed")
	// errCommandTooLong reports a command line longer than maxCommandLen.
	errCommandTooLong = constError("clamd: command too long")
)
