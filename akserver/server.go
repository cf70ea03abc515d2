package akserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentkey-go/agentkey"
	"github.com/agentkey-go/agentkey/akclerk"
)

// Config configures a Server.
type Config struct {
	// Service enforces the budgets. Required.
	Service *agentkey.Service

	// Clerk, when set, lets the decision API take Clerk API keys and M2M
	// tokens (credential_type clerk_api_key and clerk_m2m). Without it,
	// those credential types are refused with 400.
	Clerk *akclerk.Verifier

	// ClerkDefaults describe the row created for a Clerk subject that the
	// decision API sees for the first time, as akclerk's Defaults do. The
	// zero value creates a row with no limit and every scope; set budgets
	// here, or per subject with the admin API, to cap Clerk callers.
	ClerkDefaults agentkey.SubjectParams

	// Logger receives the server's logs. Defaults to discarding them.
	Logger *slog.Logger

	// Registry receives the server's metrics and is served at /metrics.
	// Defaults to a new registry with the Go runtime and process
	// collectors.
	Registry *prometheus.Registry

	// SelfServe configures the self-serve routes (POST /signup, GET
	// /sdk-keys/me, POST /sdk-keys, DELETE /sdk-keys/{id}), mounted at the
	// root unless SelfServe.Disabled is set. See agentkey.Service.SelfServe.
	SelfServe agentkey.SelfServeOptions

	// MaxBodyBytes bounds a request body; a larger one is refused with 413.
	// Defaults to 64 KiB.
	MaxBodyBytes int64

	// MaxHoldTTL bounds the hold_ttl a request of the decision API may ask
	// for: a hold is meant to last as long as one piece of work. Defaults
	// to DefaultMaxHoldTTL, 24h.
	MaxHoldTTL time.Duration

	// ServiceTokenTTL is how long the decision API reuses a service token's
	// verification, valid or not, without reading the store. A token revoked
	// through another process keeps working here for up to this long.
	// Defaults to DefaultServiceTokenTTL, 30s; a negative value verifies
	// every request against the store.
	ServiceTokenTTL time.Duration

	// Version is reported by /healthz and the agentkey_build_info metric.
	Version string
}

// The defaults of Config.
const (
	// DefaultMaxBodyBytes is the default of Config.MaxBodyBytes.
	DefaultMaxBodyBytes = 64 << 10
	// DefaultMaxHoldTTL is the default of Config.MaxHoldTTL.
	DefaultMaxHoldTTL = 24 * time.Hour
	// DefaultServiceTokenTTL is the default of Config.ServiceTokenTTL.
	DefaultServiceTokenTTL = 30 * time.Second
)

func (c Config) withDefaults() Config {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Registry == nil {
		c.Registry = newRegistry()
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.MaxHoldTTL == 0 {
		c.MaxHoldTTL = DefaultMaxHoldTTL
	}
	if c.ServiceTokenTTL == 0 {
		c.ServiceTokenTTL = DefaultServiceTokenTTL
	}
	if c.Version == "" {
		c.Version = "devel"
	}
	return c
}

func (c Config) validate() error {
	if c.Service == nil {
		return errors.New("akserver: config: Service is required")
	}
	if c.MaxBodyBytes < 0 {
		return errors.New("akserver: config: MaxBodyBytes must not be negative")
	}
	if c.MaxHoldTTL < 0 {
		return errors.New("akserver: config: MaxHoldTTL must not be negative")
	}
	return nil
}

// Log attribute keys.
const (
	logRoute    = "route"
	logStatus   = "status"
	logElapsed  = "elapsed"
	logKeyID    = "key_id"
	logHoldID   = "hold_id"
	logBudgetID = "budget_id"
	logSubject  = "subject"
	logAmount   = "amount"
	logService  = "service"
	logErr      = "err"
)

// Server is the HTTP server of the agentkey binary: the admin API, the
// decision API, the self-serve routes, health checks and metrics, as one
// http.Handler. It is safe for concurrent use.
//
// The decision API authenticates services by token, and remembers each
// token's verification for Config.ServiceTokenTTL (30 seconds by default), so
// that its hot path reads no setting: a service token revoked through another
// process (the CLI, another server) keeps working here for up to that long.
// One revoked through this server's admin API stops at once.
type Server struct {
	cfg     Config
	svc     *agentkey.Service
	store   agentkey.Store
	log     *slog.Logger
	metrics *metrics
	tokens  *tokenCache
	handler http.Handler
}

// New returns a Server configured by cfg. The service's store must be
// migrated.
func New(cfg Config) (*Server, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &Server{
		cfg:   cfg,
		svc:   cfg.Service,
		store: cfg.Service.Store(),
		log:   cfg.Logger,
	}
	s.tokens = newTokenCache(s.store, max(cfg.ServiceTokenTTL, 0))

	selfServe, err := mountSelfServe(cfg.Service, cfg.SelfServe)
	if err != nil {
		return nil, err
	}
	var clerkStats func() akclerk.CacheStats
	if cfg.Clerk != nil {
		clerkStats = cfg.Clerk.Stats
	}
	s.metrics, err = newMetrics(cfg.Registry, cfg.Version, clerkStats, cfg.Service.OpenHolds)
	if err != nil {
		return nil, err
	}
	s.handler = s.routes(cfg.Registry, selfServe)
	return s, nil
}

// mountSelfServe builds the self-serve handler, turning the panic with which
// Service.SelfServe refuses bad options into an error.
func mountSelfServe(svc *agentkey.Service, opts agentkey.SelfServeOptions,
) (h http.Handler, err error) {
	if opts.Disabled {
		return nil, nil
	}
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("akserver: config: SelfServe: %v", p)
		}
	}()
	return svc.SelfServe(opts), nil
}

// Handler returns the server's routes.
func (s *Server) Handler() http.Handler { return s.handler }

func (s *Server) routes(reg *prometheus.Registry, selfServe http.Handler) http.Handler {
	mux := http.NewServeMux()
	handle := func(pattern string, h http.Handler) {
		mux.Handle(pattern, s.instrument(pattern, h))
	}
	// An admin route names the query parameters it takes; any other is
	// refused, so that a misspelt filter does not select everything.
	admin := func(pattern string, h handlerFunc, params ...string) {
		handle(pattern, s.admin(h, params))
	}
	decision := func(pattern string, h handlerFunc) { handle(pattern, s.decision(h)) }
	page := func(params ...string) []string { return append([]string{"after", "limit"}, params...) }

	handle("GET /healthz", http.HandlerFunc(s.healthz))
	handle("GET /readyz", http.HandlerFunc(s.readyz))
	handle("GET /metrics", metricsHandler(reg))

	admin("POST /admin/v1/accounts", s.createAccount)
	admin("GET /admin/v1/accounts", s.listAccounts, page("parent")...)
	admin("GET /admin/v1/accounts/{id}", s.showAccount)
	admin("GET /admin/v1/accounts/{id}/tree", s.accountTree)
	admin("PATCH /admin/v1/accounts/{id}", s.moveAccount)

	admin("POST /admin/v1/keys", s.createKey)
	admin("GET /admin/v1/keys", s.listKeys,
		page("account_id", "kind", "include_revoked")...)
	admin("GET /admin/v1/keys/{id}", s.showKey)
	admin("POST /admin/v1/keys/{id}/revoke", s.revokeKey)
	admin("PATCH /admin/v1/keys/{id}", s.moveKey)

	admin("POST /admin/v1/subjects", s.ensureSubject)
	admin("GET /admin/v1/subjects/{subject}", s.showSubject)

	admin("PUT /admin/v1/budgets/{owner_kind}/{owner_id}/{period}", s.setBudget)
	admin("DELETE /admin/v1/budgets/{owner_kind}/{owner_id}/{period}", s.removeBudget)
	admin("GET /admin/v1/budgets/{owner_kind}/{owner_id}", s.showBudgets)
	admin("POST /admin/v1/budgets/{budget_id}/adjust", s.adjustBudget)

	admin("GET /admin/v1/holds", s.listHolds, page("key_id", "account_id", "state")...)
	admin("GET /admin/v1/holds/{id}", s.showHold)
	admin("POST /admin/v1/holds/{id}/release", s.releaseHold)

	admin("GET /admin/v1/ledger", s.ledger, page("key_id", "subject", "account_id",
		"budget_id", "kind", "since", "until", "format")...)
	admin("GET /admin/v1/audit", s.audit)

	admin("POST /admin/v1/token/rotate", s.rotateAdminToken)
	admin("GET /admin/v1/service-tokens", s.listServiceTokens)
	admin("POST /admin/v1/service-tokens", s.createServiceToken)
	admin("DELETE /admin/v1/service-tokens/{name}", s.revokeServiceToken)

	admin("POST /admin/v1/clerk/purge", s.purgeClerk)

	decision("POST /v1/authorize", s.authorize)
	decision("POST /v1/charge", s.charge)
	decision("POST /v1/settle", s.settle)
	decision("POST /v1/release", s.release)

	if selfServe != nil {
		for _, pattern := range []string{"POST /signup", "GET /sdk-keys/me", "POST /sdk-keys",
			"DELETE /sdk-keys/{id}"} {
			handle(pattern, selfServe)
		}
	}
	return s.limitBody(s.unmatched(mux))
}

// methods are the methods the routes use, in the order an Allow header
// lists them.
var methods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut,
	http.MethodPatch, http.MethodDelete}

// unmatched answers, in JSON, a request that no route takes: 405 with an
// Allow header when its path has routes for other methods, 404 otherwise.
// It asks the mux rather than mounting a catch-all, which would turn every
// wrong method into a 404.
func (s *Server) unmatched(mux *http.ServeMux) http.Handler {
	rt := s.metrics.route("unmatched")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := mux.Handler(r); pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		start := time.Now()
		var allow []string
		for _, m := range methods {
			other := r.WithContext(r.Context())
			other.Method = m
			if _, pattern := mux.Handler(other); pattern != "" {
				allow = append(allow, m)
			}
		}
		if len(allow) == 0 {
			writeJSON(w, http.StatusNotFound, errorBody{Error: "not_found",
				Message: "no such route"})
			rt.observe(start, http.StatusNotFound)
			return
		}
		w.Header().Set("Allow", strings.Join(allow, ", "))
		writeJSON(w, http.StatusMethodNotAllowed, errorBody{Error: "method_not_allowed",
			Message: fmt.Sprintf("%s is not allowed here; allowed: %s",
				truncate(r.Method, 20), strings.Join(allow, ", "))})
		rt.observe(start, http.StatusMethodNotAllowed)
	})
}

// handlerFunc is an API handler: it answers the request, or returns an error
// for its caller to answer by the error table.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// limitBody refuses bodies over MaxBodyBytes: at once when the request
// says its length, and otherwise when a handler reads past the limit.
func (s *Server) limitBody(next http.Handler) http.Handler {
	limit := s.cfg.MaxBodyBytes
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > limit {
			writeJSON(w, http.StatusRequestEntityTooLarge, errorBody{Error: "request_too_large",
				Message: fmt.Sprintf("the body must be at most %d bytes", limit)})
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, limit)
		next.ServeHTTP(w, r)
	})
}

// instrument measures the requests of one route and logs them at debug
// level. It never logs headers or bodies, which carry secrets.
func (s *Server) instrument(pattern string, next http.Handler) http.Handler {
	rt := s.metrics.route(pattern)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		status := rec.status
		if status == 0 {
			status = http.StatusOK
		}
		rt.observe(start, status)
		if s.log.Enabled(r.Context(), slog.LevelDebug) {
			s.log.DebugContext(r.Context(), "request", logRoute, pattern, logStatus, status,
				logElapsed, time.Since(start))
		}
	})
}

// admin authenticates a request of the admin API by the admin token, and
// refuses the query parameters other than params.
func (s *Server) admin(h handlerFunc, params []string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, ok := agentkey.ParseBearer(r.Header.Get("Authorization"))
		if !ok {
			writeUnauthorized(w, "missing admin token: send Authorization: Bearer akadm_...")
			return
		}
		valid, err := checkAdminToken(r.Context(), s.store, token)
		if err != nil {
			s.writeError(w, r, err, adminAPI)
			return
		}
		if !valid {
			writeUnauthorized(w, "invalid admin token")
			return
		}
		if err := checkQuery(r, params); err != nil {
			s.writeError(w, r, err, adminAPI)
			return
		}
		if err := h(w, r); err != nil {
			s.writeError(w, r, err, adminAPI)
		}
	})
}

// decision authenticates a request of the decision API by a service token.
func (s *Server) decision(h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, ok := agentkey.ParseBearer(r.Header.Get("Authorization"))
		if !ok {
			writeUnauthorized(w, "missing service token: send Authorization: Bearer aksvc_...")
			return
		}
		name, err := s.tokens.verify(r.Context(), token)
		if err != nil {
			s.writeError(w, r, err, decisionAPI)
			return
		}
		if name == "" {
			writeUnauthorized(w, "invalid service token")
			return
		}
		if err := h(w, r); err != nil {
			s.writeError(w, r, err, decisionAPI)
		}
	})
}

func writeUnauthorized(w http.ResponseWriter, msg string) {
	w.Header().Set("WWW-Authenticate", "Bearer")
	writeJSON(w, http.StatusUnauthorized, errorBody{Error: "unauthorized", Message: msg})
}

// health is the body of /healthz and /readyz.
type health struct {
	Status  string `json:"status"`
	Version string `json:"version,omitempty"`
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, health{Status: "ok", Version: s.cfg.Version})
}

// readyProbe is a setting that is never written: reading it is a round trip
// to the database that touches no data.
const readyProbe = "ready-probe"

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	_, err := s.store.Setting(ctx, readyProbe)
	if err != nil && !errors.Is(err, agentkey.ErrNotFound) {
		s.log.WarnContext(ctx, "readiness probe", logErr, err)
		writeJSON(w, http.StatusServiceUnavailable, health{Status: "unavailable"})
		return
	}
	writeJSON(w, http.StatusOK, health{Status: "ok", Version: s.cfg.Version})
}

// statusRecorder remembers the status a handler answered with.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// Flush lets the CSV export stream through the recorder.
func (r *statusRecorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
