package agentkey

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseBearer(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("a", maxBearerLen)
	tests := []struct {
		name, header, want string
		ok                 bool
	}{
		{name: "Plain", header: "Bearer ak_123", want: "ak_123", ok: true},
		{name: "SchemeIsCaseInsensitive", header: "bEaReR ak_123", want: "ak_123", ok: true},
		{name: "SeveralSpaces", header: "Bearer    ak_123", want: "ak_123", ok: true},
		{name: "LongestAllowed", header: "Bearer " + long, want: long, ok: true},
		{name: "Empty", header: ""},
		{name: "SchemeOnly", header: "Bearer"},
		{name: "NoCredential", header: "Bearer "},
		{name: "OtherScheme", header: "Basic dXNlcjpwYXNz"},
		{name: "NoSpace", header: "Bearerak_123"},
		{name: "TooLong", header: "Bearer " + long + "a"},
		{name: "SpaceInside", header: "Bearer ak 123"},
		{name: "TrailingSpace", header: "Bearer ak_123 "},
		{name: "Tab", header: "Bearer\tak_123"},
		{name: "ControlCharacter", header: "Bearer ak_\x00123"},
		{name: "NonASCII", header: "Bearer ak_é"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, ok := ParseBearer(tt.header)
			require.Equal(t, tt.ok, ok)
			require.Equal(t, tt.want, got)
		})
	}
}

// FuzzParseBearer checks that no header makes ParseBearer panic, and that
// whatever it accepts is a credential that could be sent back in a header:
// non-empty, bounded, printable ASCII without spaces, and found in the header.
func FuzzParseBearer(f *testing.F) {
	for _, seed := range []string{"Bearer ak_0123", "bearer x", "Bearer  ", "Basic abc", "", "Bearer \x7f",
		"Bearer " + strings.Repeat("z", maxBearerLen+1), "Bearer\u00a0x"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, header string) {
		cred, ok := ParseBearer(header)
		if !ok {
			require.Empty(t, cred)
			return
		}
		require.NotEmpty(t, cred)
		require.LessOrEqual(t, len(cred), maxBearerLen)
		require.True(t, strings.HasSuffix(header, cred))
		require.True(t, strings.EqualFold(header[:len("Bearer")], "Bearer"))
		for i := 0; i < len(cred); i++ {
			require.True(t, cred[i] > ' ' && cred[i] < 0x7f, "byte %q in %q", cred[i], cred)
		}
	})
}

func TestWellFormed(t *testing.T) {
	t.Parallel()
	secret, display := newSecret("ak_")
	require.True(t, wellFormed(secret, "ak_"))
	require.True(t, strings.HasPrefix(secret, display))
	require.Len(t, secret, 3+48)
	for _, bad := range []string{"", "ak_", secret[:len(secret)-1], secret + "0", "sk_" + secret[3:],
		"ak_" + strings.ToUpper(secret[3:]), "ak_" + strings.Repeat("g", 48)} {
		require.False(t, wellFormed(bad, "ak_"), bad)
	}
}

func TestNewIDsSortByTime(t *testing.T) {
	t.Parallel()
	prev := newID("bud")
	for range 100 {
		next := newID("bud")
		// The 12 hex digits after the kind are the time in microseconds.
		require.LessOrEqual(t, prev[4:16], next[4:16], "ids must not go back in time")
		prev = next
	}
}
