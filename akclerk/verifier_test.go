package akclerk_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentkey-go/agentkey"
	"github.com/agentkey-go/agentkey/akclerk"
	"github.com/agentkey-go/agentkey/internal/clerkemu"
)

// TestVerifierCache checks the verification cache of both credential types.
func TestVerifierCache(t *testing.T) {
	t.Parallel()
	for _, ct := range credentialTypes {
		t.Run(ct.name, func(t *testing.T) {
			t.Parallel()
			testVerifierCache(t, ct)
		})
	}
}

func testVerifierCache(t *testing.T, ct credentialType) {
	// verify verifies credential and checks the answer and the number of
	// calls Clerk has received so far.
	verify := func(t *testing.T, e *env, credential string, want agentkey.Reason, calls int) {
		t.Helper()
		got, err := ct.verify(t.Context(), e.verifier, credential)
		require.NoError(t, err)
		require.Equal(t, want, got)
		require.Equal(t, calls, e.emu.Calls(ct.path), "calls to Clerk")
	}
	// added returns a new credential known to e's emulator.
	added := func(e *env) string {
		secret := newSecret()
		ct.add(e.emu, secret, ct.subject(), "")
		return secret
	}

	t.Run("OneCallForConcurrentVerifications", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, nil, akclerk.VerifierConfig{})
		secret := added(e)
		// Latency keeps the call in flight while the verifications arrive.
		e.emu.SetLatency(50 * time.Millisecond)

		var (
			wg  sync.WaitGroup
			bad atomic.Int32
		)
		for range 1000 {
			wg.Go(func() {
				if reason, err := ct.verify(t.Context(), e.verifier, secret); err != nil || reason != "" {
					bad.Add(1)
				}
			})
		}
		wg.Wait()
		require.Zero(t, bad.Load())
		require.Equal(t, 1, e.emu.Calls(ct.path))
	})

	t.Run("ValidCachedForTTL", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, nil, akclerk.VerifierConfig{CacheTTL: time.Minute})
		secret := added(e)
		verify(t, e, secret, "", 1)

		ct.revoke(e.emu, secret)
		e.clock.Advance(time.Minute - time.Millisecond)
		verify(t, e, secret, "", 1)
		e.clock.Advance(time.Millisecond)
		verify(t, e, secret, agentkey.ReasonRevoked, 2)
	})

	t.Run("NegativeCachedForNegativeTTL", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, nil, akclerk.VerifierConfig{})
		secret := newSecret()
		verify(t, e, secret, agentkey.ReasonInvalidKey, 1)

		ct.add(e.emu, secret, ct.subject(), "") // created in Clerk meanwhile
		e.clock.Advance(akclerk.DefaultNegativeCacheTTL - time.Millisecond)
		verify(t, e, secret, agentkey.ReasonInvalidKey, 1)
		e.clock.Advance(time.Millisecond)
		verify(t, e, secret, "", 2)
	})

	t.Run("NegativeTTLAtMostTTL", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, nil, akclerk.VerifierConfig{CacheTTL: time.Second})
		secret := newSecret()
		verify(t, e, secret, agentkey.ReasonInvalidKey, 1)

		// The default negative TTL, 5s, would outlast a valid answer here.
		ct.add(e.emu, secret, ct.subject(), "")
		e.clock.Advance(time.Second)
		verify(t, e, secret, "", 2)
	})

	t.Run("NoNegativeCache", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, nil, akclerk.VerifierConfig{NegativeCacheTTL: akclerk.NoNegativeCache})
		unknown, revoked, valid := newSecret(), added(e), added(e)
		ct.revoke(e.emu, revoked)
		verify(t, e, unknown, agentkey.ReasonInvalidKey, 1)
		verify(t, e, unknown, agentkey.ReasonInvalidKey, 2)
		verify(t, e, revoked, agentkey.ReasonRevoked, 3)
		verify(t, e, revoked, agentkey.ReasonRevoked, 4)

		ct.add(e.emu, unknown, ct.subject(), "") // works at once once created
		verify(t, e, unknown, "", 5)
		verify(t, e, valid, "", 6)
		verify(t, e, valid, "", 6) // valid answers are still cached
		verify(t, e, unknown, "", 6)
	})

	t.Run("RevokedCachedAsNegative", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, nil, akclerk.VerifierConfig{})
		secret := added(e)
		ct.revoke(e.emu, secret)
		verify(t, e, secret, agentkey.ReasonRevoked, 1)
		verify(t, e, secret, agentkey.ReasonRevoked, 1)

		ct.add(e.emu, secret, ct.subject(), "") // the emulator can un-revoke
		e.clock.Advance(akclerk.DefaultNegativeCacheTTL)
		verify(t, e, secret, "", 2)
	})

	t.Run("ExpiredCachedAsNegative", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, nil, akclerk.VerifierConfig{})
		secret := added(e)
		ct.expire(e.emu, secret)
		verify(t, e, secret, agentkey.ReasonExpired, 1)
		verify(t, e, secret, agentkey.ReasonExpired, 1)
	})

	t.Run("ExpirationShortensTTL", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, nil, akclerk.VerifierConfig{CacheTTL: time.Hour})
		secret := newSecret()
		exp := e.clock.Now().Add(10 * time.Second)
		if ct.name == apiKeys.name {
			e.emu.AddAPIKey(secret, clerkemu.APIKey{Subject: ct.subject(), Expiration: &exp})
		} else {
			e.emu.AddM2MToken(secret, clerkemu.M2MToken{Subject: ct.subject(), Expiration: &exp})
		}
		verify(t, e, secret, "", 1)

		e.clock.Advance(10*time.Second - time.Millisecond)
		verify(t, e, secret, "", 1)
		e.clock.Advance(time.Millisecond)
		// The emulator's clock has not reached the expiration; ours has.
		verify(t, e, secret, agentkey.ReasonExpired, 2)
	})

	t.Run("PurgeTakesEffectAtOnce", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, nil, akclerk.VerifierConfig{})
		secret, other := added(e), added(e)
		verify(t, e, secret, "", 1)
		verify(t, e, other, "", 2)

		ct.revoke(e.emu, secret)
		e.verifier.Purge(secret)
		verify(t, e, secret, agentkey.ReasonRevoked, 3)
		verify(t, e, other, "", 3)
	})

	t.Run("PurgeSubject", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, nil, akclerk.VerifierConfig{})
		subject, other := ct.subject(), ct.subject()
		a, b, c := newSecret(), newSecret(), newSecret()
		ct.add(e.emu, a, subject, "")
		ct.add(e.emu, b, subject, "")
		ct.add(e.emu, c, other, "")
		verify(t, e, a, "", 1)
		verify(t, e, b, "", 2)
		verify(t, e, c, "", 3)

		ct.revoke(e.emu, a)
		ct.revoke(e.emu, b)
		e.verifier.PurgeSubject(subject)
		verify(t, e, a, agentkey.ReasonRevoked, 4)
		verify(t, e, b, agentkey.ReasonRevoked, 5)
		verify(t, e, c, "", 5)
	})

	// Regression test: a verification in flight when Purge is called must not
	// put its answer, fetched before the purge, back into the cache.
	t.Run("PurgeDuringVerificationNotCached", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, nil, akclerk.VerifierConfig{})
		secret := added(e)
		e.emu.SetLatency(200 * time.Millisecond)

		done := make(chan error, 1)
		go func() {
			_, err := ct.verify(context.Background(), e.verifier, secret)
			done <- err
		}()
		require.Eventually(t, func() bool { return e.emu.Calls(ct.path) == 1 },
			10*time.Second, time.Millisecond) // a hang guard only
		e.verifier.Purge(secret)
		require.NoError(t, <-done)

		e.emu.SetLatency(0)
		verify(t, e, secret, "", 2)
	})

	// Regression test: a verification that starts after Purge must not wait
	// for the answer of a call made before it, which may be stale.
	t.Run("PurgeDuringVerificationNotJoined", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, nil, akclerk.VerifierConfig{})
		secret := added(e)
		e.emu.SetLatency(200 * time.Millisecond)

		done := make(chan error, 1)
		go func() {
			_, err := ct.verify(context.Background(), e.verifier, secret)
			done <- err
		}()
		require.Eventually(t, func() bool { return e.emu.Calls(ct.path) == 1 },
			10*time.Second, time.Millisecond) // a hang guard only
		e.verifier.PurgeSubject("user_nobody") // any purge starts a new generation
		verify(t, e, secret, "", 2)
		require.NoError(t, <-done)
	})

	t.Run("FaultsNotCached", func(t *testing.T) {
		t.Parallel()
		faults := []struct {
			name          string
			inject, clear func(e *env)
		}{
			{"Clerk500", failing(500), failing(0)},
			{"Clerk502", failing(502), failing(0)},
			{"Clerk503", failing(503), failing(0)},
			{"Clerk429", rateLimiting(time.Second), rateLimiting(0)},
			{"Timeout", func(e *env) { e.emu.Hang(true) }, func(e *env) { e.emu.Hang(false) }},
		}
		for _, f := range faults {
			t.Run(f.name, func(t *testing.T) {
				t.Parallel()
				e := newEnv(t, nil, akclerk.VerifierConfig{Timeout: 100 * time.Millisecond})
				secret := added(e)

				f.inject(e)
				_, err := ct.verify(t.Context(), e.verifier, secret)
				require.Error(t, err)
				require.NotContains(t, err.Error(), secret, "the secret is never in an error")
				f.clear(e)

				verify(t, e, secret, "", 2)
			})
		}
	})

	t.Run("WrongInstanceKeyIsAFault", func(t *testing.T) {
		t.Parallel()
		emu := clerkemu.New("sk_test_right")
		t.Cleanup(emu.Close)
		v, err := akclerk.NewVerifier(akclerk.VerifierConfig{
			APIURL: emu.URL(), SecretKey: "sk_test_wrong",
		})
		require.NoError(t, err)
		t.Cleanup(v.Close)

		_, err = ct.verify(t.Context(), v, newSecret())
		require.Error(t, err, "Clerk's 401 is our misconfiguration, not the caller's bad key")
	})

	t.Run("LRUEviction", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, nil, akclerk.VerifierConfig{CacheSize: 2})
		a, b, c := added(e), added(e), added(e)
		verify(t, e, a, "", 1)
		verify(t, e, b, "", 2)
		verify(t, e, a, "", 2) // a is now the most recently used
		verify(t, e, c, "", 3) // evicts b
		verify(t, e, a, "", 3)
		verify(t, e, c, "", 3)
		verify(t, e, b, "", 4)
	})

	t.Run("RejectionsDoNotEvictValid", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, nil, akclerk.VerifierConfig{CacheSize: 8})
		valid := make([]string, 8)
		for i := range valid {
			valid[i] = added(e)
			verify(t, e, valid[i], "", i+1)
		}

		// A flood of made-up credentials: each costs a call, and only a
		// quarter of CacheSize of them are remembered.
		junk := make([]string, 100)
		for i := range junk {
			junk[i] = newSecret()
			verify(t, e, junk[i], agentkey.ReasonInvalidKey, 8+i+1)
		}
		for _, secret := range valid {
			verify(t, e, secret, "", 108) // all still cached
		}
		verify(t, e, junk[99], agentkey.ReasonInvalidKey, 108)
		verify(t, e, junk[0], agentkey.ReasonInvalidKey, 109)
	})

	t.Run("DisableCache", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, nil, akclerk.VerifierConfig{DisableCache: true})
		secret := added(e)
		verify(t, e, secret, "", 1)
		verify(t, e, secret, "", 2)
		verify(t, e, newSecret(), agentkey.ReasonInvalidKey, 3)
	})

	t.Run("CallerLeavingDoesNotFailOthers", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, nil, akclerk.VerifierConfig{})
		secret := added(e)
		e.emu.SetLatency(200 * time.Millisecond)

		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
		defer cancel()
		var wg sync.WaitGroup
		wg.Go(func() {
			_, err := ct.verify(ctx, e.verifier, secret)
			require.ErrorIs(t, err, context.DeadlineExceeded)
		})
		require.Eventually(t, func() bool { return e.emu.Calls(ct.path) == 1 },
			10*time.Second, time.Millisecond) // a hang guard only
		verify(t, e, secret, "", 1) // joins the call the first caller left
		wg.Wait()
	})
}

// failing returns a function making e's emulator fail with status, or stop
// failing when status is zero.
func failing(status int) func(e *env) {
	return func(e *env) { e.emu.FailWith(status) }
}

// rateLimiting returns a function making e's emulator answer 429, or stop
// when retryAfter is zero.
func rateLimiting(retryAfter time.Duration) func(e *env) {
	return func(e *env) { e.emu.RateLimit(retryAfter) }
}

// TestVerifierConfig checks the validation of a VerifierConfig.
func TestVerifierConfig(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  akclerk.VerifierConfig
		want string
	}{
		{"NoSecretKey", akclerk.VerifierConfig{}, "SecretKey"},
		{"RelativeURL", akclerk.VerifierConfig{SecretKey: "sk", APIURL: "/v1"}, "APIURL"},
		{"OtherScheme", akclerk.VerifierConfig{SecretKey: "sk", APIURL: "ftp://x/v1"}, "APIURL"},
		{"NegativeTimeout", akclerk.VerifierConfig{SecretKey: "sk", Timeout: -1}, "Timeout"},
		{"NegativeTTL", akclerk.VerifierConfig{SecretKey: "sk", CacheTTL: -1}, "CacheTTL"},
		{"NegativeSize", akclerk.VerifierConfig{SecretKey: "sk", CacheSize: -1}, "CacheSize"},
		{"NegativeTTLAboveTTL", akclerk.VerifierConfig{SecretKey: "sk", CacheTTL: time.Second,
			NegativeCacheTTL: 2 * time.Second}, "must not exceed CacheTTL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := akclerk.NewVerifier(tc.cfg)
			require.ErrorContains(t, err, tc.want)
		})
	}

	v, err := akclerk.NewVerifier(akclerk.VerifierConfig{SecretKey: "sk_test_x"})
	require.NoError(t, err, "the zero value with a secret key is usable")
	v.Close()
}

// TestConfigFromEnv checks the environment variables the examples and the
// binary share.
func TestConfigFromEnv(t *testing.T) {
	t.Parallel()
	env := map[string]string{
		"CLERK_SECRET_KEY": "sk_test_env",
		"CLERK_API_URL":    "http://localhost:1/v1",
	}
	cfg := akclerk.ConfigFromEnv(func(k string) string { return env[k] })
	require.Equal(t, "sk_test_env", cfg.SecretKey)
	require.Equal(t, "http://localhost:1/v1", cfg.APIURL)

	cfg = akclerk.ConfigFromEnv(func(string) string { return "" })
	require.Empty(t, cfg.APIURL, "unset means Clerk's own URL, filled in by NewVerifier")
}

// TestAPIURLWithoutVersion checks that a Backend API URL given without its
// version path, as Clerk's JavaScript SDKs take CLERK_API_URL, still reaches
// the verify endpoints. Without the /v1 added, every valid key was refused
// as invalid_key: the unknown route's 404 reads as an unknown secret.
func TestAPIURLWithoutVersion(t *testing.T) {
	t.Parallel()
	emu := clerkemu.New("sk_test_instance")
	t.Cleanup(emu.Close)
	emu.AddAPIKey("ak_ok", clerkemu.APIKey{Subject: "user_1"})
	emu.AddM2MToken("mt_ok", clerkemu.M2MToken{Subject: "mch_1"})

	root := strings.TrimSuffix(emu.URL(), "/v1")
	for _, apiURL := range []string{root, root + "/"} {
		v, err := akclerk.NewVerifier(akclerk.VerifierConfig{
			APIURL: apiURL, SecretKey: "sk_test_instance",
		})
		require.NoError(t, err)
		t.Cleanup(v.Close)

		key, err := v.VerifyAPIKey(t.Context(), "ak_ok")
		require.NoError(t, err)
		require.True(t, key.OK(), "API key through %s", apiURL)
		tok, err := v.VerifyM2MToken(t.Context(), "mt_ok")
		require.NoError(t, err)
		require.True(t, tok.OK(), "M2M token through %s", apiURL)
	}
}

// TestMachineSecretKey checks that M2M verification can authenticate with a
// machine's secret key rather than the instance's.
func TestMachineSecretKey(t *testing.T) {
	t.Parallel()
	emu := clerkemu.New("sk_test_instance")
	t.Cleanup(emu.Close)
	emu.AddMachineSecretKey("ak_machine_secret")
	emu.AddM2MToken("mt_token", clerkemu.M2MToken{Subject: "mch_worker"})

	v, err := akclerk.NewVerifier(akclerk.VerifierConfig{
		APIURL: emu.URL(), SecretKey: "sk_test_not_this_one", MachineSecretKey: "ak_machine_secret",
	})
	require.NoError(t, err)
	t.Cleanup(v.Close)

	res, err := v.VerifyM2MToken(t.Context(), "mt_token")
	require.NoError(t, err)
	require.True(t, res.OK())
	require.Equal(t, "mch_worker", res.M2MToken.Subject)
	require.Nil(t, res.M2MToken.Response, "the raw response is not kept")
}

// TestVerification checks what the verifications report.
func TestVerification(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil, akclerk.VerifierConfig{})
	e.emu.AddAPIKey("ak_ok", clerkemu.APIKey{
		ID: "ak_id", Subject: "user_1", Claims: []byte(`{"tier":"pro"}`),
	})
	e.emu.AddAPIKey("ak_revoked", clerkemu.APIKey{ID: "ak_rev", Subject: "user_1", Revoked: true})

	res, err := e.verifier.VerifyAPIKey(t.Context(), "ak_ok")
	require.NoError(t, err)
	require.True(t, res.OK())
	require.Equal(t, "ak_id", res.APIKey.ID)
	require.JSONEq(t, `{"tier":"pro"}`, string(res.APIKey.Claims))

	res, err = e.verifier.VerifyAPIKey(t.Context(), "ak_revoked")
	require.NoError(t, err)
	require.False(t, res.OK())
	require.Equal(t, agentkey.ReasonRevoked, res.Reason)
	require.Equal(t, "ak_rev", res.APIKey.ID, "a revoked key is still described")

	res, err = e.verifier.VerifyAPIKey(t.Context(), "ak_unknown")
	require.NoError(t, err)
	require.Equal(t, agentkey.ReasonInvalidKey, res.Reason)
	require.Nil(t, res.APIKey)

	tok, err := e.verifier.VerifyM2MToken(t.Context(), "ak_ok")
	require.NoError(t, err)
	require.Equal(t, agentkey.ReasonInvalidKey, tok.Reason, "an API key is not an M2M token")

	e.emu.FailWith(http.StatusNotFound)
	_, err = e.verifier.VerifyAPIKey(t.Context(), "ak_other")
	require.NoError(t, err, "404 is a rejection, not a fault")
}

// TestAnswerNotFromClerk checks the error of an answer whose body is not
// Clerk's error JSON, such as a proxy's HTML page: the SDK returns the raw
// body as the error, which went unbounded and many lines long into errors and
// error logs. Now it is cut to one short line, without any secret it echoes.
func TestAnswerNotFromClerk(t *testing.T) {
	t.Parallel()
	for _, ct := range credentialTypes {
		t.Run(ct.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, nil, akclerk.VerifierConfig{})
			secret := newSecret()
			ct.add(e.emu, secret, ct.subject(), "")
			page := proxyPage(secret, e.emu.SecretKey())
			e.emu.FailWithBody(http.StatusBadGateway, "text/html", page)

			_, err := ct.verify(t.Context(), e.verifier, secret)
			require.Error(t, err)
			msg := err.Error()
			require.Contains(t, msg, "502 Bad Gateway", "the start of the page is kept")
			require.LessOrEqual(t, len(msg), 300, msg)
			require.NotContains(t, msg, "\n")
			require.NotContains(t, msg, "end of page", "the rest is dropped")
			require.NotContains(t, msg, secret)
			require.NotContains(t, msg, e.emu.SecretKey())

			e.emu.FailWithBody(0, "", "")
			verify, err := ct.verify(t.Context(), e.verifier, secret)
			require.NoError(t, err)
			require.Empty(t, verify, "the fault was not cached")
		})
	}
}

// proxyPage is a large HTML error page of a proxy in front of Clerk, which
// echoes the request's credential and Authorization header early on.
func proxyPage(echoed ...string) string {
	var b strings.Builder
	b.WriteString("<html>\r\n<head><title>502 Bad Gateway</title></head>\n<body>\n")
	for _, s := range echoed {
		b.WriteString("<p>" + s + "</p>\n")
	}
	for range 2000 {
		b.WriteString("<p>upstream connect error or disconnect/reset before headers</p>\n")
	}
	b.WriteString("<p>end of page</p></body></html>\n")
	return b.String()
}

// TestHTTPClient checks that a configured HTTP client carries the SDK's calls.
func TestHTTPClient(t *testing.T) {
	t.Parallel()
	emu := clerkemu.New("sk_test_instance")
	t.Cleanup(emu.Close)
	emu.AddAPIKey("ak_ok", clerkemu.APIKey{Subject: "user_1"})

	transport := &countingTransport{next: &http.Transport{}}
	t.Cleanup(transport.next.CloseIdleConnections)
	v, err := akclerk.NewVerifier(akclerk.VerifierConfig{
		APIURL: emu.URL(), SecretKey: "sk_test_instance",
		HTTPClient: &http.Client{Transport: transport},
	})
	require.NoError(t, err)
	t.Cleanup(v.Close)

	res, err := v.VerifyAPIKey(t.Context(), "ak_ok")
	require.NoError(t, err)
	require.True(t, res.OK())
	require.EqualValues(t, 1, transport.requests.Load())
}

// countingTransport counts the requests it carries.
type countingTransport struct {
	next     *http.Transport
	requests atomic.Int32
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.requests.Add(1)
	return c.next.RoundTrip(r)
}
