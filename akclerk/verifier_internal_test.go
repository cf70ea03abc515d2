package akclerk

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/clerk/clerk-sdk-go/v2"
	"github.com/stretchr/testify/require"
)

// TestOneLine checks the cutting of error text for logs.
func TestOneLine(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, in string
		n        int
		want     string
	}{
		{"ShortUnchanged", "bad gateway", 20, "bad gateway"},
		{"LinesJoined", "<html>\r\n<body>\n\tdown</body>", 50, "<html> <body> down</body>"},
		{"EdgesTrimmed", "\n  down \n", 50, "down"},
		{"ControlCharactersMadeSpaces", "a\x00\x1b[31mb", 50, "a [31mb"},
		{"Cut", "abcdef", 4, "abcd..."},
		{"CutBeforeASpace", "abcd efgh", 5, "abcd..."},
		{"CutOnACharacterBoundary", "ab€€", 6, "ab€..."},
		{"Empty", "", 10, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, oneLine(tc.in, tc.n))
		})
	}
}

// TestSDKError checks which SDK errors keep their chain.
func TestSDKError(t *testing.T) {
	t.Parallel()
	v := &Verifier{cfg: VerifierConfig{SecretKey: "sk_test_instance"}}

	apiErr := &clerk.APIErrorResponse{HTTPStatusCode: 503}
	require.Same(t, apiErr, v.sdkError(apiErr, "secret"), "Clerk's answer as it is")

	short := fmt.Errorf("post: %w", context.DeadlineExceeded)
	require.Same(t, short, v.sdkError(short, "secret"), "a short line as it is")

	long := fmt.Errorf("post %s: %w", strings.Repeat("x", 300), context.DeadlineExceeded)
	err := v.sdkError(long, "secret")
	require.ErrorIs(t, err, context.DeadlineExceeded, "the chain is kept")
	require.LessOrEqual(t, len(err.Error()), maxErrorText+3)

	echoed := fmt.Errorf("post: %s: %w", "secret", context.DeadlineExceeded)
	err = v.sdkError(echoed, "secret")
	require.Equal(t, "post: [redacted]: context deadline exceeded", err.Error())
	require.Nil(t, errors.Unwrap(err), "a chain that holds a secret is not kept")

	raw := errors.New("<html>\n<p>secret sk_test_instance</p>\n</html>")
	err = v.sdkError(raw, "secret")
	require.Equal(t, "unexpected answer: <html> <p>[redacted] [redacted]</p> </html>", err.Error())
	require.Nil(t, errors.Unwrap(err), "the raw body is not kept")
}
