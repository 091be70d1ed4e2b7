package network

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// toxicPrefix starts the name of every toxic mailchaos adds.
const toxicPrefix = "mc"

// ToxicName is the name of the n-th toxic of an injection: it carries the
// owner, the injection ID and the expiry time, so that any mailchaos process
// can tell whose toxic it is and when it must be gone. Owner and id must not
// contain dots.
func ToxicName(owner, id string, expires time.Time, n int) string {
	return fmt.Sprintf("%s.%s.%s.%d.%d", toxicPrefix, clean(owner), clean(id), expires.UnixMilli(), n)
}

// ToxicInfo is what a toxic's name says.
type ToxicInfo struct {
	Owner   string
	ID      string
	Expires time.Time
}

// ParseToxicName reads a name made by [ToxicName]; ok is false for toxics
// mailchaos did not add.
func ParseToxicName(name string) (ToxicInfo, bool) {
	parts := strings.Split(name, ".")
	if len(parts) != 5 || parts[0] != toxicPrefix {
		return ToxicInfo{}, false
	}
	ms, err := strconv.ParseInt(parts[3], 10, 64)
	if err != nil {
		return ToxicInfo{}, false
	}
	return ToxicInfo{Owner: parts[1], ID: parts[2], Expires: time.UnixMilli(ms)}, true
}

// clean makes s safe inside a toxic name.
func clean(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '.' || r == '/' || r == ' ' {
			return '-'
		}
		return r
	}, s)
}

// Names of mailchaos' own toxic types, as the toxiproxy API knows them once
// [RegisterToxics] has run.
const (
	ToxicBlackhole    = "mailchaos_blackhole"
	ToxicStall        = "mailchaos_stall"
	ToxicDrip         = "mailchaos_drip"
	ToxicClamdLatency = "mailchaos_clamd_latency"
	ToxicClamdError   = "mailchaos_clamd_error"
	ToxicDivert       = "mailchaos_divert"
)
