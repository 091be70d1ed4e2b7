package htmlreport

import (
	"math"
	"strconv"
	"strings"
	"time"
)

// secs writes a duration the way a person reads it: 250ms, 3.5s, 1m20s.
func secs(d time.Duration) string {
	neg := d < 0
	if neg {
		d = -d
	}
	var out string
	switch {
	case d < time.Millisecond:
		out = d.Round(time.Microsecond).String()
	case d < time.Second:
		out = d.Round(time.Millisecond).String()
	case d < time.Minute:
		out = strconv.FormatFloat(math.Round(d.Seconds()*100)/100, 'f', -1, 64) + "s"
	default:
		out = d.Round(time.Second).String()
	}
	if neg {
		out = "-" + out
	}
	return out
}

// seconds is a number of seconds, as the summary gives them, as a
// duration.
func seconds(v float64) time.Duration { return time.Duration(math.Round(v * float64(time.Second))) }

// value writes an SLI value in its unit.
func value(v float64, unit string) string {
	switch unit {
	case "s":
		return secs(time.Duration(v * float64(time.Second)))
	case "":
		return num(v)
	}
	return num(v) + unit
}

// num writes a number with at most 3 significant decimals.
func num(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return strconv.FormatFloat(v, 'g', -1, 64)
	}
	a := math.Abs(v)
	prec := 0
	switch {
	case a == 0 || a >= 100:
	case a >= 10:
		prec = 1
	case a >= 1:
		prec = 2
	default:
		prec = 3
	}
	s := strconv.FormatFloat(v, 'f', prec, 64)
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}

// tolText writes a tolerance: "<= 2s", ">= 10/s", "between 1 and 5",
// with its statistic and window when set.
func tolText(t tolSpec, unit string) string {
	lo, hi := t.bounds()
	var s string
	switch {
	case lo != nil && hi != nil:
		s = "between " + value(*lo, unit) + " and " + value(*hi, unit)
	case lo != nil:
		s = ">= " + value(*lo, unit)
	case hi != nil:
		s = "<= " + value(*hi, unit)
	default:
		return "none"
	}
	if t.Stat != "" {
		s = t.Stat + " " + s
	}
	if t.Over > 0 {
		s += " over " + secs(t.Over)
	}
	return s
}
