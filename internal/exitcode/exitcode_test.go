package exitcode_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/mailchaos/mailchaos/internal/exitcode"
)

type rollbackErr struct{}

func (rollbackErr) Error() string        { return "fault s0 may still be in place" }
func (rollbackErr) RollbackFailed() bool { return true }

type inputErr struct{}

func (inputErr) Error() string      { return "file.yaml:3:1: unknown field" }
func (inputErr) InvalidInput() bool { return true }

func TestOf(t *testing.T) {
	plain := errors.New("the target did not start")
	for _, tt := range []struct {
		name string
		err  error
		want exitcode.Code
	}{
		{"nil", nil, exitcode.OK},
		{"plain error", plain, exitcode.Aborted},
		{"wrapped plain error", fmt.Errorf("run: %w", plain), exitcode.Aborted},
		{"invalid input", fmt.Errorf("load: %w", inputErr{}), exitcode.Invalid},
		{"carried code", exitcode.New(exitcode.Failed, "the system under test failed"), exitcode.Failed},
		{"carried code wrapped", fmt.Errorf("run: %w", exitcode.Wrap(plain, exitcode.Failed)), exitcode.Failed},
		{"carried code before invalid input", exitcode.Wrap(inputErr{}, exitcode.Aborted), exitcode.Aborted},
		{"rollback before a carried code", errors.Join(exitcode.New(exitcode.Failed, "failed"), rollbackErr{}), exitcode.RollbackFailed},
		{"rollback in a join", errors.Join(inputErr{}, rollbackErr{}), exitcode.RollbackFailed},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := exitcode.Of(tt.err); got != tt.want {
				t.Errorf("Of(%v) = %d, want %d", tt.err, got, tt.want)
			}
		})
	}
}

func TestWrapKeepsTheMessageAndTheCause(t *testing.T) {
	cause := errors.New("boom")
	err := exitcode.Wrap(cause, exitcode.Aborted)
	if err.Error() != "boom" {
		t.Errorf("got message %q, want %q", err.Error(), "boom")
	}
	if !errors.Is(err, cause) {
		t.Error("the cause is lost")
	}
	if exitcode.Wrap(nil, exitcode.Failed) != nil {
		t.Error("Wrap(nil) is not nil")
	}
}
