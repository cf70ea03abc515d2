package e2e

import (
	"encoding/csv"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/agentkey-go/agentkey"
)

// decision is the answer of POST /v1/authorize and POST /v1/charge.
type decision struct {
	Allow    bool             `json:"allow"`
	Status   int              `json:"status"`
	Error    string           `json:"error"`
	Reason   string           `json:"reason"`
	Key      *agentkey.Key    `json:"key"`
	Hold     *agentkey.Hold   `json:"hold"`
	Budget   *agentkey.Budget `json:"budget"`
	Charged  *agentkey.Money  `json:"charged"`
	OpID     string           `json:"op_id"`
	Replayed bool             `json:"replayed"`
}

// createdKey is the answer of POST /admin/v1/keys and POST /signup.
type createdKey struct {
	Secret string `json:"key"`
	agentkey.Key
}

// usageRow is a row of "agentkey usage --json".
type usageRow struct {
	OwnerKind string          `json:"owner_kind"`
	OwnerID   string          `json:"owner_id"`
	Limit     *agentkey.Money `json:"limit"`
	Used      agentkey.Money  `json:"used"`
	Held      agentkey.Money  `json:"held"`
}

func usageOf(t *testing.T, db database, args ...string) map[string]usageRow {
	t.Helper()
	var rows []usageRow
	out := db.ok(t, append([]string{"usage", "--json"}, args...)...)
	require.NoError(t, json.Unmarshal([]byte(out), &rows), out)
	m := map[string]usageRow{}
	for _, r := range rows {
		m[r.OwnerKind+" "+r.OwnerID] = r
	}
	return m
}

// TestWalkthrough is the README's walk-through, on each store: a server,
// the admin API, the decision API, the self-serve routes and the CLI, on one
// database at once.
func TestWalkthrough(t *testing.T) {
	t.Run("SQLite", func(t *testing.T) {
		t.Parallel()
		walkthrough(t, sqliteDatabase(t))
	})
	t.Run("PostgreSQL", func(t *testing.T) {
		t.Parallel()
		walkthrough(t, postgresDatabase(t))
	})
}

func walkthrough(t *testing.T, db database) {
	c := newClient(t)
	srv := db.serve(t, "--log-level", "debug")
	require.NotEmpty(t, srv.adminToken, "the first start prints the admin token:\n%s", srv.stdout)
	admin, url := srv.adminToken, srv.url

	c.call(http.StatusOK, "GET", url+"/healthz", "", nil)
	c.call(http.StatusOK, "GET", url+"/readyz", "", nil)

	// Admin API: an account with a monthly budget, and a key in it.
	c.call(http.StatusUnauthorized, "GET", url+"/admin/v1/accounts", "", nil)
	c.call(http.StatusCreated, "POST", url+"/admin/v1/accounts", admin,
		`{"id": "acct_1", "name": "Acme", "budgets": [{"limit": "5", "period": "month"}]}`)
	var key createdKey
	c.call(http.StatusCreated, "POST", url+"/admin/v1/keys", admin,
		`{"account_id": "acct_1", "scopes": ["proxy.chat"], "budgets": [{"limit": "1", "period": "day"}],
		  "expires_in": "7d"}`).decode(t, &key)
	require.Regexp(t, `^ak_[0-9a-f]{48}$`, key.Secret)

	// A service token from the CLI, while the server runs on the same
	// database.
	svcToken := strings.TrimSpace(db.ok(t, "service-tokens", "create", "e2e", "-q"))
	require.Regexp(t, `^aksvc_[0-9a-f]{48}$`, svcToken)
	c.call(http.StatusUnauthorized, "POST", url+"/v1/authorize", admin, `{}`)

	decide := func(path string, body any) decision {
		t.Helper()
		var d decision
		c.call(http.StatusOK, "POST", url+path, svcToken, body).decode(t, &d)
		return d
	}

	// Authorize: allowed with the key's scope, 403 without.
	d := decide("/v1/authorize", map[string]any{"credential": key.Secret, "scope": "proxy.chat"})
	require.True(t, d.Allow)
	require.Equal(t, http.StatusOK, d.Status)
	require.Equal(t, key.ID, d.Key.ID)
	d = decide("/v1/authorize", map[string]any{"credential": key.Secret, "scope": "proxy.image"})
	require.False(t, d.Allow)
	require.Equal(t, http.StatusForbidden, d.Status)
	require.Equal(t, "insufficient_scope", d.Reason)
	d = decide("/v1/authorize", map[string]any{"credential": "ak_nope"})
	require.Equal(t, http.StatusUnauthorized, d.Status)
	require.Equal(t, "invalid_key", d.Error)
	d = decide("/v1/authorize", map[string]any{})
	require.Equal(t, "Missing API key", d.Error)

	// Charge after the work, once per idempotency key.
	d = decide("/v1/charge", map[string]any{"credential": key.Secret, "amount": "0.25",
		"idempotency_key": "req-1", "metadata": map[string]string{"model": "small"}})
	require.True(t, d.Allow)
	require.Equal(t, "0.25", d.Charged.String())
	again := decide("/v1/charge", map[string]any{"key_id": key.ID, "amount": "0.25",
		"idempotency_key": "req-1"})
	require.True(t, again.Replayed)
	require.Equal(t, d.OpID, again.OpID)

	// Hold before the work, settle after.
	d = decide("/v1/authorize", map[string]any{"credential": key.Secret, "scope": "proxy.chat",
		"estimate": "0.5", "hold_ttl": "10m"})
	require.True(t, d.Allow)
	require.NotNil(t, d.Hold)
	var settled agentkey.CloseResult
	c.call(http.StatusOK, "POST", url+"/v1/settle", svcToken,
		map[string]any{"hold_id": d.Hold.ID, "amount": "0.3"}).decode(t, &settled)
	require.Equal(t, "0.3", settled.Charged.String())
	require.Equal(t, "0.2", settled.Released.String())
	c.call(http.StatusConflict, "POST", url+"/v1/release", svcToken,
		map[string]any{"hold_id": d.Hold.ID})

	// Over budget: 0.55 of 1 is used, 0.5 more does not fit.
	d = decide("/v1/charge", map[string]any{"credential": key.Secret, "amount": "0.5"})
	require.False(t, d.Allow)
	require.Equal(t, http.StatusTooManyRequests, d.Status)
	require.Equal(t, "budget_exceeded", d.Reason)
	require.Equal(t, agentkey.PeriodDay, d.Budget.Period)

	// Bad input is refused and writes nothing.
	for _, body := range []string{
		`{"credential": "x", "amount": "0.1", "colour": "red"}`,
		`{"credential": "x", "amount": "0.1"} {}`,
		`{"credential": "x", "amount": "ten"}`,
		`{"credential": "x", "amount": 0.1}`,
		`{"credential": `,
	} {
		var e struct{ Error, Message string }
		c.call(http.StatusBadRequest, "POST", url+"/v1/charge", svcToken, body).decode(t, &e)
		require.Equal(t, "invalid_request", e.Error)
		require.NotEmpty(t, e.Message)
	}
	c.call(http.StatusBadRequest, "POST", url+"/admin/v1/keys", admin,
		`{"account_id": "acct_1", "budgets": [{"limit": "1", "period": "fortnight"}]}`)
	c.call(http.StatusBadRequest, "POST", url+"/admin/v1/keys", admin,
		`{"account_id": "acct_1", "expires_in": "7 days"}`)
	c.call(http.StatusRequestEntityTooLarge, "POST", url+"/v1/charge", svcToken,
		`{"credential": "`+strings.Repeat("x", 70_000)+`"}`)
	c.call(http.StatusBadRequest, "GET", url+"/admin/v1/ledger?acount_id=acct_1", admin, nil)
	c.call(http.StatusBadRequest, "POST", url+"/admin/v1/keys/"+key.ID+"/revoke", admin,
		`{"reason": "leaked"}`)
	r := c.call(http.StatusMethodNotAllowed, "GET", url+"/v1/authorize", svcToken, nil)
	require.Equal(t, "POST", r.header.Get("Allow"))

	// Usage, from the CLI while the server runs, and from the admin API.
	usage := usageOf(t, db)
	require.Equal(t, "0.55", usage["key "+key.ID].Used.String())
	require.Equal(t, "1", usage["key "+key.ID].Limit.String())
	require.Equal(t, "0.55", usage["account acct_1"].Used.String())
	var shown agentkey.Key
	c.call(http.StatusOK, "GET", url+"/admin/v1/keys/"+key.ID, admin, nil).decode(t, &shown)
	require.Len(t, shown.Budgets, 2, "the key's budget and its account's")
	for _, b := range shown.Budgets {
		require.Equal(t, "0.55", b.Used.String(), b.ID)
		require.Zero(t, b.Held)
	}

	// The ledger as CSV: the key's budget set, then per budget a charge, a
	// hold, a release and a settle. The CLI writes the same bytes.
	r = c.call(http.StatusOK, "GET", url+"/admin/v1/ledger?format=csv&key_id="+key.ID, admin, nil)
	require.Contains(t, r.header.Get("Content-Type"), "text/csv")
	records, err := csv.NewReader(strings.NewReader(string(r.body))).ReadAll()
	require.NoError(t, err)
	require.Len(t, records, 1+1+2*4, "%s", r.body)
	require.Equal(t, string(r.body), db.ok(t, "ledger", "list", "--key", key.ID, "--csv"))

	// The account's tree, and the service tokens by name.
	var tree struct {
		Path    []agentkey.Account
		Account agentkey.Account
	}
	c.call(http.StatusOK, "GET", url+"/admin/v1/accounts/acct_1/tree", admin, nil).decode(t, &tree)
	require.Empty(t, tree.Path)
	require.Equal(t, "Acme", tree.Account.Name)
	r = c.call(http.StatusOK, "GET", url+"/admin/v1/service-tokens", admin, nil)
	require.Contains(t, string(r.body), `"name":"e2e"`)
	require.NotContains(t, string(r.body), svcToken)

	// A key from the CLI works over HTTP at once; revoked from the CLI, it
	// stops at once.
	cliKey := strings.TrimSpace(db.ok(t, "keys", "create", "--account", "acct_1", "--budget", "2",
		"--period", "week", "--scopes", "proxy.chat", "--expires", "1h", "-q"))
	d = decide("/v1/authorize", map[string]any{"credential": cliKey, "scope": "proxy.chat"})
	require.True(t, d.Allow)
	require.Contains(t, db.ok(t, "keys", "revoke", d.Key.ID), "revoked")
	d = decide("/v1/authorize", map[string]any{"credential": cliKey, "scope": "proxy.chat"})
	require.Equal(t, http.StatusUnauthorized, d.Status)
	require.Equal(t, "revoked", d.Reason)

	// Self-serve: a signup key describes itself.
	var signup createdKey
	c.call(http.StatusCreated, "POST", url+"/signup", "", `{"email": "dev@example.com"}`).decode(t, &signup)
	require.Regexp(t, `^ak_`, signup.Secret)
	var me agentkey.Key
	c.call(http.StatusOK, "GET", url+"/sdk-keys/me", signup.Secret, nil).decode(t, &me)
	require.Equal(t, signup.ID, me.ID)
	require.Equal(t, "dev@example.com", me.UserID)

	metrics := string(c.call(http.StatusOK, "GET", url+"/metrics", "", nil).body)
	require.Contains(t, metrics, "agentkey_decisions_total")
	require.Contains(t, metrics, "agentkey_http_request_duration_seconds")

	// The audit is clean, over HTTP and from the CLI.
	var audit struct{ Clean bool }
	c.call(http.StatusOK, "GET", url+"/admin/v1/audit", admin, nil).decode(t, &audit)
	require.True(t, audit.Clean)
	require.Contains(t, db.ok(t, "ledger", "audit"), "audit clean")

	// SIGTERM stops the server cleanly; a restart prints no admin token, and
	// the first one still works.
	require.Equal(t, 0, srv.stop(t), "stderr:\n%s", srv.stderr)
	require.Contains(t, srv.stderr.String(), "stopped")
	require.NotContains(t, srv.stderr.String(), key.Secret, "secrets are never logged")
	require.NotContains(t, srv.stderr.String(), svcToken)
	require.NotContains(t, srv.stderr.String(), admin)

	srv = db.serve(t)
	require.Empty(t, srv.adminToken)
	c.call(http.StatusOK, "GET", srv.url+"/admin/v1/accounts", admin, nil)
	require.Equal(t, 0, srv.stop(t))
}

// TestCommandLine checks the binary's exit codes and help.
func TestCommandLine(t *testing.T) {
	t.Parallel()
	db := sqliteDatabase(t)

	help := db.ok(t, "--help")
	require.Contains(t, help, "Exit codes")
	serveHelp := db.ok(t, "serve", "--help")
	for _, env := range []string{"DATABASE_URL", "AGENTKEY_DB", "AGENTKEY_ADDR", "CLERK_SECRET_KEY"} {
		require.Contains(t, serveHelp, "(env "+env+")")
	}
	require.Regexp(t, `^agentkey \S+`, db.ok(t, "version"))
	require.Contains(t, db.ok(t, "migrate"), "up to date")

	for _, args := range [][]string{
		{},
		{"bogus"},
		{"keys", "create"},
		{"keys", "create", "--account", "a", "--budget", "fifty"},
		{"keys", "list", "--no-such-flag"},
		{"serve", "--addr", "127.0.0.1:0", "--signup-budget", "5/year"},
	} {
		r := db.run(t, args...)
		require.Equal(t, 2, r.code, "%v: %s", args, r.stderr)
		require.NotEmpty(t, r.stderr)
		require.Empty(t, r.stdout)
	}

	r := db.run(t, "keys", "show", "key_missing")
	require.Equal(t, 1, r.code)
	r = db.run(t, "--database-url", "postgres://nobody@127.0.0.1:1/none?connect_timeout=5", "keys", "list")
	require.Equal(t, 1, r.code, "an unreachable database is a failure")
}
