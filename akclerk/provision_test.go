package akclerk_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentkey-go/agentkey"
	"github.com/agentkey-go/agentkey/akclerk"
)

// The modes of a faultyStore's EnsureSubject.
const (
	ensureWorks int32 = iota
	ensureFails
	ensureHangs
)

// faultyStore is a real store whose EnsureSubject, the write that creates a
// subject's row, can be made to fail, as a database that lost its connection
// would, or to hang until its context ends, as one stuck on a lock would.
// Every other call goes to the store untouched.
type faultyStore struct {
	agentkey.Store
	mode    atomic.Int32
	ensures atomic.Int32 // calls of EnsureSubject
}

func (s *faultyStore) EnsureSubject(ctx context.Context, k agentkey.KeyRecord, op agentkey.Op,
) (agentkey.Key, bool, error) {
	s.ensures.Add(1)
	switch s.mode.Load() {
	case ensureFails:
		return agentkey.Key{}, false, errors.New("connection reset by peer")
	case ensureHangs:
		<-ctx.Done()
		return agentkey.Key{}, false, ctx.Err()
	}
	return s.Store.EnsureSubject(ctx, k, op)
}

// newFaultyEnv is newEnv on a faultyStore of sf.
func newFaultyEnv(t *testing.T, sf storeFactory) (*env, *faultyStore) {
	var fs *faultyStore
	e := newEnvWrapped(t, &sf, akclerk.VerifierConfig{}, func(s agentkey.Store) agentkey.Store {
		fs = &faultyStore{Store: s}
		return fs
	})
	return e, fs
}

// subjectRows lists every subject row of e's service, revoked ones too.
func subjectRows(t *testing.T, e *env) []agentkey.Key {
	t.Helper()
	keys, err := e.svc.Keys(t.Context(), agentkey.KeyFilter{Kind: "subject", IncludeRevoked: true})
	require.NoError(t, err)
	return keys
}

// requireUnavailable checks that rec is a refusal for a fault.
func requireUnavailable(t *testing.T, rec *httptest.ResponseRecorder) {
	t.Helper()
	require.Equal(t, http.StatusInternalServerError, rec.Code, rec.Body.String())
	require.JSONEq(t, `{"error":"auth_unavailable"}`, rec.Body.String())
}

// TestProvisionFault checks a storage fault while the row of a new subject is
// created: the request is refused with 500 auth_unavailable, and although
// Clerk's answer is cached, the next request is not let through without a
// row: it tries the creation again.
func TestProvisionFault(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, sf storeFactory) {
		for _, ct := range credentialTypes {
			t.Run(ct.name, func(t *testing.T) {
				t.Parallel()
				e, fs := newFaultyEnv(t, sf)
				subject, secret := ct.subject(), newSecret()
				ct.add(e.emu, secret, subject, "")
				h := ct.middleware(e, gateOptions{
					scope: "proxy.chat",
					defaults: agentkey.SubjectParams{
						Scopes: []string{"proxy.chat"}, Budgets: monthly(agentkey.Dollar),
					},
				})(handler(ct, 0))

				fs.mode.Store(ensureFails)
				for i := range 2 {
					requireUnavailable(t, serve(h, secret))
					require.EqualValues(t, i+1, fs.ensures.Load(), "creation tried on each request")
				}
				require.Equal(t, 1, e.emu.Calls(ct.path), "Clerk's valid answer is cached")
				require.Empty(t, subjectRows(t, e))
				require.Contains(t, e.logs.String(), "connection reset by peer",
					"the fault is logged")

				fs.mode.Store(ensureWorks)
				rec := serve(h, secret)
				require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
				got := decode[admitted](t, rec).Key
				require.Equal(t, subject, got.Subject)
				require.Equal(t, agentkey.Dollar, got.Budgets[0].Limit, "the row of Defaults")
				require.EqualValues(t, 3, fs.ensures.Load())
				require.Len(t, subjectRows(t, e), 1)

				rec = serve(h, secret)
				require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
				require.EqualValues(t, 3, fs.ensures.Load(), "a known subject is not created again")
			})
		}
	})
}

// TestProvisionTimeout checks that ProvisionTimeout ends the creation of a
// new subject's row on a database that does not answer. The request's own
// context never ends, so the request returning at all proves the timeout.
func TestProvisionTimeout(t *testing.T) {
	t.Parallel()
	for _, ct := range credentialTypes {
		t.Run(ct.name, func(t *testing.T) {
			t.Parallel()
			e, fs := newFaultyEnv(t, storeFactories[0])
			subject, secret := ct.subject(), newSecret()
			ct.add(e.emu, secret, subject, "")
			opts := gateOptions{provisionTimeout: 50 * time.Millisecond}
			h := ct.middleware(e, opts)(handler(ct, 0))

			fs.mode.Store(ensureHangs)
			requireUnavailable(t, serve(h, secret))
			require.Contains(t, e.logs.String(), context.DeadlineExceeded.Error())
			require.Empty(t, subjectRows(t, e))

			fs.mode.Store(ensureWorks)
			rec := serve(h, secret)
			require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
			require.Len(t, subjectRows(t, e), 1)
		})
	}
}

// TestSubjectRowExpires checks that a subject's row past the expiry set by
// ExpiresIn, from Defaults or OnFirstSeen, is refused with 401 invalid_key,
// reason expired, while Clerk's answer that the credential is valid is still
// cached: the refusal is the row's.
func TestSubjectRowExpires(t *testing.T) {
	t.Parallel()
	const expiresIn = 30 * agentkey.Day
	params := agentkey.SubjectParams{
		Scopes: []string{"proxy.chat"}, Budgets: monthly(agentkey.Dollar), ExpiresIn: expiresIn,
	}
	froms := []struct {
		name string
		opts gateOptions
	}{
		{"Defaults", gateOptions{scope: "proxy.chat", defaults: params}},
		{"OnFirstSeen", gateOptions{scope: "proxy.chat",
			onFirstSeen: func(string, json.RawMessage) agentkey.SubjectParams { return params },
		}},
	}
	forEachStore(t, func(t *testing.T, sf storeFactory) {
		for _, from := range froms {
			for _, ct := range credentialTypes {
				t.Run(from.name+"/"+ct.name, func(t *testing.T) {
					t.Parallel()
					e := newEnv(t, &sf, akclerk.VerifierConfig{})
					subject, secret := ct.subject(), newSecret()
					ct.add(e.emu, secret, subject, "")
					h := ct.middleware(e, from.opts)(handler(ct, 0))

					start := e.svcClock.Now()
					rec := serve(h, secret)
					require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
					expiresAt := decode[admitted](t, rec).Key.ExpiresAt
					require.WithinDuration(t, start.Add(expiresIn), expiresAt, time.Millisecond)

					e.svcClock.Advance(expiresIn - time.Millisecond)
					rec = serve(h, secret)
					require.Equal(t, http.StatusOK, rec.Code, "not expired yet: %s",
						rec.Body.String())

					e.svcClock.Advance(time.Millisecond)
					requireRefused(t, serve(h, secret), agentkey.ReasonExpired)
					reason, err := ct.verify(t.Context(), e.verifier, secret)
					require.NoError(t, err)
					require.Empty(t, reason, "Clerk's answer is still valid")
					require.Equal(t, 1, e.emu.Calls(ct.path))
				})
			}
		}
	})
}
