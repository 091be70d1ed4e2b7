// Package exitcode is the one table of mailchaos' process exit codes, and
// the error that carries one (k6's errext pattern). A code is attached
// where an outcome is known, by wrapping the error that reports it
// ([Wrap]); the command line reads it once, when the process exits ([Of]).
// Errors of packages that do not know this one are placed by the methods
// they have: RollbackFailed() (a fault may still be in place) and
// InvalidInput() (the user's input is to blame).
package exitcode

import "errors"

// Code is a process exit code. The README documents the table for
// pipelines; the values never change.
type Code int

// The exit codes.
const (
	// OK: everything held.
	OK Code = 0
	// Failed: the system under test failed (a deviation, a recovery too
	// slow, an invariant broken).
	Failed Code = 1
	// Invalid: the input was invalid (a bad file, flag or argument).
	Invalid Code = 2
	// Aborted: the run itself failed or was interrupted; every fault was
	// rolled back.
	Aborted Code = 3
	// RollbackFailed: a rollback failed; a fault may still be in place.
	RollbackFailed Code = 4
)

// Error is an error that carries the exit code that reports it.
type Error struct {
	Code Code
	Err  error
}

// Error returns the message of the error wrapped.
func (e *Error) Error() string { return e.Err.Error() }

// Unwrap returns the error wrapped.
func (e *Error) Unwrap() error { return e.Err }

// ExitCode returns the exit code the error carries.
func (e *Error) ExitCode() Code { return e.Code }

// Wrap returns err carrying code; nil stays nil.
func Wrap(err error, code Code) error {
	if err == nil {
		return nil
	}
	return &Error{Code: code, Err: err}
}

// New returns an error with message msg that carries code.
func New(code Code, msg string) error { return &Error{Code: code, Err: errors.New(msg)} }

// Of returns the exit code that reports err, in this order: OK for nil;
// RollbackFailed when any error in err's tree says a fault may still be in
// place (RollbackFailed() true: faults.RollbackError), whatever else err
// carries; the code the first error in the tree that carries one carries
// ([Error]); Invalid when the input is to blame (InvalidInput() true:
// file, parameter and flag errors); Aborted for any other error.
func Of(err error) Code {
	var rb interface{ RollbackFailed() bool }
	var coded interface{ ExitCode() Code }
	var inv interface{ InvalidInput() bool }
	switch {
	case err == nil:
		return OK
	case errors.As(err, &rb) && rb.RollbackFailed():
		return RollbackFailed
	case errors.As(err, &coded):
		return coded.ExitCode()
	case errors.As(err, &inv) && inv.InvalidInput():
		return Invalid
	}
	return Aborted
}
