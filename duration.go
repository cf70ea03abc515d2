package agentkey

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
)

// ErrDuration is returned for a duration that ParseDuration does not accept.
var ErrDuration = errors.New("invalid duration")

// Day, Week and Month are the lengths that ParseDuration gives to the units d,
// w and mo. A "month" of expiry is 30 days, as in the reference library; budget
// periods use calendar months instead (see Period).
const (
	Day   = 24 * time.Hour
	Week  = 7 * Day
	Month = 30 * Day
)

var durationUnits = map[string]time.Duration{
	"m":  time.Minute,
	"h":  time.Hour,
	"d":  Day,
	"w":  Week,
	"mo": Month,
}

// ParseDuration parses an expiry such as "30m", "1h", "7d", "2w" or "1mo": a
// positive whole number followed by one unit. It refuses other units, zero,
// negative numbers and durations too long for time.Duration.
func ParseDuration(s string) (time.Duration, error) {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	num, unitName := s[:i], s[i:]
	unit, ok := durationUnits[unitName]
	if num == "" || !ok {
		return 0, fmt.Errorf("%w %q: want a positive number and a unit of m, h, d, w or mo",
			ErrDuration, truncate(s, 40))
	}

	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n > math.MaxInt64/int64(unit) {
		return 0, fmt.Errorf("%w %q: too long", ErrDuration, truncate(s, 40))
	}
	if n == 0 {
		return 0, fmt.Errorf("%w %q: must be positive", ErrDuration, truncate(s, 40))
	}
	return time.Duration(n) * unit, nil
}

// FormatDuration writes d in the largest unit of ParseDuration that divides it
// exactly, falling back to time.Duration's own format.
func FormatDuration(d time.Duration) string {
	for _, u := range []struct {
		name string
		d    time.Duration
	}{{"mo", Month}, {"w", Week}, {"d", Day}, {"h", time.Hour}, {"m", time.Minute}} {
		if d > 0 && d%u.d == 0 {
			return strconv.FormatInt(int64(d/u.d), 10) + u.name
		}
	}
	return d.String()
}
