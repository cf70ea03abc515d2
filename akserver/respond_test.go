package akserver

import (
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentkey-go/agentkey"
)

// TestErrorStatus checks the error table, with errors wrapped as the
// service and the stores wrap them.
func TestErrorStatus(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err    error
		which  api
		status int
		code   string
	}{
		{fmt.Errorf("charge: %w", agentkey.ErrIdempotencyKeyReused), decisionAPI,
			http.StatusConflict, "idempotency_key_reused"},
		{fmt.Errorf("reserve: %w", agentkey.ErrIdempotencyKeyReused), adminAPI,
			http.StatusConflict, "idempotency_key_reused"},
		{fmt.Errorf("settle: %w", agentkey.ErrHoldClosed), decisionAPI,
			http.StatusConflict, "hold_closed"},
		{fmt.Errorf("key k: %w", agentkey.ErrNotFound), adminAPI, http.StatusNotFound,
			"not_found"},
		{fmt.Errorf("create account a: %w", agentkey.ErrConflict), adminAPI,
			http.StatusConflict, "conflict"},
		{fmt.Errorf("move: %w", agentkey.ErrCycle), adminAPI, http.StatusConflict, "tree_cycle"},
		{invalid("limit %q", "x"), adminAPI, http.StatusBadRequest, "invalid_request"},
		{fmt.Errorf("x: %w", agentkey.ErrInvalidArgument), adminAPI, http.StatusBadRequest,
			"invalid_request"},
		{&http.MaxBytesError{Limit: 10}, decisionAPI, http.StatusRequestEntityTooLarge,
			"request_too_large"},
		{errors.New("connection refused"), decisionAPI, http.StatusInternalServerError,
			"auth_unavailable"},
		{errors.New("connection refused"), adminAPI, http.StatusInternalServerError,
			"internal_error"},
	} {
		status, code, msg := errorStatus(tc.err, tc.which)
		require.Equal(t, tc.status, status, "%v", tc.err)
		require.Equal(t, tc.code, code, "%v", tc.err)
		if status == http.StatusInternalServerError {
			require.Empty(t, msg, "a fault's detail is not shown")
		}
	}

	_, _, msg := errorStatus(fmt.Errorf("charge: %w", agentkey.ErrIdempotencyKeyReused),
		decisionAPI)
	require.Contains(t, msg, "idempotency key already used with a different amount")
}

// TestParseDuration checks that the APIs and the CLI take both agentkey's
// units and Go's.
func TestParseDuration(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]time.Duration{
		"90s": 90 * time.Second, "10m": 10 * time.Minute, "1h30m": 90 * time.Minute,
		"7d": 7 * 24 * time.Hour, "2w": 14 * 24 * time.Hour, "1mo": 30 * 24 * time.Hour,
		"1500ms": 1500 * time.Millisecond,
	} {
		got, err := ParseDuration(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, in := range []string{"", "0", "0s", "-5m", "soon", "7 days", "1y", "5"} {
		_, err := ParseDuration(in)
		require.ErrorIs(t, err, agentkey.ErrDuration, in)
	}
}
