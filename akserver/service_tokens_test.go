package akserver_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/agentkey-go/agentkey/akserver"
)

// tokenList is the answer of GET /admin/v1/service-tokens.
type tokenList struct {
	ServiceTokens []akserver.ServiceToken `json:"service_tokens"`
}

func TestListServiceTokens(t *testing.T) {
	forEachStore(t, func(t *testing.T, sf storeFactory) {
		ctx := context.Background()
		e := newEnv(t, sf, envOptions{})
		before := time.Now().Add(-time.Minute)

		var created struct{ Token string }
		e.adminCall(t, "POST", "/service-tokens", obj{"name": "billing"}).
			into(t, http.StatusCreated, &created)
		worker, err := akserver.CreateServiceToken(ctx, e.store, "worker")
		require.NoError(t, err)
		require.NoError(t, akserver.RevokeServiceToken(ctx, e.store, "worker"))

		list := func() ([]string, []byte) {
			t.Helper()
			rep := e.adminCall(t, "GET", "/service-tokens", nil)
			var l tokenList
			rep.into(t, http.StatusOK, &l)
			var names []string
			for _, tok := range l.ServiceTokens {
				require.True(t, tok.CreatedAt.After(before), "%+v", tok)
				names = append(names, tok.Name)
			}
			return names, rep.body
		}
		names, body := list()
		require.Equal(t, []string{"billing", "test-service"}, names, "revoked ones are not listed")

		// Neither a token nor its hash is ever listed.
		for _, tok := range []string{created.Token, worker, e.service} {
			sum := sha256.Sum256([]byte(tok))
			require.NotContains(t, string(body), tok)
			require.NotContains(t, string(body), hex.EncodeToString(sum[:]))
		}

		// A name given a token again is listed once.
		_, err = akserver.CreateServiceToken(ctx, e.store, "worker")
		require.NoError(t, err)
		names, _ = list()
		require.Equal(t, []string{"billing", "test-service", "worker"}, names)

		// Tokens created at once are all listed.
		var (
			wg   sync.WaitGroup
			mu   sync.Mutex
			errs []error
		)
		for i := range 8 {
			wg.Go(func() {
				_, err := akserver.CreateServiceToken(ctx, e.store, fmt.Sprintf("svc-%d", i))
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, err)
				}
			})
		}
		wg.Wait()
		require.Empty(t, errs)
		tokens, err := akserver.ServiceTokens(ctx, e.store)
		require.NoError(t, err)
		require.Len(t, tokens, 3+8)
		e.adminCall(t, "GET", "/service-tokens?name=x", nil).object(t, http.StatusBadRequest)
	})
}

// TestServiceTokenCacheOff checks that a server with a negative
// ServiceTokenTTL refuses a token at once when another process revokes it.
func TestServiceTokenCacheOff(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, storeFactories[0], envOptions{})
	srv, err := akserver.New(akserver.Config{Service: e.svc, Registry: prometheus.NewRegistry(),
		ServiceTokenTTL: -1})
	require.NoError(t, err)

	tok, err := akserver.CreateServiceToken(ctx, e.store, "worker")
	require.NoError(t, err)
	authorize := func() int {
		req, err := http.NewRequest("POST", "/v1/authorize", strings.NewReader(`{}`))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+tok)
		rec := httptest.NewRecorder()
		srv.Handler().ServeHTTP(rec, req)
		return rec.Code
	}
	require.Equal(t, http.StatusOK, authorize())
	require.NoError(t, akserver.RevokeServiceToken(ctx, e.store, "worker"))
	require.Equal(t, http.StatusUnauthorized, authorize())
}
