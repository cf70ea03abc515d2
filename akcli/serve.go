package akcli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/agentkey-go/agentkey"
	"github.com/agentkey-go/agentkey/akclerk"
	"github.com/agentkey-go/agentkey/akserver"
)

// serveSettings are the settings of "agentkey serve".
type serveSettings struct {
	addr            string
	holdTTL         time.Duration
	maxHoldTTL      time.Duration
	sweepInterval   time.Duration
	shutdownTimeout time.Duration
	maxBodyBytes    int64
	tokenCacheTTL   time.Duration
	http            httpTimeouts

	clerkSecretKey     string
	clerkMachineKey    string
	clerkAPIURL        string
	clerkScopes        []string
	clerkBudgets       []string
	clerkTimeout       time.Duration
	clerkCacheTTL      time.Duration
	clerkNegativeTTL   time.Duration
	clerkCacheSize     int
	clerkCacheDisabled bool

	selfServeOff   bool
	signupScopes   []string
	signupBudgets  []string
	signupExpiry   time.Duration
	signupRate     int
	clientIPHeader string
}

// httpTimeouts are the HTTP server's timeouts. A request's headers must
// arrive within readHeader and its body within read, which keeps slow
// clients from holding connections; write is long because a CSV export of
// the ledger streams every page in one response.
type httpTimeouts struct {
	readHeader, read, write, idle time.Duration
}

// defaultHTTPTimeouts are the defaults of the --*-timeout flags.
var defaultHTTPTimeouts = httpTimeouts{
	readHeader: 10 * time.Second,
	read:       time.Minute,
	write:      10 * time.Minute,
	idle:       2 * time.Minute,
}

func (s *serveSettings) register(fs *pflag.FlagSet) {
	fs.StringVar(&s.addr, "addr", ":8080", "address to listen on; port 0 picks a free port")
	setting(fs, "addr", "AGENTKEY_ADDR")
	durationFlag(fs, &s.holdTTL, 5*time.Minute, "hold-ttl", "AGENTKEY_HOLD_TTL",
		"how long a hold lives unsettled before it is released, unless a request says")
	durationFlag(fs, &s.maxHoldTTL, akserver.DefaultMaxHoldTTL, "max-hold-ttl",
		"AGENTKEY_MAX_HOLD_TTL", "longest hold_ttl a request of the decision API may ask for")
	durationFlag(fs, &s.sweepInterval, 30*time.Second, "sweep-interval",
		"AGENTKEY_SWEEP_INTERVAL", "how often expired holds are released")
	durationFlag(fs, &s.shutdownTimeout, 30*time.Second, "shutdown-timeout",
		"AGENTKEY_SHUTDOWN_TIMEOUT",
		"how long requests in flight may take to finish after SIGINT or SIGTERM")
	fs.Int64Var(&s.maxBodyBytes, "max-body-bytes", 64<<10, "largest request body; larger get 413")
	setting(fs, "max-body-bytes", "AGENTKEY_MAX_BODY_BYTES")
	s.tokenCacheTTL = akserver.DefaultServiceTokenTTL
	fs.Var(durationValue{d: &s.tokenCacheTTL, zero: true}, "service-token-cache-ttl",
		"how long a verified service token is trusted without reading the database; "+
			"a token revoked through another process works that long. 0 turns the cache off")
	setting(fs, "service-token-cache-ttl", "AGENTKEY_SERVICE_TOKEN_CACHE_TTL")

	d := defaultHTTPTimeouts
	durationFlag(fs, &s.http.readHeader, d.readHeader, "read-header-timeout",
		"AGENTKEY_READ_HEADER_TIMEOUT", "how long a client may take to send a request's headers")
	durationFlag(fs, &s.http.read, d.read, "read-timeout", "AGENTKEY_READ_TIMEOUT",
		"how long a client may take to send a whole request")
	durationFlag(fs, &s.http.write, d.write, "write-timeout", "AGENTKEY_WRITE_TIMEOUT",
		"how long an answer may take, from the end of the request's headers; "+
			"long enough for a CSV export of the ledger")
	durationFlag(fs, &s.http.idle, d.idle, "idle-timeout", "AGENTKEY_IDLE_TIMEOUT",
		"how long a keep-alive connection may wait for its next request")

	s.registerClerk(fs)

	fs.BoolVar(&s.selfServeOff, "disable-self-serve", false,
		"turn off the self-serve routes (/signup, /sdk-keys)")
	setting(fs, "disable-self-serve", "AGENTKEY_DISABLE_SELF_SERVE")
	fs.StringSliceVar(&s.signupScopes, "signup-scopes", nil,
		"comma-separated scopes of the keys POST /signup mints (default: none)")
	setting(fs, "signup-scopes", "AGENTKEY_SIGNUP_SCOPES")
	fs.StringSliceVar(&s.signupBudgets, "signup-budget", nil,
		"limits of each signup's account, as AMOUNT/PERIOD, or \"none\" for no limit "+
			"(default 1/day)")
	setting(fs, "signup-budget", "AGENTKEY_SIGNUP_BUDGET")
	durationFlag(fs, &s.signupExpiry, 24*time.Hour, "signup-expiry", "AGENTKEY_SIGNUP_EXPIRY",
		"how long a signup key lives")
	fs.IntVar(&s.signupRate, "signup-rate", 10,
		"signups per client address per hour, counted in this process; -1 for no limit")
	setting(fs, "signup-rate", "AGENTKEY_SIGNUP_RATE")
	fs.StringVar(&s.clientIPHeader, "client-ip-header", "",
		"header in which a reverse proxy in front gives the client's address, such as "+
			"X-Forwarded-For (its last address counts), for --signup-rate (default: none, "+
			"the connection's address); set it only behind a proxy that always sets it")
	setting(fs, "client-ip-header", "AGENTKEY_CLIENT_IP_HEADER")
}

// registerClerk registers the settings of the Clerk verifier.
func (s *serveSettings) registerClerk(fs *pflag.FlagSet) {
	fs.StringVar(&s.clerkSecretKey, "clerk-secret-key", "",
		"Clerk secret key; enables Clerk API keys and M2M tokens in the decision API")
	setting(fs, "clerk-secret-key", akclerk.EnvSecretKey)
	fs.StringVar(&s.clerkMachineKey, "clerk-machine-secret-key", "",
		"a Clerk machine's secret key, to verify M2M tokens with instead of --clerk-secret-key")
	setting(fs, "clerk-machine-secret-key", envClerkMachineSecretKey)
	fs.StringVar(&s.clerkAPIURL, "clerk-api-url", "",
		"base URL of Clerk's Backend API (default https://api.clerk.com/v1)")
	setting(fs, "clerk-api-url", akclerk.EnvAPIURL)
	fs.StringSliceVar(&s.clerkScopes, "clerk-subject-scopes", nil,
		"comma-separated scopes of a Clerk subject seen for the first time (default: every scope)")
	setting(fs, "clerk-subject-scopes", "AGENTKEY_CLERK_SUBJECT_SCOPES")
	fs.StringSliceVar(&s.clerkBudgets, "clerk-subject-budget", nil,
		"limits of a Clerk subject seen for the first time, as AMOUNT/PERIOD (default: no limit)")
	setting(fs, "clerk-subject-budget", "AGENTKEY_CLERK_SUBJECT_BUDGET")
	durationFlag(fs, &s.clerkTimeout, akclerk.DefaultTimeout, "clerk-timeout",
		"AGENTKEY_CLERK_TIMEOUT", "longest wait for one answer of Clerk; past it, the request "+
			"is refused")
	durationFlag(fs, &s.clerkCacheTTL, akclerk.DefaultCacheTTL, "clerk-cache-ttl",
		"AGENTKEY_CLERK_CACHE_TTL", "how long Clerk's word that a credential is valid is reused; "+
			"a credential revoked in Clerk works that long unless purged")
	durationFlag(fs, &s.clerkNegativeTTL, akclerk.DefaultNegativeCacheTTL,
		"clerk-negative-cache-ttl", "AGENTKEY_CLERK_NEGATIVE_CACHE_TTL",
		"how long Clerk's refusal of a credential is reused; capped at --clerk-cache-ttl")
	fs.IntVar(&s.clerkCacheSize, "clerk-cache-size", akclerk.DefaultCacheSize,
		"most valid credentials the Clerk cache keeps (and a quarter as many refused ones)")
	setting(fs, "clerk-cache-size", "AGENTKEY_CLERK_CACHE_SIZE")
	fs.BoolVar(&s.clerkCacheDisabled, "clerk-disable-cache", false,
		"ask Clerk on every request (concurrent requests for one credential share a call)")
	setting(fs, "clerk-disable-cache", "AGENTKEY_CLERK_DISABLE_CACHE")
}

// envClerkMachineSecretKey holds a Clerk machine's secret key, as Clerk's
// own SDKs name it.
const envClerkMachineSecretKey = "CLERK_MACHINE_SECRET_KEY"

// durationFlag registers a positive duration flag with its default and the
// environment variable that also sets it.
func durationFlag(fs *pflag.FlagSet, d *time.Duration, def time.Duration, name, env,
	usage string,
) {
	*d = def
	fs.Var(durationValue{d: d}, name, usage)
	setting(fs, name, env)
}

// selfServeOptions returns the self-serve options the settings ask for.
func (s *serveSettings) selfServeOptions() (agentkey.SelfServeOptions, error) {
	opts := agentkey.SelfServeOptions{
		Disabled:     s.selfServeOff,
		SignupScopes: s.signupScopes,
		SignupExpiry: s.signupExpiry,
		SignupRate:   s.signupRate,
	}
	if h := strings.TrimSpace(s.clientIPHeader); h != "" {
		notToken := func(r rune) bool {
			return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' ||
				r == '-')
		}
		if strings.ContainsFunc(h, notToken) {
			return opts, usagef("--client-ip-header %q: want a header name such as X-Forwarded-For",
				h)
		}
		opts.ClientAddr = akserver.ClientAddrFromHeader(h)
	}
	switch {
	case s.signupRate == 0 || s.signupRate < -1:
		return opts, usagef("--signup-rate %d: want a positive number, or -1 for no limit", s.signupRate)
	case len(s.signupBudgets) == 1 && strings.EqualFold(s.signupBudgets[0], "none"):
		opts.SignupBudgets = []agentkey.BudgetSpec{}
	case len(s.signupBudgets) > 0:
		var err error
		if opts.SignupBudgets, err = periodicBudgets("signup-budget", s.signupBudgets); err != nil {
			return opts, err
		}
	}
	return opts, nil
}

// clerkDefaults returns the row the settings give a new Clerk subject.
func (s *serveSettings) clerkDefaults() (agentkey.SubjectParams, error) {
	if s.clerkSecretKey == "" && (len(s.clerkScopes) > 0 || len(s.clerkBudgets) > 0) {
		return agentkey.SubjectParams{}, usagef("--clerk-subject-scopes and --clerk-subject-budget " +
			"need --clerk-secret-key")
	}
	budgets, err := periodicBudgets("clerk-subject-budget", s.clerkBudgets)
	if err != nil {
		return agentkey.SubjectParams{}, err
	}
	var scopes []string
	if len(s.clerkScopes) > 0 {
		scopes = s.clerkScopes
	}
	return agentkey.SubjectParams{Scopes: scopes, Budgets: budgets}, nil
}

// periodicBudgets parses the values of a budget flag that must name each
// budget's period, "AMOUNT/PERIOD".
func periodicBudgets(flag string, values []string) ([]agentkey.BudgetSpec, error) {
	var flags []budgetFlag
	for _, v := range values {
		if err := (budgetsValue{&flags}).Set(v); err != nil {
			return nil, usagef("--%s %q: %w", flag, v, err)
		}
	}
	var specs []agentkey.BudgetSpec
	for _, f := range flags {
		if f.period == "" {
			return nil, usagef("--%s %s: name the period, such as %s/day", flag, f.limit, f.limit)
		}
		specs = append(specs, agentkey.BudgetSpec{Limit: f.limit, Period: f.period})
	}
	return specs, nil
}

func (c *cli) serveCommand() *cobra.Command {
	var s serveSettings
	cmd := &cobra.Command{
		Use:   "serve [flags]",
		Short: "Run the HTTP server: admin API, decision API and self-serve routes",
		Long: `Run the HTTP server. It opens the database (the SQLite file of --db, or
PostgreSQL with --database-url), migrates it, and serves:

  /admin/v1/...   the admin API, behind the admin token
  /v1/...         the decision API (authorize, charge, settle, release), behind a
                  service token ("agentkey service-tokens create NAME")
  /signup, /sdk-keys...  the self-serve routes
  /healthz, /readyz, /metrics

On first start it prints an admin token, once; "agentkey admin-token rotate"
makes a new one. It prints "listening on URL" once it accepts connections.
SIGINT or SIGTERM stops it gracefully: requests in flight finish first.`,
		Example: `  agentkey serve
  DATABASE_URL=postgres://user:pass@db/agentkey agentkey serve --addr :9000 --log-format json`,
		Args: args(),
	}
	s.register(flagSet(cmd))
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		return c.serve(cmd.Context(), &s)
	}
	return cmd
}

func (c *cli) serve(ctx context.Context, s *serveSettings) error {
	selfServe, err := s.selfServeOptions()
	if err != nil {
		return err
	}
	if s.maxBodyBytes <= 0 {
		return usagef("--max-body-bytes %d: want a positive number", s.maxBodyBytes)
	}
	if err := s.checkClerk(); err != nil {
		return err
	}
	clerkDefaults, err := s.clerkDefaults()
	if err != nil {
		return err
	}

	a, err := c.open(ctx, func(cfg *agentkey.Config) { cfg.HoldTTL = s.holdTTL })
	if err != nil {
		return err
	}
	defer a.close()

	var verifier *akclerk.Verifier
	if s.clerkSecretKey != "" {
		verifier, err = akclerk.NewVerifier(akclerk.VerifierConfig{
			SecretKey:        s.clerkSecretKey,
			MachineSecretKey: s.clerkMachineKey,
			APIURL:           s.clerkAPIURL,
			Timeout:          s.clerkTimeout,
			CacheTTL:         s.clerkCacheTTL,
			NegativeCacheTTL: min(s.clerkNegativeTTL, s.clerkCacheTTL),
			CacheSize:        s.clerkCacheSize,
			DisableCache:     s.clerkCacheDisabled,
			Logger:           a.log,
		})
		if err != nil {
			return usagef("clerk: %w", err)
		}
		defer verifier.Close()
	}
	tokenTTL := s.tokenCacheTTL
	if tokenTTL == 0 {
		tokenTTL = -1 // akserver's "no cache"
	}
	srv, err := akserver.New(akserver.Config{
		Service:         a.svc,
		Clerk:           verifier,
		ClerkDefaults:   clerkDefaults,
		Logger:          a.log,
		SelfServe:       selfServe,
		MaxBodyBytes:    s.maxBodyBytes,
		MaxHoldTTL:      s.maxHoldTTL,
		ServiceTokenTTL: tokenTTL,
		Version:         version(),
	})
	if err != nil {
		return usageError{err}
	}

	// The token is printed before listening, so that it is not lost when
	// the port turns out to be taken: it exists from now on.
	token, created, err := akserver.EnsureAdminToken(ctx, a.store)
	if err != nil {
		return err
	}
	if created {
		fmt.Fprintf(c.stdout, "admin token: %s\n", token)
		fmt.Fprintln(c.stdout,
			"(shown once: store it now; \"agentkey admin-token rotate\" makes a new one)")
	}

	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	url := listenURL(ln.Addr())
	a.log.InfoContext(ctx, "listening", "url", url, "version", version(),
		"database", c.global.database())
	fmt.Fprintf(c.stdout, "listening on %s\n", url)

	// The sweeper outlives the signal until the last request has finished,
	// so that it never races a shutdown.
	sweepCtx, stopSweep := context.WithCancel(context.WithoutCancel(ctx))
	swept := make(chan struct{})
	go func() {
		defer close(swept)
		a.svc.RunSweeper(sweepCtx, s.sweepInterval)
	}()
	defer func() {
		stopSweep()
		<-swept
	}()

	return serveHTTP(ctx, ln, srv.Handler(), a.log, s.http, s.shutdownTimeout)
}

// checkClerk refuses Clerk settings without a Clerk secret key, which would
// otherwise be ignored, and a cache size that is not positive.
func (s *serveSettings) checkClerk() error {
	if s.clerkSecretKey != "" {
		if s.clerkCacheSize < 1 {
			return usagef("--clerk-cache-size %d: want a positive number", s.clerkCacheSize)
		}
		return nil
	}
	for _, f := range []struct {
		name string
		set  bool
	}{
		{"clerk-api-url", s.clerkAPIURL != ""},
		{"clerk-machine-secret-key", s.clerkMachineKey != ""},
		{"clerk-disable-cache", s.clerkCacheDisabled},
	} {
		if f.set {
			return usagef("--%s needs --clerk-secret-key", f.name)
		}
	}
	return nil
}

// serveHTTP serves h on ln until ctx is done, then shuts down gracefully:
// it stops accepting connections and waits up to grace for the requests in
// flight to finish. Requests are not canceled by ctx.
func serveHTTP(ctx context.Context, ln net.Listener, h http.Handler, log *slog.Logger,
	timeouts httpTimeouts, grace time.Duration,
) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: timeouts.readHeader,
		ReadTimeout:       timeouts.read,
		WriteTimeout:      timeouts.write,
		IdleTimeout:       timeouts.idle,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}

	log.Info("shutting down: waiting for requests in flight", "grace", grace.String())
	shutdownCtx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	err := srv.Shutdown(shutdownCtx)
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	if err != nil {
		_ = srv.Close()
		return fmt.Errorf("shutdown: requests still in flight after %s were cut off", grace)
	}
	log.Info("stopped")
	return nil
}

// listenURL returns the URL at which a listener on addr is reached; an
// unspecified address (":8080") is reached at localhost.
func listenURL(addr net.Addr) string {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok {
		return "http://" + addr.String()
	}
	host := tcp.IP.String()
	if tcp.IP == nil || tcp.IP.IsUnspecified() {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, fmt.Sprint(tcp.Port))
}

// database describes the database for a log line, without credentials.
func (g *globalSettings) database() string {
	if g.databaseURL == "" {
		return "sqlite " + g.db
	}
	return "postgresql"
}
