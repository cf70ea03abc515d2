package akclerk

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/clerk/clerk-sdk-go/v2"
	"github.com/clerk/clerk-sdk-go/v2/apikey"
	"github.com/clerk/clerk-sdk-go/v2/m2m_token"
	"golang.org/x/sync/singleflight"

	"github.com/agentkey-go/agentkey"
)

// The defaults of VerifierConfig.
const (
	// DefaultTimeout bounds one call to Clerk's Backend API.
	DefaultTimeout = 3 * time.Second
	// DefaultCacheTTL is how long a valid answer is reused. A key revoked in
	// Clerk is still admitted for up to this long.
	DefaultCacheTTL = 30 * time.Second
	// DefaultNegativeCacheTTL is how long a rejection is reused. A key is
	// still refused for up to this long after Clerk starts to know it.
	DefaultNegativeCacheTTL = 5 * time.Second
	// DefaultCacheSize is the most credentials the cache keeps.
	DefaultCacheSize = 10_000
)

// NoNegativeCache, as VerifierConfig.NegativeCacheTTL, turns off the caching
// of rejections alone.
const NoNegativeCache time.Duration = -1

// clerkAPIVersionPath is the path of the Backend API's version that
// clerk.APIURL ends in, added to a configured URL that has no path.
const clerkAPIVersionPath = "v1"

// The environment variables that ConfigFromEnv reads.
const (
	// EnvSecretKey holds the Clerk instance's secret key (sk_live_... or
	// sk_test_...).
	EnvSecretKey = "CLERK_SECRET_KEY"
	// EnvAPIURL holds the base URL of Clerk's Backend API, for pointing the
	// verifier at another Clerk-compatible server.
	EnvAPIURL = "CLERK_API_URL"
)

// VerifierConfig configures a Verifier.
type VerifierConfig struct {
	// SecretKey is the Clerk instance's secret key, with which the verifier
	// authenticates to the Backend API. Required.
	SecretKey string

	// MachineSecretKey, when set, authenticates M2M token verification
	// instead of SecretKey: Clerk accepts a machine's secret key there.
	MachineSecretKey string

	// APIURL is the base URL of the Backend API, with its version path.
	// Defaults to clerk.APIURL, https://api.clerk.com/v1. A URL with no path,
	// such as https://api.clerk.com (the form Clerk's JavaScript SDKs take
	// from CLERK_API_URL), gets /v1 added: without it every verification
	// would reach an unknown route, whose 404 reads as an unknown key.
	APIURL string

	// HTTPClient carries the SDK's calls to Clerk; it is passed to the SDK as
	// clerk.BackendConfig.HTTPClient. Defaults to a client of the verifier's
	// own, which keeps up to 32 idle connections to Clerk where Go's default
	// keeps 2, is bounded by Timeout alone, and whose idle connections Close
	// releases.
	HTTPClient *http.Client

	// Timeout bounds each call to Clerk; a call that takes longer is a fault,
	// and the request it serves is refused. Defaults to DefaultTimeout, 3s.
	Timeout time.Duration

	// CacheTTL is how long Clerk's answer that a credential is valid is
	// reused without asking again. Defaults to DefaultCacheTTL, 30s: a
	// credential revoked in Clerk keeps working for up to that long unless
	// Purge or PurgeSubject is called. A credential that expires sooner is
	// cached only until it expires.
	CacheTTL time.Duration

	// NegativeCacheTTL is how long a rejection (unknown, revoked or expired
	// credential) is reused. It is at most CacheTTL, and shorter by default,
	// so that a key just created in Clerk works soon, while a client retrying
	// a bad key in a loop costs one Clerk call per interval. Defaults to
	// DefaultNegativeCacheTTL, 5s, or to CacheTTL when that is shorter.
	//
	// A negative value, such as NoNegativeCache, caches no rejection while
	// valid answers are still cached: every request with a bad credential
	// then costs a Clerk call and counts against Clerk's rate limit.
	NegativeCacheTTL time.Duration

	// CacheSize is the most valid credentials kept; beyond it the least
	// recently used is dropped. Rejections are kept apart, at most a quarter
	// as many, so that a flood of made-up credentials cannot push valid ones
	// out. Defaults to DefaultCacheSize, 10,000.
	CacheSize int

	// DisableCache makes every verification ask Clerk. Concurrent
	// verifications of one credential still share one call.
	DisableCache bool

	// Now is the clock of the cache and of expiry checks. Defaults to
	// time.Now.
	Now func() time.Time

	// Logger receives debug logs of Clerk's answers, with credential ids and
	// subjects, never secrets. Defaults to discarding them.
	Logger *slog.Logger
}

// ConfigFromEnv returns a VerifierConfig with SecretKey and APIURL read from
// CLERK_SECRET_KEY and CLERK_API_URL through getenv, such as os.Getenv. An
// unset CLERK_API_URL leaves the default, Clerk's own.
func ConfigFromEnv(getenv func(string) string) VerifierConfig {
	return VerifierConfig{SecretKey: getenv(EnvSecretKey), APIURL: getenv(EnvAPIURL)}
}

func (c VerifierConfig) withDefaults() VerifierConfig {
	if c.APIURL == "" {
		c.APIURL = clerk.APIURL
	}
	u, err := url.Parse(c.APIURL)
	if err == nil && u.Host != "" && (u.Path == "" || u.Path == "/") && u.RawQuery == "" {
		c.APIURL = strings.TrimSuffix(c.APIURL, "/") + "/" + clerkAPIVersionPath
	}
	if c.MachineSecretKey == "" {
		c.MachineSecretKey = c.SecretKey
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.CacheTTL == 0 {
		c.CacheTTL = DefaultCacheTTL
	}
	if c.NegativeCacheTTL == 0 {
		c.NegativeCacheTTL = min(DefaultNegativeCacheTTL, c.CacheTTL)
	}
	if c.CacheSize == 0 {
		c.CacheSize = DefaultCacheSize
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

func (c VerifierConfig) validate() error {
	if c.SecretKey == "" {
		return errors.New("config: SecretKey is required: the Clerk instance's secret key, " +
			"such as " + EnvSecretKey + " holds")
	}
	if u, err := url.Parse(c.APIURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") ||
		u.Host == "" {
		return fmt.Errorf("config: APIURL %q must be an absolute http or https URL", c.APIURL)
	}
	switch {
	case c.Timeout < 0:
		return errors.New("config: Timeout must not be negative")
	case c.CacheTTL < 0:
		return errors.New("config: CacheTTL must not be negative")
	case c.NegativeCacheTTL > c.CacheTTL:
		return fmt.Errorf("config: NegativeCacheTTL %s must not exceed CacheTTL %s",
			c.NegativeCacheTTL, c.CacheTTL)
	case c.CacheSize < 0:
		return errors.New("config: CacheSize must not be negative")
	}
	return nil
}

// Verifier verifies Clerk API keys and M2M tokens with Clerk's Backend API,
// through clerk-sdk-go, and caches the answers. It is safe for concurrent use;
// share one per Clerk instance, so that all middlewares share its cache.
//
// Each credential is cached under the SHA-256 hash of its secret; secrets are
// never stored, logged or put in errors. Concurrent verifications of one
// credential make one call to Clerk. Only Clerk's answers are cached: a fault
// (Clerk 5xx or 429, a timeout, a network error) is returned to every caller
// waiting for that call and forgotten, so the next request asks again.
type Verifier struct {
	cfg       VerifierConfig
	apiKeys   *apikey.Client
	m2mTokens *m2m_token.Client
	cache     *cache
	calls     singleflight.Group

	hits, misses, clerkCalls atomic.Uint64

	// transport is the transport of the verifier's own HTTP client, nil when
	// the config gave one.
	transport *http.Transport
}

// NewVerifier returns a Verifier configured by cfg.
func NewVerifier(cfg VerifierConfig) (*Verifier, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}

	v := &Verifier{cfg: cfg}
	client := cfg.HTTPClient
	if client == nil {
		client, v.transport = newHTTPClient()
	}
	backend := func(key string) *clerk.ClientConfig {
		return &clerk.ClientConfig{BackendConfig: clerk.BackendConfig{
			HTTPClient: client,
			URL:        clerk.String(cfg.APIURL),
			Key:        clerk.String(key),
		}}
	}
	v.apiKeys = apikey.NewClient(backend(cfg.SecretKey))
	v.m2mTokens = m2m_token.NewClient(backend(cfg.MachineSecretKey))

	size, rejected := cfg.CacheSize, max(cfg.CacheSize/4, 1)
	if cfg.NegativeCacheTTL < 0 {
		rejected = 0
	}
	if cfg.DisableCache {
		size, rejected = 0, 0
	}
	v.cache = newCache(size, rejected)
	return v, nil
}

// newHTTPClient returns the client the SDK's backend makes its calls with
// when the config gives none. The requests, their parameters and the errors
// stay the SDK's; only the connections are ours, for two reasons.
//
// Keep-alive under load: every call of a verifier goes to one host, and
// http.DefaultTransport, which the SDK's default client uses, keeps at most 2
// idle connections per host (net/http's DefaultMaxIdleConnsPerHost). When
// more verifications than that are in flight, as when many new customers
// arrive at once, each further call would open a connection, with a TLS
// handshake to api.clerk.com, and close it afterwards. Clerk's production
// rate limit, 100 calls a second at tens of milliseconds each, keeps a few
// connections busy; 32 leave room for bursts.
//
// One timeout: the SDK's default client (clerk.go, defaultHTTPClient) cuts
// every call at 5 seconds, which would silently cap a longer
// VerifierConfig.Timeout. This client has none; Timeout, applied to each
// call's context, is the only bound.
func newHTTPClient() (*http.Client, *http.Transport) {
	t, ok := http.DefaultTransport.(*http.Transport)
	if !ok {
		return &http.Client{}, nil
	}
	t = t.Clone()
	t.MaxIdleConnsPerHost = 32
	return &http.Client{Transport: t}, t
}

// Close releases the idle connections of the verifier's own HTTP client. A
// verification after Close opens new ones.
func (v *Verifier) Close() {
	if v.transport != nil {
		v.transport.CloseIdleConnections()
	}
}

// APIKeyVerification is Clerk's answer about an API key.
type APIKeyVerification struct {
	// APIKey is the key as Clerk describes it, or nil when Clerk does not
	// know the secret. It may be shared with other requests through the
	// cache and must not be modified. Its Response is nil.
	APIKey *clerk.APIKey
	// Reason is empty for a valid key, and otherwise ReasonInvalidKey (Clerk
	// does not know the secret), ReasonRevoked or ReasonExpired.
	Reason agentkey.Reason
}

// OK reports whether the key is valid.
func (v APIKeyVerification) OK() bool { return v.Reason == "" }

// M2MTokenVerification is Clerk's answer about a machine-to-machine token.
type M2MTokenVerification struct {
	// M2MToken is the token as Clerk describes it, or nil when Clerk does not
	// know it. It may be shared with other requests through the cache and
	// must not be modified. Its Response is nil.
	M2MToken *clerk.M2MToken
	// Reason is empty for a valid token, and otherwise ReasonInvalidKey,
	// ReasonRevoked or ReasonExpired.
	Reason agentkey.Reason
}

// OK reports whether the token is valid.
func (v M2MTokenVerification) OK() bool { return v.Reason == "" }

// VerifyAPIKey verifies an API key's secret with Clerk (POST
// /api_keys/verify), or answers from the cache. A secret Clerk does not know
// (400 or 404) and a key it reports revoked or expired are rejections, with
// a Reason; an error is a fault, such as Clerk failing, rate limiting or not
// answering within the timeout, and the caller must refuse the request.
func (v *Verifier) VerifyAPIKey(ctx context.Context, secret string) (APIKeyVerification, error) {
	d, err := v.verify(ctx, kindAPIKey, secret)
	if err != nil {
		return APIKeyVerification{}, err
	}
	k, _ := d.object.(*clerk.APIKey)
	return APIKeyVerification{APIKey: k, Reason: d.reason}, nil
}

// VerifyM2MToken verifies a machine-to-machine token with Clerk (POST
// /m2m_tokens/verify), or answers from the cache, as VerifyAPIKey does for
// API keys.
func (v *Verifier) VerifyM2MToken(ctx context.Context, token string) (M2MTokenVerification, error) {
	d, err := v.verify(ctx, kindM2MToken, token)
	if err != nil {
		return M2MTokenVerification{}, err
	}
	t, _ := d.object.(*clerk.M2MToken)
	return M2MTokenVerification{M2MToken: t, Reason: d.reason}, nil
}

// CacheStats counts the verifier's work since it was made.
type CacheStats struct {
	// Hits are verifications answered from the cache.
	Hits uint64
	// Misses are verifications the cache could not answer; concurrent misses
	// of one credential share one Clerk call.
	Misses uint64
	// ClerkCalls are the calls made to Clerk's Backend API.
	ClerkCalls uint64
}

// Stats returns the verifier's cache statistics, for metrics.
func (v *Verifier) Stats() CacheStats {
	return CacheStats{Hits: v.hits.Load(), Misses: v.misses.Load(), ClerkCalls: v.clerkCalls.Load()}
}

// Purge forgets what the cache knows of credential, an API key's secret or
// an M2M token, so that its next use asks Clerk. It takes effect at once: a
// verification already in flight does not put its answer back.
func (v *Verifier) Purge(credential string) {
	v.cache.remove(newCacheKey(kindAPIKey, credential), newCacheKey(kindM2MToken, credential))
}

// PurgeSubject forgets every cached credential of subject (a user_, org_ or
// mch_ id), for example after revoking its keys in Clerk. It takes effect at
// once, as Purge does.
func (v *Verifier) PurgeSubject(subject string) {
	v.cache.removeSubject(subject)
}

// verify returns the verdict on credential from the cache, or from Clerk
// through one call shared by all concurrent callers.
func (v *Verifier) verify(ctx context.Context, kind credentialKind, credential string,
) (verdict, error) {
	k := newCacheKey(kind, credential)
	if d, ok := v.cache.get(k, v.cfg.Now()); ok {
		v.hits.Add(1)
		return d, nil
	}
	v.misses.Add(1)

	// The generation is part of the call's key so that, after a purge, a new
	// request does not join a call that started before it.
	gen := v.cache.generation()
	ch := v.calls.DoChan(flightKey(k, gen), func() (any, error) {
		// A caller that missed the cache just before an earlier call stored
		// its answer starts a call of its own; look again so that it does
		// not ask Clerk a second time.
		if d, ok := v.cache.get(k, v.cfg.Now()); ok {
			return d, nil
		}
		v.clerkCalls.Add(1)
		return v.ask(ctx, kind, credential, k, gen)
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return verdict{}, res.Err
		}
		return res.Val.(verdict), nil
	case <-ctx.Done():
		return verdict{}, fmt.Errorf("verify %s: %w", kind, context.Cause(ctx))
	}
}

// flightKey names the call for one credential in one cache generation.
func flightKey(k cacheKey, gen uint64) string {
	b := make([]byte, 0, 1+len(k.hash)+8)
	b = append(b, byte(k.kind))
	b = append(b, k.hash[:]...)
	for i := range 8 {
		b = append(b, byte(gen>>(8*i)))
	}
	return string(b)
}

// ask calls Clerk, classifies its answer and caches it unless it is a fault.
//
// The call runs under its own timeout and ignores the cancellation of ctx,
// the context of the first request that needed it, because other requests
// may be waiting for its answer; each of them stops waiting when its own
// context ends.
func (v *Verifier) ask(ctx context.Context, kind credentialKind, credential string,
	k cacheKey, gen uint64,
) (verdict, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), v.cfg.Timeout)
	defer cancel()

	var (
		d          verdict
		expiration *int64
		err        error
	)
	switch kind {
	case kindAPIKey:
		d, expiration, err = v.askAPIKey(ctx, credential)
	case kindM2MToken:
		d, expiration, err = v.askM2MToken(ctx, credential)
	}

	switch {
	case rejected(err):
		d = verdict{reason: agentkey.ReasonInvalidKey}
	case err != nil:
		return verdict{}, fmt.Errorf("verify %s with clerk: %w", kind, v.sdkError(err, credential))
	case d.subject == "":
		return verdict{}, fmt.Errorf("verify %s with clerk: answer has no subject", kind)
	}
	v.cfg.Logger.DebugContext(ctx, "clerk verified "+kind.String(),
		logClerkID, clerkID(d.object), logSubject, d.subject, logReason, d.reason)

	now := v.cfg.Now()
	expires := now.Add(v.cfg.NegativeCacheTTL)
	if d.reason == "" {
		expires = now.Add(v.cfg.CacheTTL)
		if expiration != nil {
			expires = minTime(expires, time.UnixMilli(*expiration))
		}
	}
	v.cache.add(k, d, expires, gen)
	return d, nil
}

func (v *Verifier) askAPIKey(ctx context.Context, secret string) (verdict, *int64, error) {
	k, err := v.apiKeys.Verify(ctx, &apikey.VerifyParams{Secret: secret})
	if err != nil {
		return verdict{}, nil, err
	}
	k.Response = nil // not worth keeping in the cache
	reason := v.reason(k.Revoked, k.Expired, k.Expiration)
	return verdict{object: k, subject: k.Subject, reason: reason}, k.Expiration, nil
}

func (v *Verifier) askM2MToken(ctx context.Context, token string) (verdict, *int64, error) {
	t, err := v.m2mTokens.Verify(ctx, &m2m_token.VerifyParams{Token: token})
	if err != nil {
		return verdict{}, nil, err
	}
	t.Response = nil
	reason := v.reason(t.Revoked, t.Expired, t.Expiration)
	return verdict{object: t, subject: t.Subject, reason: reason}, t.Expiration, nil
}

// reason classifies a credential that Clerk knows. A credential past its
// expiration is expired by our clock too, even if Clerk's flag says otherwise.
func (v *Verifier) reason(revoked, expired bool, expiration *int64) agentkey.Reason {
	switch {
	case revoked:
		return agentkey.ReasonRevoked
	case expired || expiration != nil && v.cfg.Now().UnixMilli() >= *expiration:
		return agentkey.ReasonExpired
	}
	return ""
}

// rejected reports whether err is Clerk's answer that it does not know the
// credential: 404, or 400 for a secret it cannot even parse. Every other
// error, Clerk's 401 to a wrong instance key included, is a fault.
func rejected(err error) bool {
	var apiErr *clerk.APIErrorResponse
	if !errors.As(err, &apiErr) {
		return false
	}
	return apiErr.HTTPStatusCode == http.StatusNotFound ||
		apiErr.HTTPStatusCode == http.StatusBadRequest
}

// maxErrorText bounds, in bytes, the text kept of an SDK error that is not
// Clerk's error answer.
const maxErrorText = 200

// sdkError returns err, an error of the SDK's Verify, fit to be wrapped into
// the verifier's error and logged.
//
// Clerk's error answer, a *clerk.APIErrorResponse, is returned as it is. But
// an answer whose body is not Clerk's error JSON, such as the HTML page of a
// proxy or load balancer in front of Clerk, comes back from the SDK as
// errors.New(string(body)) (clerk-sdk-go, clerk.go, handleError): unbounded,
// many lines long, and holding whatever the server echoed. So the text of
// every other error is cut to one line of at most maxErrorText bytes, with
// the credential and the secret keys blanked out in case a server echoed
// them. An error whose text had to change keeps its chain for errors.Is and
// errors.As, unless the chain holds a secret, or is only the SDK's raw body.
func (v *Verifier) sdkError(err error, credential string) error {
	var apiErr *clerk.APIErrorResponse
	if errors.As(err, &apiErr) {
		return err
	}

	raw := err.Error()
	text := raw
	for _, secret := range []string{credential, v.cfg.SecretKey, v.cfg.MachineSecretKey} {
		if secret != "" {
			text = strings.ReplaceAll(text, secret, "[redacted]")
		}
	}
	secretSeen := text != raw
	text = oneLine(text, maxErrorText)
	switch {
	case text == raw:
		return err
	case errors.Unwrap(err) == nil:
		return &boundedError{text: "unexpected answer: " + text}
	case secretSeen:
		return &boundedError{text: text}
	}
	return &boundedError{text: text, err: err}
}

// boundedError is an SDK error with its text cut by sdkError.
type boundedError struct {
	text string
	err  error // nil when only the text was worth keeping
}

func (e *boundedError) Error() string { return e.text }
func (e *boundedError) Unwrap() error { return e.err }

// oneLine returns s with every run of spaces and control characters made one
// space, cut to at most n bytes on a character boundary, "..." marking a cut.
func oneLine(s string, n int) string {
	var b strings.Builder
	space := false
	for _, r := range s {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			space = true
			continue
		}
		sep := ""
		if space && b.Len() > 0 {
			sep = " "
		}
		if b.Len()+len(sep)+utf8.RuneLen(r) > n {
			return b.String() + "..."
		}
		b.WriteString(sep)
		b.WriteRune(r)
		space = false
	}
	return b.String()
}

// clerkID returns the id of a verified Clerk object, for logs.
func clerkID(object any) string {
	switch o := object.(type) {
	case *clerk.APIKey:
		return o.ID
	case *clerk.M2MToken:
		return o.ID
	}
	return ""
}

func (k credentialKind) String() string {
	if k == kindM2MToken {
		return "m2m token"
	}
	return "api key"
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
