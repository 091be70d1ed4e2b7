package yamlfile

import (
	"fmt"
	"sort"
	"strings"
)

// Error is one mistake in a file or value.
type Error struct {
	File  string // the file, or "" for values built in code or from flags
	Line  int    // 1-based; 0 when unknown
	Col   int    // 1-based; 0 when unknown
	Field string // dotted path, e.g. scan.workers or engines[1].dial
	Msg   string

	cause error // the error Msg was made from, if any (see Unwrap)
}

// Error formats the mistake as file:line:col: field: message, leaving out
// the parts that are unknown.
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d:%d", e.Line, e.Col)
		}
		b.WriteString(": ")
	}
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap returns the error the message was made from, such as the error
// of an [Unmarshaler] or of [Join]'s arguments, or nil.
func (e *Error) Unwrap() error { return e.cause }

// InvalidInput marks the error as the user's input being wrong (exit 2).
func (e *Error) InvalidInput() bool { return true }

// Errors is every mistake found in one file, in file order.
type Errors []*Error

// Error formats one mistake as itself and several as a count followed by
// one indented line each.
func (l Errors) Error() string {
	switch len(l) {
	case 0:
		return "no errors"
	case 1:
		return l[0].Error()
	}
	msgs := make([]string, len(l))
	for i, e := range l {
		msgs[i] = e.Error()
	}
	return fmt.Sprintf("%d errors:\n  %s", len(l), strings.Join(msgs, "\n  "))
}

// InvalidInput marks the errors as the user's input being wrong (exit 2).
func (l Errors) InvalidInput() bool { return true }

// Unwrap returns the errors of the list, so that [errors.Is] and
// [errors.As] look at each of them.
func (l Errors) Unwrap() []error {
	out := make([]error, len(l))
	for i, e := range l {
		out[i] = e
	}
	return out
}

// Err returns l as an error, or nil when l is empty (a nil Errors stored
// in an error interface is not a nil error).
func (l Errors) Err() error {
	if len(l) == 0 {
		return nil
	}
	return l
}

// sortErrors orders l by file, line and column, keeping the order of
// errors at the same place.
func sortErrors(l Errors) {
	sort.SliceStable(l, func(i, j int) bool {
		a, b := l[i], l[j]
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Col < b.Col
	})
}

// Join flattens errs into one Errors sorted by file, line and column, so
// that decoding errors and validation errors can be reported together. It
// takes [Errors], [*Error] and [FieldError] values apart, and lists made by
// [errors.Join]; any other error becomes an *Error without a position that
// wraps it. Nil errors are skipped; Join returns nil when nothing is left.
func Join(errs ...error) error {
	var out Errors
	var add func(err error)
	add = func(err error) {
		switch e := err.(type) {
		case nil:
		case Errors:
			for _, x := range e {
				if x != nil {
					out = append(out, x)
				}
			}
		case *Error:
			if e != nil {
				out = append(out, e)
			}
		case FieldError:
			out = append(out, &Error{Field: e.Field, Msg: e.Msg})
		case interface{ Unwrap() []error }:
			for _, x := range e.Unwrap() {
				add(x)
			}
		default:
			out = append(out, &Error{Msg: err.Error(), cause: err})
		}
	}
	for _, err := range errs {
		add(err)
	}
	sortErrors(out)
	return out.Err()
}

// FieldError is an invalid value found by a validator, before positions are
// known.
type FieldError struct {
	Field string
	Msg   string
}

// Error formats the mistake as field: message.
func (e FieldError) Error() string { return e.Field + ": " + e.Msg }
