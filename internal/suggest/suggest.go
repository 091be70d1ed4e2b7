// Package suggest finds the valid name nearest to a mistyped one, for
// "did you mean" hints in error messages.
package suggest

import (
	"fmt"
	"strings"
)

// Nearest returns the name in valid closest to got (case-insensitive edit
// distance), or "" when none is close enough to be a likely typo.
func Nearest(got string, valid []string) string {
	if got == "" {
		return ""
	}
	best, bestD := "", len(got)/2+2
	for _, v := range valid {
		if d := distance(strings.ToLower(got), strings.ToLower(v)); d < bestD {
			best, bestD = v, d
		}
	}
	return best
}

// Hint returns `; did you mean "x"?` for the nearest valid name, or "".
func Hint(got string, valid []string) string {
	if n := Nearest(got, valid); n != "" {
		return fmt.Sprintf("; did you mean %q?", n)
	}
	return ""
}

// distance is the Levenshtein distance between a and b.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
