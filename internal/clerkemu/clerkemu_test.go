package clerkemu_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clerk/clerk-sdk-go/v2"
	"github.com/clerk/clerk-sdk-go/v2/apikey"
	"github.com/clerk/clerk-sdk-go/v2/m2m_token"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/agentkey-go/agentkey/internal/clerkemu"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const instanceKey = "sk_test_emulator"

// env is an emulator with SDK clients pointed at it.
type env struct {
	emu     *clerkemu.Server
	apiKeys *apikey.Client
	m2m     *m2m_token.Client
}

// setup starts an emulator and builds the SDK's API key and M2M token clients
// against it with the instance secret key, as production code builds them
// against Clerk.
func setup(t *testing.T) env {
	t.Helper()

	emu := clerkemu.New(instanceKey)
	t.Cleanup(emu.Close)

	return env{
		emu:     emu,
		apiKeys: apikey.NewClient(clientConfig(emu.URL(), instanceKey)),
		m2m:     m2m_token.NewClient(clientConfig(emu.URL(), instanceKey)),
	}
}

// clientConfig is the SDK configuration of a client talking to url with key.
func clientConfig(url, key string) *clerk.ClientConfig {
	return &clerk.ClientConfig{BackendConfig: clerk.BackendConfig{
		URL: clerk.String(url),
		Key: clerk.String(key),
	}}
}

// requireAPIError asserts that err is Clerk's error response with status and
// code, and returns it.
func requireAPIError(t *testing.T, err error, status int, code string) *clerk.APIErrorResponse {
	t.Helper()

	var apiErr *clerk.APIErrorResponse
	require.ErrorAs(t, err, &apiErr)
	require.Equal(t, status, apiErr.HTTPStatusCode)
	require.Len(t, apiErr.Errors, 1)
	require.Equal(t, code, apiErr.Errors[0].Code)
	require.NotEmpty(t, apiErr.Errors[0].Message)
	require.NotEmpty(t, apiErr.Errors[0].LongMessage)
	require.NotEmpty(t, apiErr.TraceID)
	return apiErr
}

// ms returns a time with the millisecond precision Clerk's timestamps have.
func ms(t time.Time) time.Time {
	return time.UnixMilli(t.UnixMilli())
}

func TestVerifyAPIKey(t *testing.T) {
	t.Parallel()

	t.Run("ValidKeyReturnsEveryField", func(t *testing.T) {
		t.Parallel()
		e := setup(t)
		ctx := context.Background()

		created := ms(time.Now().Add(-48 * time.Hour))
		updated := ms(time.Now().Add(-24 * time.Hour))
		lastUsed := ms(time.Now().Add(-time.Hour))
		expires := ms(time.Now().Add(24 * time.Hour))
		e.emu.AddAPIKey("ak_live_secret", clerkemu.APIKey{
			ID:          "ak_2xhFjEI5X2qWRvtV13BzSj8H6Dk",
			Name:        "ci",
			Subject:     "org_2abc",
			Description: clerk.String("CI pipeline"),
			Claims:      json.RawMessage(`{"tier":"pro","limit":5}`),
			Scopes:      []string{"read", "write"},
			Expiration:  &expires,
			CreatedBy:   clerk.String("user_2creator"),
			LastUsedAt:  &lastUsed,
			CreatedAt:   created,
			UpdatedAt:   updated,
		})

		key, err := e.apiKeys.Verify(ctx, &apikey.VerifyParams{Secret: "ak_live_secret"})
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, key.Response.StatusCode)
		require.Equal(t, "api_key", key.Object)
		require.Equal(t, "ak_2xhFjEI5X2qWRvtV13BzSj8H6Dk", key.ID)
		require.Equal(t, "api_key", key.Type)
		require.Equal(t, "ci", key.Name)
		require.Equal(t, "org_2abc", key.Subject)
		require.Equal(t, clerk.String("CI pipeline"), key.Description)
		require.JSONEq(t, `{"tier":"pro","limit":5}`, string(key.Claims))
		require.Equal(t, []string{"read", "write"}, key.Scopes)
		require.False(t, key.Revoked)
		require.Nil(t, key.RevocationReason)
		require.False(t, key.Expired)
		require.Equal(t, clerk.Int64(expires.UnixMilli()), key.Expiration)
		require.Equal(t, clerk.String("user_2creator"), key.CreatedBy)
		require.Equal(t, clerk.Int64(lastUsed.UnixMilli()), key.LastUsedAt)
		require.Equal(t, created.UnixMilli(), key.CreatedAt)
		require.Equal(t, updated.UnixMilli(), key.UpdatedAt)
	})

	t.Run("DefaultsFilledAndNullsKept", func(t *testing.T) {
		t.Parallel()
		e := setup(t)

		before := time.Now().UnixMilli()
		e.emu.AddAPIKey("ak_secret", clerkemu.APIKey{Name: "bare", Subject: "user_2abc"})

		key, err := e.apiKeys.Verify(context.Background(), &apikey.VerifyParams{Secret: "ak_secret"})
		require.NoError(t, err)
		require.True(t, strings.HasPrefix(key.ID, "ak_"), key.ID)
		require.Len(t, key.ID, len("ak_")+27)
		require.GreaterOrEqual(t, key.CreatedAt, before)
		require.Equal(t, key.CreatedAt, key.UpdatedAt)
		require.Equal(t, "null", string(key.Claims))
		require.NotNil(t, key.Scopes)
		require.Empty(t, key.Scopes)
		require.Nil(t, key.Description)
		require.Nil(t, key.Expiration)
		require.Nil(t, key.CreatedBy)
		require.Nil(t, key.LastUsedAt)

		// The raw body must carry explicit nulls and [], as Clerk's does.
		var raw map[string]any
		require.NoError(t, json.Unmarshal(key.Response.RawJSON, &raw))
		for _, field := range []string{"claims", "description", "expiration", "created_by",
			"last_used_at", "revocation_reason"} {
			v, ok := raw[field]
			require.True(t, ok, field)
			require.Nil(t, v, field)
		}
		require.Equal(t, []any{}, raw["scopes"])
	})

	t.Run("RevokedKeyAnswers200WithFlag", func(t *testing.T) {
		t.Parallel()
		e := setup(t)

		e.emu.AddAPIKey("ak_secret", clerkemu.APIKey{Subject: "user_2abc"})
		e.emu.RevokeAPIKey("ak_secret", "leaked")

		key, err := e.apiKeys.Verify(context.Background(), &apikey.VerifyParams{Secret: "ak_secret"})
		require.NoError(t, err)
		require.True(t, key.Revoked)
		require.Equal(t, clerk.String("leaked"), key.RevocationReason)
		require.False(t, key.Expired)
		require.GreaterOrEqual(t, key.UpdatedAt, key.CreatedAt)
	})

	t.Run("RevokedWithoutReasonAnswersNullReason", func(t *testing.T) {
		t.Parallel()
		e := setup(t)

		e.emu.AddAPIKey("ak_secret", clerkemu.APIKey{Subject: "user_2abc"})
		e.emu.RevokeAPIKey("ak_secret", "")

		key, err := e.apiKeys.Verify(context.Background(), &apikey.VerifyParams{Secret: "ak_secret"})
		require.NoError(t, err)
		require.True(t, key.Revoked)
		require.Nil(t, key.RevocationReason)
	})

	t.Run("ExpiredKeyAnswers200WithFlag", func(t *testing.T) {
		t.Parallel()
		e := setup(t)

		e.emu.AddAPIKey("ak_secret", clerkemu.APIKey{Subject: "user_2abc"})
		e.emu.ExpireAPIKey("ak_secret")

		key, err := e.apiKeys.Verify(context.Background(), &apikey.VerifyParams{Secret: "ak_secret"})
		require.NoError(t, err)
		require.True(t, key.Expired)
		require.NotNil(t, key.Expiration)
		require.Less(t, *key.Expiration, time.Now().UnixMilli())
		require.False(t, key.Revoked)
	})

	t.Run("PastExpirationReportsExpired", func(t *testing.T) {
		t.Parallel()
		e := setup(t)

		past := time.Now().Add(-time.Minute)
		e.emu.AddAPIKey("ak_secret", clerkemu.APIKey{Subject: "user_2abc", Expiration: &past})

		key, err := e.apiKeys.Verify(context.Background(), &apikey.VerifyParams{Secret: "ak_secret"})
		require.NoError(t, err)
		require.True(t, key.Expired)
	})

	t.Run("UnknownSecretNotFound", func(t *testing.T) {
		t.Parallel()
		e := setup(t)

		_, err := e.apiKeys.Verify(context.Background(), &apikey.VerifyParams{Secret: "ak_nope"})
		apiErr := requireAPIError(t, err, http.StatusNotFound, "resource_not_found")
		require.Equal(t, apiErr.TraceID, apiErr.Response.TraceID)
	})

	t.Run("RemovedKeyNotFound", func(t *testing.T) {
		t.Parallel()
		e := setup(t)

		e.emu.AddAPIKey("ak_secret", clerkemu.APIKey{Subject: "user_2abc"})
		e.emu.RemoveAPIKey("ak_secret")

		_, err := e.apiKeys.Verify(context.Background(), &apikey.VerifyParams{Secret: "ak_secret"})
		requireAPIError(t, err, http.StatusNotFound, "resource_not_found")
	})

	t.Run("EmptySecretBadRequest", func(t *testing.T) {
		t.Parallel()
		e := setup(t)

		_, err := e.apiKeys.Verify(context.Background(), &apikey.VerifyParams{})
		apiErr := requireAPIError(t, err, http.StatusBadRequest, "form_param_missing")
		require.JSONEq(t, `{"param_name":"secret"}`, string(apiErr.Errors[0].Meta))
	})

	t.Run("WrongInstanceKeyUnauthorized", func(t *testing.T) {
		t.Parallel()
		e := setup(t)
		e.emu.AddAPIKey("ak_secret", clerkemu.APIKey{Subject: "user_2abc"})

		for _, key := range []string{"sk_test_wrong", ""} {
			client := apikey.NewClient(clientConfig(e.emu.URL(), key))
			_, err := client.Verify(context.Background(), &apikey.VerifyParams{Secret: "ak_secret"})
			requireAPIError(t, err, http.StatusUnauthorized, "authentication_invalid")
		}
	})

	t.Run("MachineSecretKeyRefused", func(t *testing.T) {
		t.Parallel()
		e := setup(t)
		e.emu.AddAPIKey("ak_secret", clerkemu.APIKey{Subject: "user_2abc"})
		e.emu.AddMachineSecretKey("ak_machine_secret")

		client := apikey.NewClient(clientConfig(e.emu.URL(), "ak_machine_secret"))
		_, err := client.Verify(context.Background(), &apikey.VerifyParams{Secret: "ak_secret"})
		requireAPIError(t, err, http.StatusUnauthorized, "authentication_invalid")
	})
}

func TestVerifyM2MToken(t *testing.T) {
	t.Parallel()

	t.Run("ValidTokenReturnsEveryField", func(t *testing.T) {
		t.Parallel()
		e := setup(t)

		created := ms(time.Now().Add(-time.Hour))
		lastUsed := ms(time.Now().Add(-time.Minute))
		expires := ms(time.Now().Add(time.Hour))
		e.emu.AddM2MToken("mt_token", clerkemu.M2MToken{
			ID:         "mt_2xhFjEI5X2qWRvtV13BzSj8H6Dk",
			Subject:    "mch_2caller",
			Claims:     json.RawMessage(`{"env":"prod"}`),
			Scopes:     []string{"mch_2callee"},
			Expiration: &expires,
			LastUsedAt: &lastUsed,
			CreatedAt:  created,
		})

		tok, err := e.m2m.Verify(context.Background(), &m2m_token.VerifyParams{Token: "mt_token"})
		require.NoError(t, err)
		require.Equal(t, "machine_to_machine_token", tok.Object)
		require.Equal(t, "mt_2xhFjEI5X2qWRvtV13BzSj8H6Dk", tok.ID)
		require.Equal(t, "mch_2caller", tok.Subject)
		require.JSONEq(t, `{"env":"prod"}`, string(tok.Claims))
		require.Equal(t, []string{"mch_2callee"}, tok.Scopes)
		require.False(t, tok.Revoked)
		require.Nil(t, tok.RevocationReason)
		require.False(t, tok.Expired)
		require.Equal(t, clerk.Int64(expires.UnixMilli()), tok.Expiration)
		require.Equal(t, clerk.Int64(lastUsed.UnixMilli()), tok.LastUsedAt)
		require.Equal(t, created.UnixMilli(), tok.CreatedAt)
		require.Equal(t, created.UnixMilli(), tok.UpdatedAt)
	})

	t.Run("DefaultIDFilled", func(t *testing.T) {
		t.Parallel()
		e := setup(t)
		e.emu.AddM2MToken("mt_token", clerkemu.M2MToken{Subject: "mch_2caller"})

		tok, err := e.m2m.Verify(context.Background(), &m2m_token.VerifyParams{Token: "mt_token"})
		require.NoError(t, err)
		require.True(t, strings.HasPrefix(tok.ID, "mt_"), tok.ID)
		require.NotZero(t, tok.CreatedAt)
		require.Equal(t, "null", string(tok.Claims))
		require.Empty(t, tok.Scopes)
	})

	t.Run("RevokedTokenAnswers200WithFlag", func(t *testing.T) {
		t.Parallel()
		e := setup(t)
		e.emu.AddM2MToken("mt_token", clerkemu.M2MToken{Subject: "mch_2caller"})
		e.emu.RevokeM2MToken("mt_token", "rotated")

		tok, err := e.m2m.Verify(context.Background(), &m2m_token.VerifyParams{Token: "mt_token"})
		require.NoError(t, err)
		require.True(t, tok.Revoked)
		require.Equal(t, clerk.String("rotated"), tok.RevocationReason)
	})

	t.Run("ExpiredTokenAnswers200WithFlag", func(t *testing.T) {
		t.Parallel()
		e := setup(t)
		e.emu.AddM2MToken("mt_token", clerkemu.M2MToken{Subject: "mch_2caller"})
		e.emu.ExpireM2MToken("mt_token")

		tok, err := e.m2m.Verify(context.Background(), &m2m_token.VerifyParams{Token: "mt_token"})
		require.NoError(t, err)
		require.True(t, tok.Expired)
		require.NotNil(t, tok.Expiration)
	})

	t.Run("UnknownAndRemovedTokenNotFound", func(t *testing.T) {
		t.Parallel()
		e := setup(t)
		e.emu.AddM2MToken("mt_token", clerkemu.M2MToken{Subject: "mch_2caller"})
		e.emu.RemoveM2MToken("mt_token")

		for _, token := range []string{"mt_token", "mt_never"} {
			_, err := e.m2m.Verify(context.Background(), &m2m_token.VerifyParams{Token: token})
			requireAPIError(t, err, http.StatusNotFound, "resource_not_found")
		}
	})

	t.Run("EmptyTokenBadRequest", func(t *testing.T) {
		t.Parallel()
		e := setup(t)

		_, err := e.m2m.Verify(context.Background(), &m2m_token.VerifyParams{})
		apiErr := requireAPIError(t, err, http.StatusBadRequest, "form_param_missing")
		require.JSONEq(t, `{"param_name":"token"}`, string(apiErr.Errors[0].Meta))
	})

	t.Run("WrongKeyUnauthorized", func(t *testing.T) {
		t.Parallel()
		e := setup(t)
		e.emu.AddM2MToken("mt_token", clerkemu.M2MToken{Subject: "mch_2caller"})

		client := m2m_token.NewClient(clientConfig(e.emu.URL(), "sk_test_wrong"))
		_, err := client.Verify(context.Background(), &m2m_token.VerifyParams{Token: "mt_token"})
		requireAPIError(t, err, http.StatusUnauthorized, "authentication_invalid")
	})

	t.Run("MachineSecretKeyAccepted", func(t *testing.T) {
		t.Parallel()
		e := setup(t)
		e.emu.AddM2MToken("mt_token", clerkemu.M2MToken{Subject: "mch_2caller"})
		e.emu.AddMachineSecretKey("ak_machine_secret")

		client := m2m_token.NewClient(clientConfig(e.emu.URL(), "ak_machine_secret"))
		tok, err := client.Verify(context.Background(), &m2m_token.VerifyParams{Token: "mt_token"})
		require.NoError(t, err)
		require.Equal(t, "mch_2caller", tok.Subject)
	})
}

// rawPost sends body to path on the emulator with the instance secret key,
// for requests the SDK cannot produce.
func rawPost(t *testing.T, emu *clerkemu.Server, method, path, body string) (int, map[string]any) {
	t.Helper()

	url := strings.TrimSuffix(emu.URL(), "/v1") + path
	req, err := http.NewRequestWithContext(context.Background(), method, url, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+emu.SecretKey())
	req.Header.Set("Content-Type", "application/json")

	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()

	var decoded map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&decoded))
	return resp.StatusCode, decoded
}

// errorCode returns the code of the first error in a decoded Clerk error body.
func errorCode(t *testing.T, body map[string]any) string {
	t.Helper()

	errs, ok := body["errors"].([]any)
	require.True(t, ok, body)
	require.Len(t, errs, 1)
	first, ok := errs[0].(map[string]any)
	require.True(t, ok, body)
	require.NotEmpty(t, body["clerk_trace_id"])
	return first["code"].(string)
}

func TestMalformedRequests(t *testing.T) {
	t.Parallel()

	emu := clerkemu.New(instanceKey)
	t.Cleanup(emu.Close)

	tests := []struct {
		name, method, path, body string
		status                   int
		code                     string
	}{
		{"MalformedJSON", http.MethodPost, "/v1/api_keys/verify", `{"secret":`, 400,
			"form_param_format_invalid"},
		{"NotAnObject", http.MethodPost, "/v1/m2m_tokens/verify", `["mt_token"]`, 400,
			"form_param_format_invalid"},
		{"SecretNotAString", http.MethodPost, "/v1/api_keys/verify", `{"secret":42}`, 400,
			"form_param_format_invalid"},
		{"SecretNull", http.MethodPost, "/v1/api_keys/verify", `{"secret":null}`, 400,
			"form_param_missing"},
		{"EmptyBody", http.MethodPost, "/v1/m2m_tokens/verify", ``, 400, "form_param_missing"},
		{"UnknownPath", http.MethodPost, "/v1/users", `{}`, 404, "resource_not_found"},
		{"WrongMethod", http.MethodGet, "/v1/api_keys/verify", ``, 405, "method_not_allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			status, body := rawPost(t, emu, tt.method, tt.path, tt.body)
			require.Equal(t, tt.status, status)
			require.Equal(t, tt.code, errorCode(t, body))
		})
	}
}

func TestCalls(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := context.Background()
	e.emu.AddAPIKey("ak_secret", clerkemu.APIKey{Subject: "user_2abc"})

	_, err := e.apiKeys.Verify(ctx, &apikey.VerifyParams{Secret: "ak_secret"})
	require.NoError(t, err)
	_, err = e.apiKeys.Verify(ctx, &apikey.VerifyParams{Secret: "ak_unknown"})
	require.Error(t, err)
	e.emu.FailWith(http.StatusBadGateway)
	_, err = e.apiKeys.Verify(ctx, &apikey.VerifyParams{Secret: "ak_secret"})
	require.Error(t, err)
	_, err = e.m2m.Verify(ctx, &m2m_token.VerifyParams{Token: "mt_token"})
	require.Error(t, err)

	require.Equal(t, 3, e.emu.Calls("/v1/api_keys/verify"))
	require.Equal(t, 1, e.emu.Calls("/v1/m2m_tokens/verify"))
	require.Zero(t, e.emu.Calls("/v1/users"))

	e.emu.ResetCalls()
	require.Zero(t, e.emu.Calls("/v1/api_keys/verify"))
	require.Zero(t, e.emu.Calls("/v1/m2m_tokens/verify"))
}

func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := context.Background()

	scopes := []string{"read"}
	e.emu.AddAPIKey("ak_secret", clerkemu.APIKey{Subject: "user_2abc", Scopes: scopes})
	scopes[0] = "changed after adding"

	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for range 10 {
				key, err := e.apiKeys.Verify(ctx, &apikey.VerifyParams{Secret: "ak_secret"})
				if err != nil {
					t.Errorf("verify: %v", err)
					return
				}
				if key.Scopes[0] != "read" {
					t.Errorf("scopes = %v, want [read]", key.Scopes)
				}
			}
		})
		wg.Go(func() {
			e.emu.AddM2MToken("mt_token", clerkemu.M2MToken{Subject: "mch_2caller"})
			e.emu.SetLatency(time.Duration(i) * time.Microsecond)
			_ = e.emu.Calls("/v1/api_keys/verify")
		})
	}
	wg.Wait()
	require.Equal(t, 80, e.emu.Calls("/v1/api_keys/verify"))
}

func TestMisuse(t *testing.T) {
	t.Parallel()
	emu := clerkemu.New(instanceKey)
	t.Cleanup(emu.Close)

	require.Panics(t, func() { clerkemu.New("") })
	require.Panics(t, func() { emu.RevokeAPIKey("ak_unknown", "") })
	require.Panics(t, func() { emu.ExpireM2MToken("mt_unknown") })
	require.Panics(t, func() {
		emu.AddAPIKey("ak_secret", clerkemu.APIKey{Claims: json.RawMessage(`{bad`)})
	})
	require.NotPanics(t, func() { emu.RemoveAPIKey("ak_unknown") })
	require.NotPanics(t, emu.Close)
}

// TestErrorBodyShape checks that an error body holds Clerk's fields and no
// others, since code that reads the body without the SDK relies on them.
func TestErrorBodyShape(t *testing.T) {
	t.Parallel()
	emu := clerkemu.New(instanceKey)
	t.Cleanup(emu.Close)

	status, body := rawPost(t, emu, http.MethodPost, "/v1/api_keys/verify", `{"secret":"ak_nope"}`)
	require.Equal(t, http.StatusNotFound, status)
	require.ElementsMatch(t, []string{"errors", "clerk_trace_id"}, keys(body))
	first := body["errors"].([]any)[0].(map[string]any)
	require.ElementsMatch(t, []string{"message", "long_message", "code"}, keys(first))
}

// keys returns the keys of m.
func keys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
