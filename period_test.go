package agentkey

import (
	"fmt"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // the zone tests must not depend on the host's zoneinfo

	"github.com/stretchr/testify/require"
)

// mustLocation loads an IANA time zone or fails the test.
func mustLocation(t *testing.T, name string) *time.Location {
	t.Helper()

	loc, err := time.LoadLocation(name)
	require.NoError(t, err)
	return loc
}

// wall returns the wall-clock time y-m-d h:min in loc.
func wall(loc *time.Location, y int, m time.Month, d, h, min int) time.Time {
	return time.Date(y, m, d, h, min, 0, 0, loc)
}

func TestParsePeriod(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name    string
		in      string
		want    Period
		wantErr bool
	}{
		{name: "EmptyIsNone", in: "", want: PeriodNone},
		{name: "None", in: "none", want: PeriodNone},
		{name: "Day", in: "day", want: PeriodDay},
		{name: "Week", in: "week", want: PeriodWeek},
		{name: "Month", in: "month", want: PeriodMonth},
		{name: "UpperCaseRefused", in: "Day", wantErr: true},
		{name: "AdjectiveRefused", in: "monthly", wantErr: true},
		{name: "YearRefused", in: "year", wantErr: true},
		{name: "SpaceRefused", in: " day", wantErr: true},
		{name: "DurationRefused", in: "1d", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			got, err := ParsePeriod(tt.in)
			if tt.wantErr {
				require.ErrorIs(t, err, ErrPeriod)
				require.Empty(t, got)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}

	t.Run("HugeInputShortError", func(t *testing.T) {
		t.Parallel()

		_, err := ParsePeriod(strings.Repeat("x", 10_000))
		require.ErrorIs(t, err, ErrPeriod)
		require.LessOrEqual(t, len(err.Error()), maxErrLen)
	})
}

func TestPeriodWindow(t *testing.T) {
	t.Parallel()

	utc := time.UTC
	ny := mustLocation(t, "America/New_York")
	kolkata := mustLocation(t, "Asia/Kolkata")
	anchorAny := wall(utc, 2025, 6, 10, 8, 0)
	anchor31 := wall(utc, 2026, 1, 31, 0, 0)
	anchor29 := wall(utc, 2026, 1, 29, 0, 0)
	anchor30 := wall(utc, 2026, 1, 30, 0, 0)

	tests := []struct {
		name      string
		period    Period
		anchor    time.Time
		loc       *time.Location
		now       time.Time
		wantStart time.Time
		wantEnd   time.Time
	}{
		{
			name: "DayUTC", period: PeriodDay, anchor: anchorAny, loc: utc,
			now:       wall(utc, 2026, 3, 15, 13, 45),
			wantStart: wall(utc, 2026, 3, 15, 0, 0), wantEnd: wall(utc, 2026, 3, 16, 0, 0),
		},
		{
			name: "DayStartsAtExactMidnight", period: PeriodDay, anchor: anchorAny, loc: utc,
			now:       wall(utc, 2026, 3, 16, 0, 0),
			wantStart: wall(utc, 2026, 3, 16, 0, 0), wantEnd: wall(utc, 2026, 3, 17, 0, 0),
		},
		{
			name: "DayNilLocationIsUTC", period: PeriodDay, anchor: anchorAny, loc: nil,
			now:       wall(ny, 2026, 3, 15, 22, 0), // 02:00 UTC on the 16th
			wantStart: wall(utc, 2026, 3, 16, 0, 0), wantEnd: wall(utc, 2026, 3, 17, 0, 0),
		},
		{
			name: "DayLastOfYear", period: PeriodDay, anchor: anchorAny, loc: utc,
			now:       wall(utc, 2026, 12, 31, 23, 59),
			wantStart: wall(utc, 2026, 12, 31, 0, 0), wantEnd: wall(utc, 2027, 1, 1, 0, 0),
		},
		{
			name: "DayInNewYorkFromUTCInstant", period: PeriodDay, anchor: anchorAny, loc: ny,
			now:       wall(utc, 2026, 3, 16, 2, 0), // 22:00 EDT on the 15th
			wantStart: wall(ny, 2026, 3, 15, 0, 0), wantEnd: wall(ny, 2026, 3, 16, 0, 0),
		},
		{
			// Clocks spring forward on 2026-03-08: that day lasts 23 hours.
			name: "DayNewYorkSpringForward", period: PeriodDay, anchor: anchorAny, loc: ny,
			now:       wall(ny, 2026, 3, 8, 12, 0),
			wantStart: wall(ny, 2026, 3, 8, 0, 0), wantEnd: wall(ny, 2026, 3, 9, 0, 0),
		},
		{
			// Clocks fall back on 2026-11-01: that day lasts 25 hours.
			name: "DayNewYorkFallBack", period: PeriodDay, anchor: anchorAny, loc: ny,
			now:       wall(ny, 2026, 11, 1, 1, 30),
			wantStart: wall(ny, 2026, 11, 1, 0, 0), wantEnd: wall(ny, 2026, 11, 2, 0, 0),
		},
		{
			name: "DayKolkataHalfHourOffset", period: PeriodDay, anchor: anchorAny, loc: kolkata,
			now:       wall(utc, 2026, 3, 15, 20, 0), // 01:30 IST on the 16th
			wantStart: wall(kolkata, 2026, 3, 16, 0, 0), wantEnd: wall(kolkata, 2026, 3, 17, 0, 0),
		},
		{
			name: "WeekStartsMonday", period: PeriodWeek, anchor: anchorAny, loc: utc,
			now:       wall(utc, 2026, 3, 18, 9, 0), // a Wednesday
			wantStart: wall(utc, 2026, 3, 16, 0, 0), wantEnd: wall(utc, 2026, 3, 23, 0, 0),
		},
		{
			name: "WeekSundayNightIsStillSameWeek", period: PeriodWeek, anchor: anchorAny, loc: utc,
			now:       wall(utc, 2026, 3, 22, 23, 59),
			wantStart: wall(utc, 2026, 3, 16, 0, 0), wantEnd: wall(utc, 2026, 3, 23, 0, 0),
		},
		{
			name: "WeekMondayMidnightStartsNewWeek", period: PeriodWeek, anchor: anchorAny, loc: utc,
			now:       wall(utc, 2026, 3, 23, 0, 0),
			wantStart: wall(utc, 2026, 3, 23, 0, 0), wantEnd: wall(utc, 2026, 3, 30, 0, 0),
		},
		{
			name: "WeekAcrossNewYear", period: PeriodWeek, anchor: anchorAny, loc: utc,
			now:       wall(utc, 2026, 1, 1, 12, 0), // a Thursday
			wantStart: wall(utc, 2025, 12, 29, 0, 0), wantEnd: wall(utc, 2026, 1, 5, 0, 0),
		},
		{
			name: "WeekNewYorkAcrossSpringForward", period: PeriodWeek, anchor: anchorAny, loc: ny,
			now:       wall(ny, 2026, 3, 8, 12, 0), // the Sunday of the change
			wantStart: wall(ny, 2026, 3, 2, 0, 0), wantEnd: wall(ny, 2026, 3, 9, 0, 0),
		},
		{
			name: "WeekKolkataMondayBeforeUTC", period: PeriodWeek, anchor: anchorAny, loc: kolkata,
			now:       wall(utc, 2026, 3, 22, 19, 0), // Monday 00:30 IST, Sunday in UTC
			wantStart: wall(kolkata, 2026, 3, 23, 0, 0), wantEnd: wall(kolkata, 2026, 3, 30, 0, 0),
		},
		{
			name: "MonthAnchor31InFebruary", period: PeriodMonth, anchor: anchor31, loc: utc,
			now:       wall(utc, 2026, 2, 10, 12, 0),
			wantStart: wall(utc, 2026, 1, 31, 0, 0), wantEnd: wall(utc, 2026, 2, 28, 0, 0),
		},
		{
			name: "MonthAnchor31OnAnchorDay", period: PeriodMonth, anchor: anchor31, loc: utc,
			now:       wall(utc, 2026, 1, 31, 0, 0),
			wantStart: wall(utc, 2026, 1, 31, 0, 0), wantEnd: wall(utc, 2026, 2, 28, 0, 0),
		},
		{
			name: "MonthAnchor31DayBeforeAnchor", period: PeriodMonth, anchor: anchor31, loc: utc,
			now:       wall(utc, 2026, 1, 30, 23, 59),
			wantStart: wall(utc, 2025, 12, 31, 0, 0), wantEnd: wall(utc, 2026, 1, 31, 0, 0),
		},
		{
			name: "MonthAnchor31OnFeb28", period: PeriodMonth, anchor: anchor31, loc: utc,
			now:       wall(utc, 2026, 2, 28, 0, 0),
			wantStart: wall(utc, 2026, 2, 28, 0, 0), wantEnd: wall(utc, 2026, 3, 31, 0, 0),
		},
		{
			name: "MonthAnchor31InMarchReturnsTo31", period: PeriodMonth, anchor: anchor31, loc: utc,
			now:       wall(utc, 2026, 3, 15, 12, 0),
			wantStart: wall(utc, 2026, 2, 28, 0, 0), wantEnd: wall(utc, 2026, 3, 31, 0, 0),
		},
		{
			name: "MonthAnchor31ThirtyDayMonth", period: PeriodMonth, anchor: anchor31, loc: utc,
			now:       wall(utc, 2026, 4, 30, 12, 0),
			wantStart: wall(utc, 2026, 4, 30, 0, 0), wantEnd: wall(utc, 2026, 5, 31, 0, 0),
		},
		{
			name: "MonthAnchor31AcrossNewYear", period: PeriodMonth, anchor: anchor31, loc: utc,
			now:       wall(utc, 2027, 1, 5, 0, 0),
			wantStart: wall(utc, 2026, 12, 31, 0, 0), wantEnd: wall(utc, 2027, 1, 31, 0, 0),
		},
		{
			name: "MonthAnchor31LeapFebruary", period: PeriodMonth, anchor: anchor31, loc: utc,
			now:       wall(utc, 2028, 2, 15, 0, 0),
			wantStart: wall(utc, 2028, 1, 31, 0, 0), wantEnd: wall(utc, 2028, 2, 29, 0, 0),
		},
		{
			name: "MonthAnchor31AfterLeapDay", period: PeriodMonth, anchor: anchor31, loc: utc,
			now:       wall(utc, 2028, 3, 1, 0, 0),
			wantStart: wall(utc, 2028, 2, 29, 0, 0), wantEnd: wall(utc, 2028, 3, 31, 0, 0),
		},
		{
			name: "MonthAnchor29ShortFebruary", period: PeriodMonth, anchor: anchor29, loc: utc,
			now:       wall(utc, 2026, 2, 28, 12, 0),
			wantStart: wall(utc, 2026, 2, 28, 0, 0), wantEnd: wall(utc, 2026, 3, 29, 0, 0),
		},
		{
			name: "MonthAnchor29BeforeShortFebBoundary", period: PeriodMonth, anchor: anchor29, loc: utc,
			now:       wall(utc, 2026, 2, 27, 12, 0),
			wantStart: wall(utc, 2026, 1, 29, 0, 0), wantEnd: wall(utc, 2026, 2, 28, 0, 0),
		},
		{
			name: "MonthAnchor29LeapFebruary", period: PeriodMonth, anchor: anchor29, loc: utc,
			now:       wall(utc, 2028, 2, 29, 0, 0),
			wantStart: wall(utc, 2028, 2, 29, 0, 0), wantEnd: wall(utc, 2028, 3, 29, 0, 0),
		},
		{
			name: "MonthAnchor30AfterFebruary", period: PeriodMonth, anchor: anchor30, loc: utc,
			now:       wall(utc, 2026, 3, 1, 0, 0),
			wantStart: wall(utc, 2026, 2, 28, 0, 0), wantEnd: wall(utc, 2026, 3, 30, 0, 0),
		},
		{
			name: "MonthAnchor30OnAnchorDay", period: PeriodMonth, anchor: anchor30, loc: utc,
			now:       wall(utc, 2026, 3, 30, 0, 0),
			wantStart: wall(utc, 2026, 3, 30, 0, 0), wantEnd: wall(utc, 2026, 4, 30, 0, 0),
		},
		{
			name: "MonthAnchorTimeOfDayIgnored", period: PeriodMonth,
			anchor: wall(utc, 2026, 1, 15, 17, 42), loc: utc,
			now:       wall(utc, 2026, 3, 15, 9, 0),
			wantStart: wall(utc, 2026, 3, 15, 0, 0), wantEnd: wall(utc, 2026, 4, 15, 0, 0),
		},
		{
			// 03:00 UTC on Jan 31 is 22:00 on Jan 30 in New York: the anchor's
			// day is read in the budget's zone.
			name: "MonthAnchorDayReadInLocation", period: PeriodMonth,
			anchor: wall(utc, 2026, 1, 31, 3, 0), loc: ny,
			now:       wall(ny, 2026, 3, 10, 12, 0),
			wantStart: wall(ny, 2026, 2, 28, 0, 0), wantEnd: wall(ny, 2026, 3, 30, 0, 0),
		},
		{
			name: "MonthNewYorkAcrossSpringForward", period: PeriodMonth,
			anchor: wall(ny, 2026, 1, 15, 0, 0), loc: ny,
			now:       wall(ny, 2026, 3, 10, 12, 0),
			wantStart: wall(ny, 2026, 2, 15, 0, 0), wantEnd: wall(ny, 2026, 3, 15, 0, 0),
		},
		{
			name: "MonthKolkata", period: PeriodMonth, anchor: anchor31, loc: kolkata,
			now:       wall(utc, 2026, 2, 27, 19, 0), // Feb 28 00:30 IST
			wantStart: wall(kolkata, 2026, 2, 28, 0, 0), wantEnd: wall(kolkata, 2026, 3, 31, 0, 0),
		},
		{
			name: "NoneStartsAtAnchorAndNeverEnds", period: PeriodNone, anchor: anchorAny, loc: utc,
			now:       wall(utc, 2030, 1, 1, 0, 0),
			wantStart: anchorAny, wantEnd: time.Time{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			start, end := tt.period.Window(tt.anchor, tt.loc, tt.now)
			require.True(t, tt.wantStart.Equal(start), "start %v, want %v", start, tt.wantStart)
			require.True(t, tt.wantEnd.Equal(end), "end %v, want %v", end, tt.wantEnd)
			if tt.period != PeriodNone {
				requireInWindow(t, tt.now, start, end)
			}
		})
	}
}

// requireInWindow fails unless start <= now < end.
func requireInWindow(t *testing.T, now, start, end time.Time) {
	t.Helper()

	require.False(t, now.Before(start), "now %v is before the window's start %v", now, start)
	require.True(t, now.Before(end), "now %v is not before the window's end %v", now, end)
}

func TestPeriodWindowDSTLengths(t *testing.T) {
	t.Parallel()

	ny := mustLocation(t, "America/New_York")
	tests := []struct {
		name   string
		period Period
		now    time.Time
		want   time.Duration
	}{
		{name: "SpringForwardDayIs23Hours", period: PeriodDay,
			now: wall(ny, 2026, 3, 8, 12, 0), want: 23 * time.Hour},
		{name: "FallBackDayIs25Hours", period: PeriodDay,
			now: wall(ny, 2026, 11, 1, 12, 0), want: 25 * time.Hour},
		{name: "SpringForwardWeekLosesAnHour", period: PeriodWeek,
			now: wall(ny, 2026, 3, 4, 0, 0), want: 7*Day - time.Hour},
		{name: "OrdinaryWeek", period: PeriodWeek,
			now: wall(ny, 2026, 6, 4, 0, 0), want: 7 * Day},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			start, end := tt.period.Window(time.Time{}, ny, tt.now)
			require.Equal(t, tt.want, end.Sub(start))
			require.Zero(t, start.In(ny).Hour())
			require.Zero(t, end.In(ny).Hour())
		})
	}
}

// TestPeriodWindowMonthNeverDrifts walks three years of consecutive monthly
// windows: each starts where the last ended, and every boundary falls on the
// anchor day or, in a month too short for it, on the month's last day.
func TestPeriodWindowMonthNeverDrifts(t *testing.T) {
	t.Parallel()

	for _, zone := range []string{"UTC", "America/New_York", "Asia/Kolkata"} {
		for _, anchorDay := range []int{1, 15, 28, 29, 30, 31} {
			t.Run(fmt.Sprintf("%s/AnchorDay%02d", zone, anchorDay), func(t *testing.T) {
				t.Parallel()

				loc := mustLocation(t, zone)
				anchor := time.Date(2026, 1, anchorDay, 0, 0, 0, 0, loc)
				boundary := anchor
				for i := range 36 {
					start, end := PeriodMonth.Window(anchor, loc, boundary)
					require.True(t, start.Equal(boundary), "month %d: start %v, want %v",
						i, start, boundary)

					y, m, d := end.In(loc).Date()
					lastDay := time.Date(y, m+1, 0, 0, 0, 0, 0, loc).Day()
					require.Equal(t, min(anchorDay, lastDay), d, "month %d: end %v", i, end)
					require.Equal(t, time.Date(y, m, d, 0, 0, 0, 0, loc), end.In(loc))

					wantMonth := time.Date(2026, time.Month(1+i+1), 1, 0, 0, 0, 0, loc).Month()
					require.Equal(t, wantMonth, m, "month %d: end %v", i, end)
					boundary = end
				}
			})
		}
	}
}

// TestPeriodWindowDeterministic checks that every instant of a window gets
// that same window back, so processes that roll a budget at different moments
// agree on the next reset.
func TestPeriodWindowDeterministic(t *testing.T) {
	t.Parallel()

	zones := []string{"UTC", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"}
	anchors := []time.Time{
		time.Date(2026, 1, 31, 0, 0, 0, 0, time.UTC),
		time.Date(2025, 11, 29, 13, 5, 0, 0, time.UTC),
		time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
	}
	for _, zone := range zones {
		for _, period := range []Period{PeriodDay, PeriodWeek, PeriodMonth} {
			t.Run(zone+"/"+string(period), func(t *testing.T) {
				t.Parallel()

				loc := mustLocation(t, zone)
				for _, anchor := range anchors {
					// Walk a year and a half of consecutive windows, probing
					// each at its edges and at irregular steps inside it.
					now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
					stop := now.AddDate(1, 6, 0)
					step := 7*time.Hour + 13*time.Minute + 17*time.Second
					if period == PeriodDay {
						step = 53*time.Minute + 7*time.Second
					}
					for now.Before(stop) {
						start, end := period.Window(anchor, loc, now)
						requireInWindow(t, now, start, end)

						for _, probe := range []time.Time{start, end.Add(-time.Nanosecond)} {
							s, e := period.Window(anchor, loc, probe)
							require.True(t, s.Equal(start) && e.Equal(end),
								"probe %v: window [%v, %v), want [%v, %v)", probe, s, e, start, end)
						}
						for probe := start.Add(step); probe.Before(end); probe = probe.Add(step) {
							s, e := period.Window(anchor, loc, probe)
							require.True(t, s.Equal(start) && e.Equal(end),
								"probe %v: window [%v, %v), want [%v, %v)", probe, s, e, start, end)
						}

						next, _ := period.Window(anchor, loc, end)
						require.True(t, next.Equal(end), "window after [%v, %v) starts at %v",
							start, end, next)
						now = end
					}
				}
			})
		}
	}
}

// TestPeriodWindowMidnightDSTGap guards against a daily window that has ended
// before the instant it was computed for. Where clocks spring forward at
// midnight (America/Santiago on 2026-09-06, America/Havana on 2026-03-08),
// time.Date normalises the missing midnight to 23:00 of the day before, so
// for now between 23:00 and 24:00 on the eve Window returns an end that is
// already past, and RollForward then resets the budget on every call in that
// hour.
func TestPeriodWindowMidnightDSTGap(t *testing.T) {
	t.Parallel()

	for _, tt := range []struct {
		zone string
		now  time.Time
	}{
		{zone: "America/Santiago", now: time.Date(2026, 9, 6, 3, 30, 0, 0, time.UTC)},
		{zone: "America/Havana", now: time.Date(2026, 3, 8, 4, 30, 0, 0, time.UTC)},
	} {
		loc := mustLocation(t, tt.zone)
		start, end := PeriodDay.Window(time.Time{}, loc, tt.now)
		requireInWindow(t, tt.now, start, end)
	}
}
