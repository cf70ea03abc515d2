package clerkemu

import (
	"context"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Paths of the endpoints the emulator serves, as the SDK requests them when
// its backend URL is [Server.URL].
const (
	apiKeysVerifyPath   = "/v1/api_keys/verify"
	m2mTokensVerifyPath = "/v1/m2m_tokens/verify"
)

// maxBodyBytes bounds a request body; the SDK's verify bodies are tiny.
const maxBodyBytes = 1 << 20

// Server is an emulated Clerk Backend API listening on a local port. It is
// safe for concurrent use: tests may seed credentials and inject faults while
// requests are in flight.
type Server struct {
	srv       *httptest.Server
	secretKey string

	// done is closed by Close to release every request held by Hang or
	// SetLatency, since httptest.Server.Close waits for active handlers.
	done      chan struct{}
	closeOnce sync.Once

	// The credentials have locks of their own; mu guards the fields below it.
	apiKeys   *credentials[APIKey, *APIKey]     // by secret
	m2mTokens *credentials[M2MToken, *M2MToken] // by token

	mu          sync.Mutex
	machineKeys map[string]bool
	latency     time.Duration
	failStatus  int
	failBody    []byte // nil for a Clerk error body
	failType    string // the Content-Type of failBody
	retryAfter  time.Duration
	hang        chan struct{} // non-nil while hanging; closed to release
	calls       map[string]int
}

// New starts an emulator that accepts secretKey as the instance secret key,
// such as "sk_test_emulator". It panics if secretKey is empty, because an
// empty key would make every request authenticated. Call [Server.Close] when
// done.
func New(secretKey string) *Server {
	if secretKey == "" {
		panic("clerkemu: New: empty secret key")
	}

	s := &Server{
		secretKey:   secretKey,
		done:        make(chan struct{}),
		apiKeys:     newCredentials[APIKey]("ak", "secret", "API key with that secret"),
		m2mTokens:   newCredentials[M2MToken]("mt", "token", "M2M token with that value"),
		machineKeys: make(map[string]bool),
		calls:       make(map[string]int),
	}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// URL returns the base URL of the emulated API, ending in "/v1", to be passed
// as clerk.BackendConfig.URL.
func (s *Server) URL() string {
	return s.srv.URL + "/v1"
}

// SecretKey returns the instance secret key the emulator accepts, to be passed
// as clerk.BackendConfig.Key.
func (s *Server) SecretKey() string {
	return s.secretKey
}

// Close releases every request held by [Server.Hang] or [Server.SetLatency],
// dropping their connections as a server going away would, then shuts the
// server down and waits for its goroutines. It may be called more than once.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.done)
		s.srv.Close()
	})
}

// AddMachineSecretKey makes the emulator accept key, a machine's secret key,
// as the bearer credential of M2M token verification, in addition to the
// instance secret key. Clerk's Backend API documents both as valid for that
// endpoint; the SDK sends whichever key its BackendConfig holds.
func (s *Server) AddMachineSecretKey(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.machineKeys[key] = true
}

// SetLatency delays every response by d, or stops delaying when d is zero. A
// request whose client gives up before d has elapsed is dropped.
func (s *Server) SetLatency(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latency = d
}

// FailWith makes every request fail with status, such as 500, 502 or 503, and
// a Clerk error body, or stops failing when status is zero. Status 500 carries
// Clerk's code "internal_clerk_error"; others a code derived from the status
// text, such as "service_unavailable". It takes precedence over
// [Server.RateLimit] and is applied before authentication.
func (s *Server) FailWith(status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failStatus, s.failBody, s.failType = status, nil, ""
}

// FailWithBody makes every request fail with status and body, sent as it is
// with the given Content-Type, or stops failing when status is zero. It
// stands for an answer that does not come from Clerk's API, such as the HTML
// page of a proxy or load balancer in front of it, which the SDK cannot
// decode into a *clerk.APIErrorResponse. It replaces [Server.FailWith].
func (s *Server) FailWithBody(status int, contentType, body string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failStatus, s.failBody, s.failType = status, []byte(body), contentType
	if status == 0 {
		s.failBody, s.failType = nil, ""
	}
}

// RateLimit makes every request fail with 429, a Retry-After header of
// retryAfter in whole seconds (rounded up, at least 1) and a Clerk error body
// with code "too_many_requests", or stops when retryAfter is zero.
func (s *Server) RateLimit(retryAfter time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.retryAfter = retryAfter
}

// Hang makes requests block, when on is true, until their client gives up,
// Hang(false) is called or the server is closed. Hang(false) lets the held
// requests proceed as if they had just arrived.
func (s *Server) Hang(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()

	switch {
	case on && s.hang == nil:
		s.hang = make(chan struct{})
	case !on && s.hang != nil:
		close(s.hang)
		s.hang = nil
	}
}

// Calls reports how many requests have arrived for path, a URL path such as
// "/v1/api_keys/verify", whatever their outcome. A request is counted on
// arrival, so a request held by [Server.Hang] counts.
func (s *Server) Calls(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[path]
}

// ResetCalls sets every count reported by [Server.Calls] back to zero.
func (s *Server) ResetCalls() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.calls)
}

// serve handles every request: it applies the injected faults, then
// authenticates and routes the request as Clerk would.
func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	w.Header().Set(traceHeader, newTraceID())

	s.mu.Lock()
	s.calls[r.URL.Path]++
	hang := s.hang
	s.mu.Unlock()

	// Reading the body up front lets net/http notice a client that hangs up,
	// which cancels r.Context() while the request is held below.
	body, readErr := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))

	if hang != nil {
		hold(r.Context(), s.done, hang)
	}
	s.mu.Lock()
	latency := s.latency
	s.mu.Unlock()
	if latency > 0 {
		timer := time.NewTimer(latency)
		defer timer.Stop()
		hold(r.Context(), s.done, timer.C)
	}

	s.mu.Lock()
	failStatus, failBody, failType, retryAfter := s.failStatus, s.failBody, s.failType, s.retryAfter
	s.mu.Unlock()
	switch {
	case failStatus != 0 && failBody != nil:
		w.Header().Set("Content-Type", failType)
		w.WriteHeader(failStatus)
		_, _ = w.Write(failBody)
		return
	case failStatus != 0:
		writeError(w, failStatus, serverError(failStatus))
		return
	case retryAfter > 0:
		secs := max(1, int64(math.Ceil(retryAfter.Seconds())))
		w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
		writeError(w, http.StatusTooManyRequests, errTooManyRequests)
		return
	}

	if !s.authenticated(r) {
		writeError(w, http.StatusUnauthorized, errAuthenticationInvalid)
		return
	}

	var verify func(http.ResponseWriter, []byte)
	switch r.URL.Path {
	case apiKeysVerifyPath:
		verify = s.apiKeys.verify
	case m2mTokensVerifyPath:
		verify = s.m2mTokens.verify
	default:
		writeError(w, http.StatusNotFound, errResourceNotFound)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, http.StatusMethodNotAllowed, errMethodNotAllowed)
		return
	}
	if readErr != nil {
		writeError(w, http.StatusBadRequest, errMalformedBody)
		return
	}

	verify(w, body)
}

// hold blocks a handler until ch delivers or is closed. If the client gives
// up first, or done is closed by Close, it unwinds the handler with
// http.ErrAbortHandler, which drops the connection the way a stopping server
// would and which net/http does not log.
func hold[T any](ctx context.Context, done <-chan struct{}, ch <-chan T) {
	select {
	case <-ch:
	case <-ctx.Done():
		panic(http.ErrAbortHandler)
	case <-done:
		panic(http.ErrAbortHandler)
	}
}

// authenticated reports whether r carries the instance secret key, or for
// M2M verification a registered machine secret key, as a bearer token.
func (s *Server) authenticated(r *http.Request) bool {
	key, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || key == "" {
		return false
	}
	if key == s.secretKey {
		return true
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	return r.URL.Path == m2mTokensVerifyPath && s.machineKeys[key]
}

// stringParam returns the string parameter name of a JSON request body. When
// the body is not a JSON object or the parameter is absent, null, empty or not
// a string, ok is false and e is the Clerk error to answer with.
func stringParam(body []byte, name string) (v string, e clerkError, ok bool) {
	params := map[string]json.RawMessage{}
	if len(body) > 0 {
		if err := json.Unmarshal(body, &params); err != nil {
			return "", errMalformedBody, false
		}
	}

	raw, found := params[name]
	if !found || string(raw) == "null" {
		return "", paramMissing(name), false
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return "", paramInvalid(name), false
	}
	if v == "" {
		return "", paramMissing(name), false
	}
	return v, clerkError{}, true
}
