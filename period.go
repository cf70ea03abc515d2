package agentkey

import (
	"errors"
	"fmt"
	"time"
)

// ErrPeriod is returned for a budget period that ParsePeriod does not know.
var ErrPeriod = errors.New("unknown budget period")

// Period is how often a budget starts again from zero.
type Period string

// The budget periods. A period's boundaries fall at midnight in the budget's
// time zone (UTC unless configured): every day, every Monday, or every month on
// the budget's anchor day.
const (
	PeriodNone  Period = "none"
	PeriodDay   Period = "day"
	PeriodWeek  Period = "week"
	PeriodMonth Period = "month"
)

// ParsePeriod returns the Period named by s; the empty string is PeriodNone.
func ParsePeriod(s string) (Period, error) {
	switch p := Period(s); p {
	case "":
		return PeriodNone, nil
	case PeriodNone, PeriodDay, PeriodWeek, PeriodMonth:
		return p, nil
	}
	return "", fmt.Errorf("%w %q: want none, day, week or month", ErrPeriod, truncate(s, 40))
}

// Window returns the period that contains now: its start and the next reset.
// For PeriodNone the window starts at anchor and never ends (end is zero).
//
// The window depends only on the period, the anchor, the location and now, so
// every process that notices a rollover computes the same next reset, however
// many periods have elapsed since the last touch.
//
// A monthly window starts on the anchor's day of the month. When a month is too
// short for that day, the window starts on the month's last day instead, and the
// next month returns to the anchor day: an anchor on the 31st resets on Jan 31,
// Feb 28, Mar 31, never drifting to the 28th.
func (p Period) Window(anchor time.Time, loc *time.Location, now time.Time) (start, end time.Time) {
	if loc == nil {
		loc = time.UTC
	}
	now = now.In(loc)
	y, m, d := now.Date()

	switch p {
	case PeriodDay:
		return midnight(y, m, d, loc), midnight(y, m, d+1, loc)

	case PeriodWeek:
		back := (int(now.Weekday()) + 6) % 7 // days since Monday
		return midnight(y, m, d-back, loc), midnight(y, m, d-back+7, loc)

	case PeriodMonth:
		day := anchor.In(loc).Day()
		start = monthBoundary(y, m, day, loc)
		if now.Before(start) {
			start = monthBoundary(y, m-1, day, loc)
		}
		sy, sm, _ := start.Date()
		return start, monthBoundary(sy, sm+1, day, loc)
	}
	return anchor, time.Time{}
}

// monthBoundary returns midnight of day in month m of year y, clamped to the
// month's last day. Month numbers outside 1..12 roll into the next or previous
// year, as with time.Date.
func monthBoundary(y int, m time.Month, day int, loc *time.Location) time.Time {
	first := time.Date(y, m, 1, 12, 0, 0, 0, loc)
	last := first.AddDate(0, 1, -1).Day()
	return midnight(first.Year(), first.Month(), min(day, last), loc)
}

// midnight returns the first instant of day d of month m in loc. Where the
// clocks jump forward at midnight (America/Santiago, America/Havana) there is
// no 00:00, and time.Date would answer 23:00 of the day before; the day then
// starts at the jump.
func midnight(y int, m time.Month, d int, loc *time.Location) time.Time {
	noon := time.Date(y, m, d, 12, 0, 0, 0, loc)
	t := time.Date(noon.Year(), noon.Month(), noon.Day(), 0, 0, 0, 0, loc)
	if t.Day() != noon.Day() {
		_, t = t.ZoneBounds()
	}
	return t
}
