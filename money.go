package agentkey

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Money is an amount of one currency counted in micro-units: one dollar is
// 1,000,000 micro-units and one cent is 10,000. Accounting never uses floats; a
// charge of a tenth of a cent is exactly 1,000 micro-units.
//
// Money marshals to JSON and text as a decimal string such as "0.0004", so that
// no client has to parse a float.
type Money int64

const (
	// Microunit is the smallest amount Money can hold.
	Microunit Money = 1
	// Cent is one hundredth of a dollar.
	Cent Money = 10_000
	// Dollar is one unit of the currency.
	Dollar Money = 1_000_000

	// MaxMoney is the largest amount Money can hold, about 9.2 trillion dollars.
	MaxMoney Money = math.MaxInt64

	// moneyDecimals is the number of decimals Money keeps.
	moneyDecimals = 6
)

// Errors returned for amounts that cannot be used.
var (
	ErrAmountSyntax   = errors.New("malformed amount")
	ErrAmountNegative = errors.New("amount is negative")
	ErrAmountOverflow = errors.New("amount is out of range")
	ErrAmountTooExact = errors.New("amount has more than 6 decimals")
)

// FromDollars returns n whole dollars, or ErrAmountOverflow.
func FromDollars(n int64) (Money, error) {
	return mulMoney(n, Dollar)
}

// FromCents returns n cents, or ErrAmountOverflow.
func FromCents(n int64) (Money, error) {
	return mulMoney(n, Cent)
}

func mulMoney(n int64, unit Money) (Money, error) {
	if n > int64(MaxMoney/unit) || n < -int64(MaxMoney/unit) {
		return 0, ErrAmountOverflow
	}
	return Money(n) * unit, nil
}

// Add returns m+n, or ErrAmountOverflow when the sum does not fit.
func (m Money) Add(n Money) (Money, error) {
	if (n > 0 && m > MaxMoney-n) || (n < 0 && m < -MaxMoney-n) {
		return 0, ErrAmountOverflow
	}
	return m + n, nil
}

// Sub returns m-n, or ErrAmountOverflow when the difference does not fit.
func (m Money) Sub(n Money) (Money, error) {
	if n == math.MinInt64 {
		return 0, ErrAmountOverflow
	}
	return m.Add(-n)
}

// ParseMoney parses a non-negative decimal amount such as "50", "12.50",
// "0.0004" or "$3". At most six decimals are accepted, because that is what
// Money can represent exactly; rounding is never silent.
func ParseMoney(s string) (Money, error) {
	m, err := ParseSignedMoney(s)
	if err != nil {
		return 0, err
	}
	if m < 0 {
		return 0, fmt.Errorf("parse amount %q: %w", truncate(s, 40), ErrAmountNegative)
	}
	return m, nil
}

// ParseSignedMoney is ParseMoney that also accepts a leading minus sign, for
// adjustments that take money away.
func ParseSignedMoney(s string) (Money, error) {
	m, err := parseMoney(s)
	if err != nil {
		return 0, fmt.Errorf("parse amount %q: %w", truncate(s, 40), err)
	}
	return m, nil
}

func parseMoney(s string) (Money, error) {
	neg := false
	rest := s
	if strings.HasPrefix(rest, "-") {
		neg, rest = true, rest[1:]
	}
	rest = strings.TrimPrefix(rest, "$")
	whole, frac, hasDot := strings.Cut(rest, ".")
	if whole == "" && frac == "" || hasDot && frac == "" || !allDigits(whole) || !allDigits(frac) {
		return 0, ErrAmountSyntax
	}
	if len(frac) > moneyDecimals {
		return 0, ErrAmountTooExact
	}

	// Accumulate the magnitude unsigned, so that the most negative amount
	// parses back from its own String.
	bound := uint64(MaxMoney)
	if neg {
		bound++
	}
	var mag uint64
	for _, c := range []byte(whole + frac + strings.Repeat("0", moneyDecimals-len(frac))) {
		if mag > (bound-uint64(c-'0'))/10 {
			return 0, ErrAmountOverflow
		}
		mag = mag*10 + uint64(c-'0')
	}
	if neg {
		return Money(-int64(mag-1) - 1), nil
	}
	return Money(mag), nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// String formats m as a decimal number of dollars with no trailing zeros:
// "50", "12.5", "0.0004", "-3".
func (m Money) String() string {
	var b strings.Builder
	u := uint64(m)
	if m < 0 {
		b.WriteByte('-')
		u = uint64(-(m + 1)) + 1 // safe for math.MinInt64
	}
	b.WriteString(strconv.FormatUint(u/uint64(Dollar), 10))
	if frac := u % uint64(Dollar); frac != 0 {
		digits := fmt.Sprintf("%06d", frac)
		b.WriteByte('.')
		b.WriteString(strings.TrimRight(digits, "0"))
	}
	return b.String()
}

// MarshalText encodes m as its decimal string.
func (m Money) MarshalText() ([]byte, error) {
	return []byte(m.String()), nil
}

// UnmarshalText parses a signed decimal string; callers that must refuse
// negative amounts check the sign themselves.
func (m *Money) UnmarshalText(b []byte) error {
	v, err := ParseSignedMoney(string(b))
	if err != nil {
		return err
	}
	*m = v
	return nil
}

// UnmarshalJSON accepts a JSON string such as "0.0004" and, for convenience, a
// bare JSON number such as 0.0004, which is parsed as decimal text and never as
// a float.
func (m *Money) UnmarshalJSON(b []byte) error {
	s := string(b)
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		s = s[1 : len(s)-1]
	}
	return m.UnmarshalText([]byte(s))
}

// truncate shortens s for an error message so that a huge input cannot flood logs.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
