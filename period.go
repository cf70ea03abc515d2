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
		start = time.Date(y, m, d, 0, 0, 0, 0, loc)
		return start, time.Date(y, m, d+1, 0, 0, 0, 0, loc)

	case PeriodWeek:
		back := (int(now.Weekday()) + 6) % 7 // days since Monday
		start = time.Date(y, m, d-back, 0, 0, 0, 0, loc)
		return start, time.Date(y, m, d-back+7, 0, 0, 0, 0, loc)

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
	first := time.Date(y, m, 1, 0, 0, 0, 0, loc)
	last := first.AddDate(0, 1, -1).Day()
	return time.Date(first.Year(), first.Month(), min(day, last), 0, 0, 0, 0, loc)
}
