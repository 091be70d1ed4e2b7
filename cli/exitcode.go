package cli

import "github.com/mailchaos/mailchaos/internal/exitcode"

// Exit codes that Run returns: the table of internal/exitcode, the one
// place where they are decided; the README documents it for pipelines.
const (
	// ExitOK: everything held.
	ExitOK = int(exitcode.OK)
	// ExitFailed: the system under test failed (a deviation, a recovery
	// too slow, an invariant broken).
	ExitFailed = int(exitcode.Failed)
	// ExitInvalid: the input was invalid (a bad file, flag or argument).
	ExitInvalid = int(exitcode.Invalid)
	// ExitAborted: the run itself failed or was interrupted; every fault
	// was rolled back.
	ExitAborted = int(exitcode.Aborted)
	// ExitRollbackFailed: a rollback failed; a fault may still be in place.
	ExitRollbackFailed = int(exitcode.RollbackFailed)
)

// usageError is a bad flag, argument or command (exit code Invalid).
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// ExitCode says the input was invalid.
func (e *usageError) ExitCode() exitcode.Code { return exitcode.Invalid }
