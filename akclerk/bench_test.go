package akclerk_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/agentkey-go/agentkey"
	"github.com/agentkey-go/agentkey/akclerk"
)

// BenchmarkAPIKeyMiddleware measures the middleware's overhead per request
// with a warm cache: no Clerk call, one store read (the subject's row).
func BenchmarkAPIKeyMiddleware(b *testing.B) {
	for _, sf := range storeFactories {
		b.Run(sf.Name, func(b *testing.B) {
			e := newEnv(b, &sf, akclerk.VerifierConfig{})
			secret := newSecret()
			apiKeys.add(e.emu, secret, apiKeys.subject(), "")
			h := apiKeys.middleware(e, gateOptions{
				scope: "proxy.chat",
				defaults: agentkey.SubjectParams{
					Scopes: []string{"proxy.chat"}, Budgets: monthly(50 * agentkey.Dollar),
				},
			})(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(http.StatusNoContent)
			}))
			require.Equal(b, http.StatusNoContent, serve(h, secret).Code) // provisions, warms
			calls := e.emu.Calls(apiKeys.path)

			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				req := httptest.NewRequest(http.MethodPost, "/api/chat", nil)
				req.Header.Set("Authorization", "Bearer "+secret)
				for pb.Next() {
					rec := httptest.NewRecorder()
					h.ServeHTTP(rec, req)
					if rec.Code != http.StatusNoContent {
						b.Errorf("status %d: %s", rec.Code, rec.Body)
						return
					}
				}
			})
			b.StopTimer()
			require.Equal(b, calls, e.emu.Calls(apiKeys.path), "the cache stayed warm")
		})
	}
}

// BenchmarkVerifyAPIKeyCached measures a verification answered by the cache,
// the part of the middleware's overhead that is not the store.
func BenchmarkVerifyAPIKeyCached(b *testing.B) {
	e := newEnv(b, nil, akclerk.VerifierConfig{})
	secret := newSecret()
	apiKeys.add(e.emu, secret, apiKeys.subject(), "")
	ctx := b.Context()
	_, err := e.verifier.VerifyAPIKey(ctx, secret)
	require.NoError(b, err)

	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if res, err := e.verifier.VerifyAPIKey(ctx, secret); err != nil || !res.OK() {
				b.Errorf("verify: %v %v", res.Reason, err)
				return
			}
		}
	})
}
