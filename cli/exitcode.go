package cli

import "errors"

// Exit codes. This table is the one place where errors become exit codes;
// the README documents it for pipelines.
const (
	// ExitOK: everything held.
	ExitOK = 0
	// ExitFailed: the system under test failed (a deviation, a recovery
	// too slow, an invariant broken).
	ExitFailed = 1
	// ExitInvalid: the input was invalid (a bad file, flag or argument).
	ExitInvalid = 2
	// ExitAborted: the run itself failed or was interrupted; every fault
	// was rolled back.
	ExitAborted = 3
	// ExitRollbackFailed: a rollback failed; a fault may still be in place.
	ExitRollbackFailed = 4
)

// invalidInput is implemented by errors that blame the user's input, in any
// package (mailstack.ConfigError, ...).
type invalidInput interface{ InvalidInput() bool }

// rollbackFailed is implemented by errors saying a fault may still be in
// place (faults.RollbackError).
type rollbackFailed interface{ RollbackFailed() bool }

// usageError is a bad flag, argument or command.
type usageError struct{ err error }

func (e *usageError) Error() string      { return e.err.Error() }
func (e *usageError) Unwrap() error      { return e.err }
func (e *usageError) InvalidInput() bool { return true }

// exitCode maps an error to the exit code that reports it.
func exitCode(err error) int {
	var inv invalidInput
	var rb rollbackFailed
	var failed *runFailed
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &rb) && rb.RollbackFailed():
		return ExitRollbackFailed
	case errors.As(err, &failed):
		return ExitFailed
	case errors.As(err, &inv) && inv.InvalidInput():
		return ExitInvalid
	default:
		return ExitAborted
	}
}
