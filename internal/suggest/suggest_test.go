package suggest

import "testing"

func TestHint(t *testing.T) {
	valid := []string{"workers", "timeout", "retries"}
	for _, tt := range []struct{ got, want string }{
		{"wrokers", `; did you mean "workers"?`},
		{"TIMEOUT", `; did you mean "timeout"?`},
		{"retry", `; did you mean "retries"?`},
		{"completely-different", ""},
		{"", ""},
	} {
		if got := Hint(tt.got, valid); got != tt.want {
			t.Errorf("Hint(%q) = %q, want %q", tt.got, got, tt.want)
		}
	}
}
