package akserver_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/agentkey-go/agentkey"
	"github.com/agentkey-go/agentkey/akclerk"
	"github.com/agentkey-go/agentkey/akserver"
	"github.com/agentkey-go/agentkey/internal/testdb"
)

// debugEnv names the environment variable that, set to 1, shows the logs of
// every test.
const debugEnv = "AKSERVER_TEST_LOG"

// storeFactory opens fresh, migrated stores of one implementation.
type storeFactory = testdb.Factory

var (
	storeFactories = testdb.Factories
	forEachStore   = testdb.ForEach
)

// env is one test's server on a store of its own, with an admin token and a
// service token.
type env struct {
	store      agentkey.Store
	svc        *agentkey.Service
	srv        *akserver.Server
	ts         *httptest.Server
	client     *http.Client
	admin      string // admin token
	service    string // service token
	breakStore func()
	logs       *logBuffer
	registry   *prometheus.Registry
}

// envOptions change what newEnv builds.
type envOptions struct {
	selfServe     agentkey.SelfServeOptions
	clerk         *akclerk.Verifier
	clerkDefaults agentkey.SubjectParams
	maxBodyBytes  int64
	maxHoldTTL    time.Duration
	svcConfig     agentkey.Config
	// quiet discards the logs, for benchmarks.
	quiet bool
}

func newEnv(t testing.TB, sf storeFactory, o envOptions) *env {
	t.Helper()
	ctx := context.Background()
	logger, logs := newTestLogger(t)
	if o.quiet {
		logger = slog.New(slog.DiscardHandler)
	}
	e := &env{logs: logs, registry: prometheus.NewRegistry()}
	e.store, e.breakStore = sf.Open(t)

	cfg := o.svcConfig
	cfg.Logger = logger
	svc, err := agentkey.New(e.store, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = svc.Close(context.Background()) })
	e.svc = svc

	admin, created, err := akserver.EnsureAdminToken(ctx, e.store)
	require.NoError(t, err)
	require.True(t, created)
	e.admin = admin
	e.service, err = akserver.CreateServiceToken(ctx, e.store, "test-service")
	require.NoError(t, err)

	e.srv, err = akserver.New(akserver.Config{
		Service: svc, Clerk: o.clerk, ClerkDefaults: o.clerkDefaults, Logger: logger,
		Registry: e.registry, SelfServe: o.selfServe, MaxBodyBytes: o.maxBodyBytes,
		MaxHoldTTL: o.maxHoldTTL, Version: "test",
	})
	require.NoError(t, err)
	e.ts = httptest.NewServer(e.srv.Handler())
	t.Cleanup(e.ts.Close)
	e.client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	t.Cleanup(e.client.CloseIdleConnections)
	return e
}

// obj is a JSON object, for request bodies.
type obj = map[string]any

// reply is an HTTP answer.
type reply struct {
	status int
	header http.Header
	body   []byte
}

// call makes a request. body is sent as is when it is a string, and as JSON
// otherwise; nil sends none.
func (e *env) call(t testing.TB, method, path, token string, body any) reply {
	t.Helper()
	rep, err := e.do(method, path, token, body)
	require.NoError(t, err)
	return rep
}

// do is call returning an error rather than failing the test, for
// goroutines other than the test's.
func (e *env) do(method, path, token string, body any) (reply, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			return reply{}, err
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, e.ts.URL+path, rd)
	if err != nil {
		return reply{}, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := e.client.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		return reply{}, err
	}
	return reply{status: res.StatusCode, header: res.Header, body: raw}, nil
}

// adminCall calls the admin API with the admin token.
func (e *env) adminCall(t testing.TB, method, path string, body any) reply {
	t.Helper()
	return e.call(t, method, "/admin/v1"+path, e.admin, body)
}

// decide calls the decision API with the service token.
func (e *env) decide(t testing.TB, path string, body any) reply {
	t.Helper()
	return e.call(t, http.MethodPost, "/v1"+path, e.service, body)
}

// into decodes the reply's JSON body into v, zeroed first so that fields
// the body omits are not left from an earlier reply, after checking its
// status.
func (r reply) into(t testing.TB, status int, v any) {
	t.Helper()
	require.Equal(t, status, r.status, "body: %s", r.body)
	reflect.ValueOf(v).Elem().SetZero()
	require.NoError(t, json.Unmarshal(r.body, v), "body: %s", r.body)
}

// object decodes the reply's JSON body as an object, after checking its
// status.
func (r reply) object(t testing.TB, status int) map[string]any {
	t.Helper()
	var m map[string]any
	r.into(t, status, &m)
	return m
}

// createKey mints a key through the admin API.
func (e *env) createKey(t testing.TB, body obj) createdKey {
	t.Helper()
	var ck createdKey
	e.adminCall(t, http.MethodPost, "/keys", body).into(t, http.StatusCreated, &ck)
	require.NotEmpty(t, ck.Secret)
	return ck
}

// createdKey is the answer of POST /admin/v1/keys.
type createdKey struct {
	Secret string `json:"key"`
	agentkey.Key
}

// decision is the answer of POST /v1/authorize and /v1/charge.
type decision struct {
	Allow      bool             `json:"allow"`
	Status     int              `json:"status"`
	Error      string           `json:"error"`
	Reason     agentkey.Reason  `json:"reason"`
	Required   string           `json:"required"`
	Available  []string         `json:"available"`
	RetryAfter int64            `json:"retry_after"`
	Key        *agentkey.Key    `json:"key"`
	Hold       *agentkey.Hold   `json:"hold"`
	Budget     *agentkey.Budget `json:"budget"`
	Charged    *agentkey.Money  `json:"charged"`
	OpID       string           `json:"op_id"`
	Replayed   bool             `json:"replayed"`
}

func (e *env) authorize(t testing.TB, body obj) decision {
	t.Helper()
	var d decision
	e.decide(t, "/authorize", body).into(t, http.StatusOK, &d)
	return d
}

func (e *env) charge(t testing.TB, body obj) decision {
	t.Helper()
	var d decision
	e.decide(t, "/charge", body).into(t, http.StatusOK, &d)
	return d
}

// ledger returns every ledger entry.
func (e *env) ledger(t testing.TB) []agentkey.Entry {
	t.Helper()
	entries, err := e.svc.Ledger(context.Background(), agentkey.LedgerFilter{Limit: 10_000})
	require.NoError(t, err)
	return entries
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// logBuffer keeps a test's logs, and shows them when debugEnv is set.
type logBuffer struct {
	t    testing.TB
	show bool

	mu   sync.Mutex
	buf  bytes.Buffer
	done bool
}

func newTestLogger(t testing.TB) (*slog.Logger, *logBuffer) {
	lb := &logBuffer{t: t, show: os.Getenv(debugEnv) == "1"}
	t.Cleanup(func() {
		lb.mu.Lock()
		lb.done = true // t.Log must not be called after the test
		lb.mu.Unlock()
	})
	h := slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})
	return slog.New(h), lb
}

func (lb *logBuffer) Write(p []byte) (int, error) {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	lb.buf.Write(p)
	if lb.show && !lb.done {
		lb.t.Log(string(bytes.TrimRight(p, "\n")))
	}
	return len(p), nil
}

func (lb *logBuffer) String() string {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	return lb.buf.String()
}
