package clerkemu_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/clerk/clerk-sdk-go/v2"
	"github.com/clerk/clerk-sdk-go/v2/apikey"
	"github.com/clerk/clerk-sdk-go/v2/m2m_token"
	"github.com/stretchr/testify/require"

	"github.com/agentkey-go/agentkey/internal/clerkemu"
)

func TestInjectedFaults(t *testing.T) {
	t.Parallel()

	t.Run("FailWithAnswersStatus", func(t *testing.T) {
		t.Parallel()
		e := setup(t)
		e.emu.AddAPIKey("ak_secret", clerkemu.APIKey{Subject: "user_2abc"})
		e.emu.AddM2MToken("mt_token", clerkemu.M2MToken{Subject: "mch_2caller"})

		for _, status := range []int{500, 502, 503} {
			e.emu.FailWith(status)

			_, err := e.apiKeys.Verify(context.Background(), &apikey.VerifyParams{Secret: "ak_secret"})
			var apiErr *clerk.APIErrorResponse
			require.ErrorAs(t, err, &apiErr)
			require.Equal(t, status, apiErr.HTTPStatusCode)
			require.NotEmpty(t, apiErr.Errors[0].Code)

			_, err = e.m2m.Verify(context.Background(), &m2m_token.VerifyParams{Token: "mt_token"})
			require.ErrorAs(t, err, &apiErr)
			require.Equal(t, status, apiErr.HTTPStatusCode)
		}
		_, err := e.apiKeys.Verify(context.Background(), &apikey.VerifyParams{Secret: "nope"})
		requireAPIError(t, err, http.StatusServiceUnavailable, "service_unavailable")

		e.emu.FailWith(0)
		_, err = e.apiKeys.Verify(context.Background(), &apikey.VerifyParams{Secret: "ak_secret"})
		require.NoError(t, err)
	})

	t.Run("FailWithBodyAnswersItAsItIs", func(t *testing.T) {
		t.Parallel()
		e := setup(t)
		e.emu.AddAPIKey("ak_secret", clerkemu.APIKey{Subject: "user_2abc"})
		page := "<html><body><h1>502 Bad Gateway</h1></body></html>\n"

		e.emu.FailWithBody(http.StatusBadGateway, "text/html", page)
		_, err := e.apiKeys.Verify(context.Background(), &apikey.VerifyParams{Secret: "ak_secret"})
		var apiErr *clerk.APIErrorResponse
		require.False(t, errors.As(err, &apiErr), "not Clerk's error body: %v", err)
		require.EqualError(t, err, page, "the SDK returns the raw body")

		e.emu.FailWith(http.StatusServiceUnavailable) // replaces the body
		_, err = e.apiKeys.Verify(context.Background(), &apikey.VerifyParams{Secret: "ak_secret"})
		requireAPIError(t, err, http.StatusServiceUnavailable, "service_unavailable")

		e.emu.FailWithBody(http.StatusBadGateway, "text/html", page)
		e.emu.FailWithBody(0, "", "")
		_, err = e.apiKeys.Verify(context.Background(), &apikey.VerifyParams{Secret: "ak_secret"})
		require.NoError(t, err)
	})

	t.Run("FailWith500IsInternalClerkError", func(t *testing.T) {
		t.Parallel()
		e := setup(t)
		e.emu.FailWith(http.StatusInternalServerError)

		_, err := e.apiKeys.Verify(context.Background(), &apikey.VerifyParams{Secret: "ak_secret"})
		requireAPIError(t, err, http.StatusInternalServerError, "internal_clerk_error")
	})

	t.Run("RateLimitAnswers429WithRetryAfter", func(t *testing.T) {
		t.Parallel()
		e := setup(t)
		e.emu.AddAPIKey("ak_secret", clerkemu.APIKey{Subject: "user_2abc"})

		e.emu.RateLimit(2 * time.Second)
		_, err := e.apiKeys.Verify(context.Background(), &apikey.VerifyParams{Secret: "ak_secret"})
		apiErr := requireAPIError(t, err, http.StatusTooManyRequests, "too_many_requests")
		require.Equal(t, "2", apiErr.Response.Header.Get("Retry-After"))

		// A fraction of a second still asks the client to wait a whole one.
		e.emu.RateLimit(300 * time.Millisecond)
		_, err = e.m2m.Verify(context.Background(), &m2m_token.VerifyParams{Token: "mt_token"})
		apiErr = requireAPIError(t, err, http.StatusTooManyRequests, "too_many_requests")
		require.Equal(t, "1", apiErr.Response.Header.Get("Retry-After"))

		e.emu.RateLimit(0)
		_, err = e.apiKeys.Verify(context.Background(), &apikey.VerifyParams{Secret: "ak_secret"})
		require.NoError(t, err)
	})

	// No elapsed time is measured, the machines being shared: a latency of an
	// hour makes a client with a short deadline give up, and a request
	// answered at all after SetLatency(0) proves the delay is gone.
	t.Run("LatencyDelaysResponses", func(t *testing.T) {
		t.Parallel()
		e := setup(t)
		e.emu.AddAPIKey("ak_secret", clerkemu.APIKey{Subject: "user_2abc"})
		e.emu.SetLatency(time.Hour)

		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		_, err := e.apiKeys.Verify(ctx, &apikey.VerifyParams{Secret: "ak_secret"})
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.Equal(t, 1, e.emu.Calls("/v1/api_keys/verify"), "the request arrived")

		e.emu.SetLatency(0)
		_, err = e.apiKeys.Verify(context.Background(), &apikey.VerifyParams{Secret: "ak_secret"})
		require.NoError(t, err)
	})

	t.Run("HangUntilClientGivesUp", func(t *testing.T) {
		t.Parallel()
		e := setup(t)
		e.emu.AddM2MToken("mt_token", clerkemu.M2MToken{Subject: "mch_2caller"})
		e.emu.Hang(true)

		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		_, err := e.m2m.Verify(ctx, &m2m_token.VerifyParams{Token: "mt_token"})
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.Equal(t, 1, e.emu.Calls("/v1/m2m_tokens/verify"))
	})

	t.Run("HangFalseReleasesHeldRequests", func(t *testing.T) {
		t.Parallel()
		e := setup(t)
		e.emu.AddAPIKey("ak_secret", clerkemu.APIKey{Subject: "user_2abc"})
		e.emu.Hang(true)

		const n = 3
		errs := make(chan error, n)
		for range n {
			go func() {
				_, err := e.apiKeys.Verify(context.Background(), &apikey.VerifyParams{Secret: "ak_secret"})
				errs <- err
			}()
		}
		require.Eventually(t, func() bool { return e.emu.Calls("/v1/api_keys/verify") == n },
			10*time.Second, 5*time.Millisecond) // a hang guard only

		select {
		case err := <-errs:
			t.Fatalf("request answered while hanging: %v", err)
		case <-time.After(50 * time.Millisecond):
		}

		e.emu.Hang(false)
		for range n {
			require.NoError(t, <-errs)
		}
	})

	t.Run("CloseReleasesHeldRequests", func(t *testing.T) {
		t.Parallel()
		e := setup(t)
		e.emu.AddAPIKey("ak_secret", clerkemu.APIKey{Subject: "user_2abc"})
		e.emu.Hang(true)

		errs := make(chan error, 1)
		go func() {
			_, err := e.apiKeys.Verify(context.Background(), &apikey.VerifyParams{Secret: "ak_secret"})
			errs <- err
		}()
		require.Eventually(t, func() bool { return e.emu.Calls("/v1/api_keys/verify") == 1 },
			10*time.Second, 5*time.Millisecond) // a hang guard only

		e.emu.Close() // returns, although the request hangs
		require.Error(t, <-errs)
	})

	t.Run("CloseReleasesDelayedRequests", func(t *testing.T) {
		t.Parallel()
		e := setup(t)
		e.emu.SetLatency(time.Hour)

		errs := make(chan error, 1)
		go func() {
			_, err := e.apiKeys.Verify(context.Background(), &apikey.VerifyParams{Secret: "ak_secret"})
			errs <- err
		}()
		require.Eventually(t, func() bool { return e.emu.Calls("/v1/api_keys/verify") == 1 },
			10*time.Second, 5*time.Millisecond) // a hang guard only

		e.emu.Close() // returns before the hour is up
		require.Error(t, <-errs)
	})
}
