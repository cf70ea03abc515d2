package agentkey

import (
	"encoding/json"
	"math"
	"math/big"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// maxErrLen bounds the message of an error about an amount or a duration:
// the input is cut to 40 bytes, so a huge input cannot flood a log line. %q
// may spell each of those bytes as four characters (\xdf).
const maxErrLen = 256

func TestMoneyFromDollars(t *testing.T) {
	t.Parallel()

	maxDollars := int64(MaxMoney / Dollar) // 9,223,372,036,854
	tests := []struct {
		name    string
		n       int64
		want    Money
		wantErr error
	}{
		{name: "Zero", n: 0, want: 0},
		{name: "One", n: 1, want: 1_000_000},
		{name: "NegativeOne", n: -1, want: -1_000_000},
		{name: "FiftyMillion", n: 50_000_000, want: 50_000_000_000_000},
		{name: "LargestWholeDollarFits", n: maxDollars, want: 9_223_372_036_854_000_000},
		{name: "MostNegativeWholeDollarFits", n: -maxDollars, want: -9_223_372_036_854_000_000},
		{name: "OneDollarPastMaxOverflows", n: maxDollars + 1, wantErr: ErrAmountOverflow},
		{name: "OneDollarPastMinOverflows", n: -maxDollars - 1, wantErr: ErrAmountOverflow},
		{name: "MaxInt64Overflows", n: math.MaxInt64, wantErr: ErrAmountOverflow},
		{name: "MinInt64Overflows", n: math.MinInt64, wantErr: ErrAmountOverflow},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			got, err := FromDollars(tt.n)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				require.Zero(t, got)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestMoneyFromCents(t *testing.T) {
	t.Parallel()

	maxCents := int64(MaxMoney / Cent) // 922,337,203,685,477
	tests := []struct {
		name    string
		n       int64
		want    Money
		wantErr error
	}{
		{name: "Zero", n: 0, want: 0},
		{name: "OneCent", n: 1, want: 10_000},
		{name: "OneDollarOfCents", n: 100, want: Dollar},
		{name: "NegativeCents", n: -250, want: -2_500_000},
		{name: "LargestCentsFit", n: maxCents, want: 9_223_372_036_854_770_000},
		{name: "MostNegativeCentsFit", n: -maxCents, want: -9_223_372_036_854_770_000},
		{name: "OneCentPastMaxOverflows", n: maxCents + 1, wantErr: ErrAmountOverflow},
		{name: "OneCentPastMinOverflows", n: -maxCents - 1, wantErr: ErrAmountOverflow},
		{name: "MaxInt64Overflows", n: math.MaxInt64, wantErr: ErrAmountOverflow},
		{name: "MinInt64Overflows", n: math.MinInt64, wantErr: ErrAmountOverflow},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			got, err := FromCents(tt.n)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				require.Zero(t, got)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestMoneyAdd(t *testing.T) {
	t.Parallel()

	// Money's arithmetic range is symmetric, [-MaxMoney, MaxMoney]: a result of
	// exactly math.MinInt64 is refused like any other overflow.
	tests := []struct {
		name    string
		m, n    Money
		want    Money
		wantErr error
	}{
		{name: "Small", m: 2 * Dollar, n: 400, want: 2_000_400},
		{name: "NegativeAddend", m: 2 * Dollar, n: -3 * Dollar, want: -Dollar},
		{name: "ReachesMaxMoney", m: MaxMoney - 1, n: 1, want: MaxMoney},
		{name: "MaxPlusZero", m: MaxMoney, n: 0, want: MaxMoney},
		{name: "MaxPlusOneOverflows", m: MaxMoney, n: 1, wantErr: ErrAmountOverflow},
		{name: "OnePlusMaxOverflows", m: 1, n: MaxMoney, wantErr: ErrAmountOverflow},
		{name: "MaxPlusMaxOverflows", m: MaxMoney, n: MaxMoney, wantErr: ErrAmountOverflow},
		{name: "ReachesMinusMaxMoney", m: -MaxMoney + 1, n: -1, want: -MaxMoney},
		{name: "MinusMaxPlusMinusOneOverflows", m: -MaxMoney, n: -1, wantErr: ErrAmountOverflow},
		{name: "MinusMaxPlusMinusMaxOverflows", m: -MaxMoney, n: -MaxMoney, wantErr: ErrAmountOverflow},
		{name: "ZeroPlusMinInt64Refused", m: 0, n: math.MinInt64, wantErr: ErrAmountOverflow},
		{name: "MinInt64PlusMinusOneOverflows", m: math.MinInt64, n: -1, wantErr: ErrAmountOverflow},
		{name: "MinInt64PlusOne", m: math.MinInt64, n: 1, want: math.MinInt64 + 1},
		{name: "MaxPlusMinInt64", m: MaxMoney, n: math.MinInt64, want: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			got, err := tt.m.Add(tt.n)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				require.Zero(t, got)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestMoneySub(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name    string
		m, n    Money
		want    Money
		wantErr error
	}{
		{name: "Small", m: 2 * Dollar, n: 400, want: 1_999_600},
		{name: "BelowZero", m: Dollar, n: 3 * Dollar, want: -2 * Dollar},
		{name: "SubtractNegativeReachesMax", m: MaxMoney - 1, n: -1, want: MaxMoney},
		{name: "MaxMinusMinusOneOverflows", m: MaxMoney, n: -1, wantErr: ErrAmountOverflow},
		{name: "ZeroMinusMaxIsMinusMax", m: 0, n: MaxMoney, want: -MaxMoney},
		{name: "MinusOneMinusMaxOverflows", m: -1, n: MaxMoney, wantErr: ErrAmountOverflow},
		{name: "MinusMaxMinusOneOverflows", m: -MaxMoney, n: 1, wantErr: ErrAmountOverflow},
		{name: "MinusMinInt64Overflows", m: 0, n: math.MinInt64, wantErr: ErrAmountOverflow},
		{name: "PositiveMinusMinInt64Overflows", m: 5, n: math.MinInt64, wantErr: ErrAmountOverflow},
		{name: "MinInt64MinusOneOverflows", m: math.MinInt64, n: 1, wantErr: ErrAmountOverflow},
		{name: "MaxMinusMax", m: MaxMoney, n: MaxMoney, want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			got, err := tt.m.Sub(tt.n)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				require.Zero(t, got)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestParseMoney(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name    string
		in      string
		want    Money
		wantErr error
	}{
		{name: "WholeDollars", in: "50", want: 50 * Dollar},
		{name: "FractionOfACent", in: "0.0004", want: 400},
		{name: "TrailingZeroDecimal", in: "12.50", want: 12_500_000},
		{name: "DollarSign", in: "$12.50", want: 12_500_000},
		{name: "Zero", in: "0", want: 0},
		{name: "NegativeZeroIsZero", in: "-0", want: 0},
		{name: "LeadingDotAccepted", in: ".5", want: 500_000},
		{name: "DollarSignLeadingDot", in: "$.25", want: 250_000},
		{name: "OneMicrounit", in: "0.000001", want: Microunit},
		{name: "SixDecimals", in: "1.234567", want: 1_234_567},
		{name: "LeadingZeros", in: "007.10", want: 7_100_000},
		{name: "FiftyMillion", in: "50000000", want: 50_000_000 * Dollar},
		{name: "MaxMoney", in: "9223372036854.775807", want: MaxMoney},

		{name: "EmptyRefused", in: "", wantErr: ErrAmountSyntax},
		{name: "NegativeRefused", in: "-1", wantErr: ErrAmountNegative},
		{name: "NegativeFractionRefused", in: "-0.000001", wantErr: ErrAmountNegative},
		{name: "NegativeDollarSignRefused", in: "-$1", wantErr: ErrAmountNegative},
		{name: "NaNRefused", in: "NaN", wantErr: ErrAmountSyntax},
		{name: "InfRefused", in: "Inf", wantErr: ErrAmountSyntax},
		{name: "ExponentRefused", in: "1e3", wantErr: ErrAmountSyntax},
		{name: "HexRefused", in: "0x10", wantErr: ErrAmountSyntax},
		{name: "PlusSignRefused", in: "+1", wantErr: ErrAmountSyntax},
		{name: "SevenDecimalsTooExact", in: "1.2345678", wantErr: ErrAmountTooExact},
		{name: "TrailingZeroSeventhDecimalTooExact", in: "1.2345670", wantErr: ErrAmountTooExact},
		{name: "WholeDollarsOverflow", in: "9223372036855", wantErr: ErrAmountOverflow},
		{name: "OneMicrounitPastMaxOverflows", in: "9223372036854.775808", wantErr: ErrAmountOverflow},
		{name: "PastInt64Overflows", in: "99999999999999999999", wantErr: ErrAmountOverflow},
		{name: "ThousandsSeparatorRefused", in: "1,000", wantErr: ErrAmountSyntax},
		{name: "LeadingSpaceRefused", in: " 1", wantErr: ErrAmountSyntax},
		{name: "TrailingSpaceRefused", in: "1 ", wantErr: ErrAmountSyntax},
		{name: "MinusAfterDollarRefused", in: "$-1", wantErr: ErrAmountSyntax},
		{name: "DoubleMinusRefused", in: "--1", wantErr: ErrAmountSyntax},
		{name: "DoubleDollarRefused", in: "$$1", wantErr: ErrAmountSyntax},
		{name: "TwoDotsRefused", in: "1.2.3", wantErr: ErrAmountSyntax},
		{name: "TrailingDotRefused", in: "5.", wantErr: ErrAmountSyntax},
		{name: "LoneDotRefused", in: ".", wantErr: ErrAmountSyntax},
		{name: "LoneDollarRefused", in: "$", wantErr: ErrAmountSyntax},
		{name: "LoneMinusRefused", in: "-", wantErr: ErrAmountSyntax},
		{name: "LettersRefused", in: "abc", wantErr: ErrAmountSyntax},
		{name: "NonASCIIDigitRefused", in: "١", wantErr: ErrAmountSyntax},
		{name: "CurrencyCodeRefused", in: "12 USD", wantErr: ErrAmountSyntax},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			got, err := ParseMoney(tt.in)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				require.Zero(t, got)
				require.Contains(t, err.Error(), tt.wantErr.Error())
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestParseSignedMoney(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name    string
		in      string
		want    Money
		wantErr error
	}{
		{name: "Positive", in: "12.50", want: 12_500_000},
		{name: "NegativeAccepted", in: "-1", want: -Dollar},
		{name: "NegativeDollarSign", in: "-$12.50", want: -12_500_000},
		{name: "NegativeFraction", in: "-0.0004", want: -400},
		{name: "NegativeLeadingDot", in: "-.5", want: -500_000},
		{name: "MinusMaxMoney", in: "-9223372036854.775807", want: -MaxMoney},
		// math.MinInt64 is outside Money's symmetric range and cannot be parsed.
		{name: "MinInt64Parses", in: "-9223372036854.775808", want: math.MinInt64},
		{name: "BelowMinInt64Overflows", in: "-9223372036854.775809", wantErr: ErrAmountOverflow},
		{name: "MinusAfterDollarRefused", in: "$-1", wantErr: ErrAmountSyntax},
		{name: "DoubleMinusRefused", in: "--1", wantErr: ErrAmountSyntax},
		{name: "NegativeTooExact", in: "-0.0000001", wantErr: ErrAmountTooExact},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			got, err := ParseSignedMoney(tt.in)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				require.Zero(t, got)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestParseMoneyHugeInputShortError(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name    string
		in      string
		wantErr error
	}{
		{name: "Letters", in: strings.Repeat("x", 10_000), wantErr: ErrAmountSyntax},
		{name: "Digits", in: strings.Repeat("9", 10_000), wantErr: ErrAmountOverflow},
		{name: "Decimals", in: "1." + strings.Repeat("1", 10_000), wantErr: ErrAmountTooExact},
		{name: "MultiByte", in: strings.Repeat("€", 10_000), wantErr: ErrAmountSyntax},
		{name: "InvalidUTF8", in: strings.Repeat("\xdf", 10_000), wantErr: ErrAmountSyntax},
		{name: "InvalidUTF8Decimals", in: "0." + strings.Repeat("\xdf", 10_000), wantErr: ErrAmountSyntax},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			_, err := ParseMoney(tt.in)
			require.ErrorIs(t, err, tt.wantErr)
			require.LessOrEqual(t, len(err.Error()), maxErrLen, "error: %.200s", err)

			_, err = ParseSignedMoney(tt.in)
			require.ErrorIs(t, err, tt.wantErr)
			require.LessOrEqual(t, len(err.Error()), maxErrLen, "error: %.200s", err)
		})
	}
}

// TestParseMoneyNegativeHugeInputShortError guards against the negative-amount
// error of ParseMoney quoting its whole input: leading zeros make a 10,000-byte
// string a valid amount of -1 dollar.
func TestParseMoneyNegativeHugeInputShortError(t *testing.T) {
	t.Parallel()

	in := "-" + strings.Repeat("0", 10_000) + "1"
	_, err := ParseMoney(in)
	require.ErrorIs(t, err, ErrAmountNegative)
	require.LessOrEqual(t, len(err.Error()), maxErrLen)
}

func TestMoneyString(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name string
		m    Money
		want string
	}{
		{name: "Zero", m: 0, want: "0"},
		{name: "WholeDollars", m: 50 * Dollar, want: "50"},
		{name: "TrailingZerosDropped", m: 12_500_000, want: "12.5"},
		{name: "FractionOfACent", m: 400, want: "0.0004"},
		{name: "OneMicrounit", m: Microunit, want: "0.000001"},
		{name: "OneCent", m: Cent, want: "0.01"},
		{name: "NegativeWhole", m: -3 * Dollar, want: "-3"},
		{name: "NegativeMicrounit", m: -Microunit, want: "-0.000001"},
		{name: "NegativeFraction", m: -12_340_000, want: "-12.34"},
		{name: "FiftyMillion", m: 50_000_000 * Dollar, want: "50000000"},
		{name: "MaxMoney", m: MaxMoney, want: "9223372036854.775807"},
		{name: "MinusMaxMoney", m: -MaxMoney, want: "-9223372036854.775807"},
		{name: "MinInt64", m: math.MinInt64, want: "-9223372036854.775808"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			require.Equal(t, tt.want, tt.m.String())
			text, err := tt.m.MarshalText()
			require.NoError(t, err)
			require.Equal(t, tt.want, string(text))
		})
	}
}

func TestMoneyJSON(t *testing.T) {
	t.Parallel()

	t.Run("MarshalsToString", func(t *testing.T) {
		t.Parallel()

		b, err := json.Marshal(Money(400))
		require.NoError(t, err)
		require.JSONEq(t, `"0.0004"`, string(b))

		b, err = json.Marshal(struct {
			Limit Money `json:"limit"`
		}{Limit: 50_000_000 * Dollar})
		require.NoError(t, err)
		require.JSONEq(t, `{"limit":"50000000"}`, string(b))
	})

	tests := []struct {
		name    string
		in      string
		want    Money
		wantErr error
	}{
		{name: "UnmarshalsString", in: `"0.0004"`, want: 400},
		{name: "UnmarshalsBareNumberExactly", in: `0.0004`, want: 400},
		{name: "UnmarshalsBareNegativeNumber", in: `-12.5`, want: -12_500_000},
		{name: "UnmarshalsDollarString", in: `"$3"`, want: 3 * Dollar},
		{name: "UnmarshalsSixDecimalsExactly", in: `0.100001`, want: 100_001},
		{name: "RefusesNullString", in: `"null"`, wantErr: ErrAmountSyntax},
		{name: "RefusesEmptyString", in: `""`, wantErr: ErrAmountSyntax},
		// A bare null is refused too, rather than silently left as zero.
		{name: "RefusesNull", in: `null`, wantErr: ErrAmountSyntax},
		{name: "RefusesBool", in: `true`, wantErr: ErrAmountSyntax},
		{name: "RefusesExponent", in: `4e-4`, wantErr: ErrAmountSyntax},
		{name: "RefusesTooExactNumber", in: `0.0000001`, wantErr: ErrAmountTooExact},
		{name: "RefusesOverflow", in: `"9223372036855"`, wantErr: ErrAmountOverflow},
		{name: "RefusesObject", in: `{"amount":"1"}`, wantErr: ErrAmountSyntax},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			var got Money
			err := json.Unmarshal([]byte(tt.in), &got)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				require.Zero(t, got)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}

	t.Run("RoundTripsInStruct", func(t *testing.T) {
		t.Parallel()

		type charge struct {
			Amount Money  `json:"amount"`
			Limit  Money  `json:"limit"`
			Credit Money  `json:"credit"`
			Opt    *Money `json:"opt"`
		}
		in := charge{Amount: 400, Limit: MaxMoney, Credit: -3 * Dollar}
		b, err := json.Marshal(in)
		require.NoError(t, err)
		require.JSONEq(t,
			`{"amount":"0.0004","limit":"9223372036854.775807","credit":"-3","opt":null}`,
			string(b))

		var out charge
		require.NoError(t, json.Unmarshal(b, &out))
		require.Equal(t, in, out)
	})
}

func TestMoneyFiftyMillionBudget(t *testing.T) {
	t.Parallel()

	limit := 50_000_000 * Dollar
	fromDollars, err := FromDollars(50_000_000)
	require.NoError(t, err)
	require.Equal(t, limit, fromDollars)

	parsed, err := ParseMoney("$50000000.00")
	require.NoError(t, err)
	require.Equal(t, limit, parsed)

	used, err := Money(0).Add(400)
	require.NoError(t, err)
	used, err = used.Add(49_999_999 * Dollar)
	require.NoError(t, err)
	require.Equal(t, "49999999.0004", used.String())

	left, err := limit.Sub(used)
	require.NoError(t, err)
	require.Equal(t, "0.9996", left.String())

	b := Budget{Limit: limit, Used: used, Held: 9996 * 100}
	require.Zero(t, b.Remaining())
	require.True(t, b.fits(0))
	require.False(t, b.fits(Microunit))
	require.Equal(t, "50000000", limit.String())
}

// TestMoneyStringRoundTrip checks that for any Money m, ParseSignedMoney of
// m.String() gives m back, on the edges and on many pseudo-random values.
func TestMoneyStringRoundTrip(t *testing.T) {
	t.Parallel()

	values := []Money{
		0, 1, -1, 9, 10, 99, 100, 999_999, Dollar, -Dollar, Dollar + 1, Cent, 400,
		12_500_000, 50_000_000 * Dollar, MaxMoney, MaxMoney - 1, -MaxMoney, -MaxMoney + 1,
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 20_000 {
		v := Money(r.Int64())
		if r.IntN(2) == 0 {
			v = -v
		}
		if r.IntN(4) == 0 {
			v %= 1000 * Dollar // also small amounts, where the decimals matter
		}
		values = append(values, v)
	}

	for _, m := range values {
		if m == math.MinInt64 {
			continue // see TestMoneyMinInt64RoundTrip
		}
		got, err := ParseSignedMoney(m.String())
		require.NoError(t, err, "m = %d", int64(m))
		require.Equal(t, m, got, "m = %d, String() = %q", int64(m), m.String())

		b, err := json.Marshal(m)
		require.NoError(t, err)
		var back Money
		require.NoError(t, json.Unmarshal(b, &back))
		require.Equal(t, m, back)
	}
}

// TestMoneyMinInt64RoundTrip guards against Money(math.MinInt64) formatting
// to a string that does not parse back: String gives
// "-9223372036854.775808", which ParseSignedMoney refuses as out of range, so
// a Money of that value marshals to JSON that cannot be unmarshalled.
func TestMoneyMinInt64RoundTrip(t *testing.T) {
	t.Parallel()

	m := Money(math.MinInt64)
	got, err := ParseSignedMoney(m.String())
	require.NoError(t, err)
	require.Equal(t, m, got)
}

// moneySyntax is the grammar ParseSignedMoney accepts, written independently
// of it: an optional minus, an optional dollar sign, then digits with an
// optional fraction, where either part (not both) may be empty but a dot must
// be followed by digits.
var moneySyntax = regexp.MustCompile(`^(-?)\$?([0-9]*)(?:\.([0-9]+))?$`)

func FuzzParseMoney(f *testing.F) {
	for _, s := range []string{
		"50", "0.0004", "12.50", "$12.50", "0", ".5", "5.", "-1", "-$1", "$-1", "--1",
		"", "NaN", "Inf", "1e3", "1.2345678", "9223372036855", "9223372036854.775807",
		"9223372036854.775808", "-9223372036854.775808", "1,000", " 1", "1 ", "1.2.3",
		"abc", "000000000000000000000000001", "0.000001", "-0", "-.5", "$", ".",
	} {
		f.Add(s)
	}

	maxMoney := big.NewInt(int64(MaxMoney))
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseSignedMoney(s)

		// What the input should give, computed with big integers.
		var wantErr error
		want := new(big.Int)
		match := moneySyntax.FindStringSubmatch(s)
		switch {
		case match == nil || match[2] == "" && match[3] == "":
			wantErr = ErrAmountSyntax
		case len(match[3]) > moneyDecimals:
			wantErr = ErrAmountTooExact
		default:
			digits := match[2] + match[3] + strings.Repeat("0", moneyDecimals-len(match[3]))
			want.SetString(digits, 10)
			// The most negative int64 is the one amount whose magnitude
			// passes MaxMoney: it parses back from its own String.
			bound := maxMoney
			if match[1] == "-" {
				bound = new(big.Int).Add(maxMoney, big.NewInt(1))
			}
			if want.Cmp(bound) > 0 {
				wantErr = ErrAmountOverflow
			}
			if match[1] == "-" {
				want.Neg(want)
			}
		}

		if wantErr != nil {
			require.ErrorIs(t, err, wantErr, "input %q", s)
			require.Zero(t, got)
			require.LessOrEqual(t, len(err.Error()), maxErrLen)
			return
		}
		require.NoError(t, err, "input %q", s)
		require.Equal(t, want.Int64(), int64(got), "input %q", s)

		back, err := ParseSignedMoney(got.String())
		require.NoError(t, err, "input %q, String() = %q", s, got.String())
		require.Equal(t, got, back, "input %q, String() = %q", s, got.String())

		pos, err := ParseMoney(s)
		if got < 0 {
			require.ErrorIs(t, err, ErrAmountNegative, "input %q", s)
			require.Zero(t, pos)
		} else {
			require.NoError(t, err, "input %q", s)
			require.Equal(t, got, pos)
		}
	})
}
