package agentkey

import (
	"math"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParseDuration(t *testing.T) {
	t.Parallel()

	// The longest whole number of days a time.Duration holds: 106751 days and
	// about 23.8 hours.
	maxDays := int64(math.MaxInt64 / int64(Day))
	require.Equal(t, int64(106_751), maxDays)

	tests := []struct {
		name    string
		in      string
		want    time.Duration
		wantErr bool
	}{
		{name: "Minutes", in: "30m", want: 30 * time.Minute},
		{name: "Hour", in: "1h", want: time.Hour},
		{name: "Days", in: "7d", want: 7 * 24 * time.Hour},
		{name: "Weeks", in: "2w", want: 14 * 24 * time.Hour},
		{name: "MonthIsThirtyDays", in: "1mo", want: 30 * 24 * time.Hour},
		{name: "TwelveMonthsIs360Days", in: "12mo", want: 360 * 24 * time.Hour},
		{name: "LeadingZerosAccepted", in: "007d", want: 7 * Day},
		{name: "LongestDays", in: "106751d", want: time.Duration(maxDays) * Day},
		{name: "LongestMinutes", in: "153722867m", want: 153_722_867 * time.Minute},

		{name: "EmptyRefused", in: "", wantErr: true},
		{name: "ZeroRefused", in: "0d", wantErr: true},
		{name: "ZeroMinutesRefused", in: "0m", wantErr: true},
		{name: "NegativeRefused", in: "-1d", wantErr: true},
		{name: "PlusSignRefused", in: "+1d", wantErr: true},
		{name: "YearsRefused", in: "1y", wantErr: true},
		{name: "SecondsRefused", in: "1s", wantErr: true},
		{name: "NoUnitRefused", in: "5", wantErr: true},
		{name: "NoNumberRefused", in: "d", wantErr: true},
		{name: "NoNumberMonthRefused", in: "mo", wantErr: true},
		{name: "FractionRefused", in: "1.5h", wantErr: true},
		{name: "SpaceRefused", in: "1 h", wantErr: true},
		{name: "LeadingSpaceRefused", in: " 1h", wantErr: true},
		{name: "TrailingSpaceRefused", in: "1h ", wantErr: true},
		{name: "UpperCaseRefused", in: "1H", wantErr: true},
		{name: "UpperCaseMonthRefused", in: "1MO", wantErr: true},
		{name: "MonthPrefixRefused", in: "1mon", wantErr: true},
		{name: "TwoUnitsRefused", in: "1h30m", wantErr: true},
		{name: "GoSyntaxRefused", in: "1h0m0s", wantErr: true},
		{name: "PastInt64Refused", in: "99999999999999999999d", wantErr: true},
		{name: "DaysPastDurationRefused", in: "106752d", wantErr: true},
		{name: "MonthsPastDurationRefused", in: "3559mo", wantErr: true},
		{name: "MinutesPastDurationRefused", in: "153722868m", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			got, err := ParseDuration(tt.in)
			if tt.wantErr {
				require.ErrorIs(t, err, ErrDuration)
				require.Zero(t, got)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestParseDurationHugeInputShortError(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name string
		in   string
	}{
		{name: "Letters", in: strings.Repeat("x", 10_000)},
		{name: "Digits", in: strings.Repeat("9", 10_000) + "d"},
		{name: "BadUnit", in: "1" + strings.Repeat("d", 10_000)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			_, err := ParseDuration(tt.in)
			require.ErrorIs(t, err, ErrDuration)
			require.LessOrEqual(t, len(err.Error()), maxErrLen, "error: %.200s", err)
		})
	}
}

// TestParseDurationZeroHugeInputShortError guards against the "must be
// positive" error quoting its whole input: leading zeros make a 10,000-byte
// string a well-formed zero.
func TestParseDurationZeroHugeInputShortError(t *testing.T) {
	t.Parallel()

	_, err := ParseDuration(strings.Repeat("0", 10_000) + "d")
	require.ErrorIs(t, err, ErrDuration)
	require.LessOrEqual(t, len(err.Error()), maxErrLen)
}

func TestFormatDuration(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name string
		d    time.Duration
		want string
	}{
		{name: "Minutes", d: 30 * time.Minute, want: "30m"},
		{name: "Hour", d: time.Hour, want: "1h"},
		{name: "HoursNotDays", d: 36 * time.Hour, want: "36h"},
		{name: "Days", d: 3 * Day, want: "3d"},
		{name: "Week", d: 7 * Day, want: "1w"},
		{name: "DaysNotWeeks", d: 10 * Day, want: "10d"},
		{name: "Month", d: 30 * Day, want: "1mo"},
		{name: "LargestUnitWins", d: 210 * Day, want: "7mo"},
		{name: "NinetyMinutes", d: 90 * time.Minute, want: "90m"},
		{name: "SecondsFallBack", d: 90 * time.Second, want: "1m30s"},
		{name: "ZeroFallsBack", d: 0, want: "0s"},
		{name: "NegativeFallsBack", d: -time.Hour, want: "-1h0m0s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			require.Equal(t, tt.want, FormatDuration(tt.d))
		})
	}
}

// durationSyntax is the grammar ParseDuration accepts, written independently
// of it.
var durationSyntax = regexp.MustCompile(`^([0-9]+)(m|h|d|w|mo)$`)

func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{
		"30m", "1h", "7d", "2w", "1mo", "", "0d", "-1d", "1y", "1s", "d", "1.5h", "1 h",
		"1H", "99999999999999999999d", "106751d", "106752d", "0001mo", "1h30m", "mo",
		"153722867m", "15250w", "3558mo",
	} {
		f.Add(s)
	}

	units := map[string]time.Duration{
		"m": time.Minute, "h": time.Hour, "d": Day, "w": Week, "mo": Month,
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseDuration(s)

		// What the input should give: a positive whole number of a unit that
		// time.Duration can hold.
		wantOK := false
		var want time.Duration
		if m := durationSyntax.FindStringSubmatch(s); m != nil {
			n, perr := strconv.ParseInt(m[1], 10, 64)
			unit := units[m[2]]
			if perr == nil && n > 0 && n <= math.MaxInt64/int64(unit) {
				wantOK, want = true, time.Duration(n)*unit
			}
		}

		if !wantOK {
			require.ErrorIs(t, err, ErrDuration, "input %q", s)
			require.Zero(t, got)
			return
		}
		require.NoError(t, err, "input %q", s)
		require.Positive(t, got)
		require.Equal(t, want, got, "input %q", s)

		text := FormatDuration(got)
		back, err := ParseDuration(text)
		require.NoError(t, err, "input %q, formatted %q", s, text)
		require.Equal(t, got, back, "input %q, formatted %q", s, text)
	})
}
