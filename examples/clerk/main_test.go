package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/agentkey-go/agentkey"
	"github.com/agentkey-go/agentkey/akclerk"
	"github.com/agentkey-go/agentkey/aksqlite"
	"github.com/agentkey-go/agentkey/internal/clerkemu"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestChat drives the example's API against the Clerk emulator, holding
// max_cost first (the default) and charging after the work (-charge-after).
func TestChat(t *testing.T) {
	for _, mode := range []struct {
		name        string
		chargeAfter bool
	}{{"Hold", false}, {"ChargeAfter", true}} {
		t.Run(mode.name, func(t *testing.T) { testChat(t, mode.chargeAfter) })
	}
}

func testChat(t *testing.T, chargeAfter bool) {
	ctx := t.Context()
	emu := clerkemu.New("sk_test_chat")
	t.Cleanup(emu.Close)
	emu.AddAPIKey("ak_customer", clerkemu.APIKey{Subject: "user_customer"})
	emu.AddAPIKey("ak_revoked", clerkemu.APIKey{Subject: "user_other", Revoked: true})

	store, err := aksqlite.Open(filepath.Join(t.TempDir(), "clerk.db"), aksqlite.Config{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })
	require.NoError(t, store.Migrate(ctx))
	svc, err := agentkey.New(store, agentkey.Config{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = svc.Close(context.Background()) })
	verifier, err := akclerk.NewVerifier(akclerk.VerifierConfig{
		SecretKey: emu.SecretKey(), APIURL: emu.URL(),
	})
	require.NoError(t, err)
	t.Cleanup(verifier.Close)

	h := newHandler(svc, verifier, slog.New(slog.DiscardHandler), chargeAfter)
	call := func(query, key string) (int, map[string]any) {
		req := httptest.NewRequest(http.MethodPost, "/api/chat"+query, nil)
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		var body map[string]any
		_ = json.Unmarshal(rec.Body.Bytes(), &body)
		return rec.Code, body
	}

	code, body := call("?cost=2.5", "ak_customer")
	require.Equal(t, http.StatusOK, code, body)
	require.Equal(t, "0.025", body["charged"])
	require.Equal(t, "49.975", body["remaining"], "$50 a month on first sight")

	code, body = call("", "ak_customer")
	require.Equal(t, http.StatusOK, code, body)
	require.Equal(t, "0.01", body["charged"], "a cent by default")

	code, body = call("?work_ms=5&max_cost=2", "ak_customer")
	require.Equal(t, http.StatusOK, code, body)
	require.Equal(t, "0.01", body["charged"], "the real cost, not max_cost")

	for _, q := range []string{"?cost=-1", "?cost=abc", "?cost=0.00001", "?work_ms=forever"} {
		code, body = call(q, "ak_customer")
		require.Equal(t, http.StatusBadRequest, code, "%s: %v", q, body)
	}

	code, body = call("", "")
	require.Equal(t, http.StatusUnauthorized, code)
	require.Equal(t, "Missing API key", body["error"])

	code, body = call("", "ak_unknown")
	require.Equal(t, http.StatusUnauthorized, code)
	require.Equal(t, "invalid_key", body["error"])

	code, body = call("", "ak_revoked")
	require.Equal(t, http.StatusUnauthorized, code)
	require.Equal(t, "revoked", body["reason"])

	// 4.5 cents of $50 are used: a $50 call does not fit, refused before the
	// work when it is held and after it otherwise.
	code, body = call("?cost=5000", "ak_customer")
	require.Equal(t, http.StatusTooManyRequests, code, body)
	require.Equal(t, "budget_exceeded", body["error"])

	code, body = call("?cost=4995.5", "ak_customer")
	require.Equal(t, http.StatusOK, code, body)
	require.Equal(t, "0", body["remaining"])
	code, body = call("?cost=0.0001", "ak_customer")
	require.Equal(t, http.StatusTooManyRequests, code, "the budget is spent: the middleware refuses")
	require.Equal(t, "budget_exceeded", body["error"])

	emu.FailWith(http.StatusServiceUnavailable)
	verifier.PurgeSubject("user_customer")
	code, body = call("", "ak_customer")
	require.Equal(t, http.StatusInternalServerError, code)
	require.Equal(t, "auth_unavailable", body["error"])
}

// TestClientLeavingReleasesHold cancels a request during its work: the hold
// the middleware made is given back and nothing is charged. The handler used
// to return without a word, so the middleware saw no error status and
// settled the hold at the whole estimate.
func TestClientLeavingReleasesHold(t *testing.T) {
	ctx := t.Context()
	emu := clerkemu.New("sk_test_leave")
	t.Cleanup(emu.Close)
	emu.AddAPIKey("ak_customer", clerkemu.APIKey{Subject: "user_customer"})

	store, err := aksqlite.Open(filepath.Join(t.TempDir(), "clerk.db"), aksqlite.Config{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })
	require.NoError(t, store.Migrate(ctx))
	svc, err := agentkey.New(store, agentkey.Config{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = svc.Close(context.Background()) })
	verifier, err := akclerk.NewVerifier(akclerk.VerifierConfig{
		SecretKey: emu.SecretKey(), APIURL: emu.URL(),
	})
	require.NoError(t, err)
	t.Cleanup(verifier.Close)
	srv := httptest.NewServer(newHandler(svc, verifier, slog.New(slog.DiscardHandler), false))
	t.Cleanup(srv.Close)
	transport := &http.Transport{}
	t.Cleanup(transport.CloseIdleConnections)

	budget := func() (agentkey.Budget, error) {
		v, err := svc.ValidateBySubject(ctx, "user_customer")
		if err != nil || len(v.Key.Budgets) == 0 {
			return agentkey.Budget{}, errors.Join(err, errors.New("no row yet"))
		}
		return v.Key.Budgets[0], nil
	}

	reqCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		// The work would take a minute; the client leaves long before.
		req, err := http.NewRequestWithContext(reqCtx, http.MethodPost,
			srv.URL+"/api/chat?cost=2&work_ms=60000", nil)
		if err == nil {
			req.Header.Set("Authorization", "Bearer ak_customer")
			var res *http.Response
			if res, err = (&http.Client{Transport: transport}).Do(req); err == nil {
				res.Body.Close()
			}
		}
		done <- err
	}()

	require.Eventually(t, func() bool {
		b, err := budget()
		return err == nil && b.Held == 2*agentkey.Cent
	}, 30*time.Second, 5*time.Millisecond, "the estimate is held during the work")
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)

	require.Eventually(t, func() bool {
		b, err := budget()
		return err == nil && b.Held == 0
	}, 30*time.Second, 5*time.Millisecond, "the hold is closed once the handler returns")
	b, err := budget()
	require.NoError(t, err)
	require.Zero(t, b.Used, "nothing billed")
	ledger, err := svc.Ledger(ctx, agentkey.LedgerFilter{Kinds: agentkey.MoneyKinds})
	require.NoError(t, err)
	kinds := []agentkey.EntryKind{}
	for _, entry := range ledger {
		kinds = append(kinds, entry.Kind)
	}
	require.Equal(t, []agentkey.EntryKind{agentkey.EntryHold, agentkey.EntryRelease}, kinds,
		"held, then given back; never settled")
}

// TestRunEmulate runs the example as `go run ./examples/clerk -emulate`
// does, and calls it with the curl line it prints.
func TestRunEmulate(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	env := map[string]string{"ADDR": "127.0.0.1:0"}
	var out lockedBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-emulate", "-db", filepath.Join(t.TempDir(), "clerk.db")}, &out,
			func(k string) string { return env[k] })
	}()

	curl := regexp.MustCompile(`Authorization: Bearer (\S+)" '(\S+)'`)
	var m []string
	require.Eventually(t, func() bool {
		m = curl.FindStringSubmatch(out.String())
		return m != nil
	}, 10*time.Second, 10*time.Millisecond, "no curl line in %q", out.String())
	secret, url := m[1], m[2]

	transport := &http.Transport{}
	t.Cleanup(transport.CloseIdleConnections)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+secret)
	res, err := (&http.Client{Transport: transport}).Do(req)
	require.NoError(t, err)
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, res.StatusCode, string(body))
	require.Contains(t, string(body), `"charged":"0.025"`)

	cancel()
	require.NoError(t, <-done)
	require.NotContains(t, logLines(out.String()), secret,
		"the secret is printed once, never logged")
}

// TestRunNeedsSecretKey checks the message a user gets without Clerk's key.
func TestRunNeedsSecretKey(t *testing.T) {
	err := run(t.Context(), []string{"-db", filepath.Join(t.TempDir(), "clerk.db")}, io.Discard,
		func(string) string { return "" })
	require.ErrorContains(t, err, "CLERK_SECRET_KEY")
}

// logLines returns the lines of out written by the logger.
func logLines(out string) string {
	lines := regexp.MustCompile(`(?m)^time=.*$`).FindAllString(out, -1)
	return strings.Join(lines, "\n")
}

// lockedBuffer is a bytes.Buffer safe for one writer and one reader.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
