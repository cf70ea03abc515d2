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

// The HTTP server's timeouts. A request's headers must arrive within
// readHeaderTimeout and its body within readTimeout, which keeps slow clients
// from holding connections; writeTimeout is long because a CSV export of the
// ledger streams every page in one response.
const (
	readHeaderTimeout = 10 * time.Second
	readTimeout       = time.Minute
	writeTimeout      = 10 * time.Minute
	idleTimeout       = 2 * time.Minute
)

// serveSettings are the settings of "agentkey serve".
type serveSettings struct {
	addr            string
	holdTTL         time.Duration
	sweepInterval   time.Duration
	shutdownTimeout time.Duration
	maxBodyBytes    int64

	clerkSecretKey string
	clerkAPIURL    string
	clerkScopes    []string
	clerkBudgets   []string

	selfServeOff  bool
	signupScopes  []string
	signupBudgets []string
	signupExpiry  time.Duration
	signupRate    int
}

func (s *serveSettings) register(fs *pflag.FlagSet) {
	fs.StringVar(&s.addr, "addr", ":8080", "address to listen on; port 0 picks a free port")
	setting(fs, "addr", "AGENTKEY_ADDR")
	s.holdTTL = 5 * time.Minute
	fs.Var(durationValue{d: &s.holdTTL}, "hold-ttl",
		"how long a hold lives unsettled before it is released, unless a request says")
	setting(fs, "hold-ttl", "AGENTKEY_HOLD_TTL")
	s.sweepInterval = 30 * time.Second
	fs.Var(durationValue{d: &s.sweepInterval}, "sweep-interval", "how often expired holds are released")
	setting(fs, "sweep-interval", "AGENTKEY_SWEEP_INTERVAL")
	s.shutdownTimeout = 30 * time.Second
	fs.Var(durationValue{d: &s.shutdownTimeout}, "shutdown-timeout",
		"how long requests in flight may take to finish after SIGINT or SIGTERM")
	setting(fs, "shutdown-timeout", "AGENTKEY_SHUTDOWN_TIMEOUT")
	fs.Int64Var(&s.maxBodyBytes, "max-body-bytes", 64<<10, "largest request body; larger get 413")
	setting(fs, "max-body-bytes", "AGENTKEY_MAX_BODY_BYTES")

	fs.StringVar(&s.clerkSecretKey, "clerk-secret-key", "",
		"Clerk secret key; enables Clerk API keys and M2M tokens in the decision API")
	setting(fs, "clerk-secret-key", akclerk.EnvSecretKey)
	fs.StringVar(&s.clerkAPIURL, "clerk-api-url", "",
		"base URL of Clerk's Backend API (default https://api.clerk.com/v1)")
	setting(fs, "clerk-api-url", akclerk.EnvAPIURL)
	fs.StringSliceVar(&s.clerkScopes, "clerk-subject-scopes", nil,
		"comma-separated scopes of a Clerk subject seen for the first time (default: every scope)")
	setting(fs, "clerk-subject-scopes", "AGENTKEY_CLERK_SUBJECT_SCOPES")
	fs.StringSliceVar(&s.clerkBudgets, "clerk-subject-budget", nil,
		"limits of a Clerk subject seen for the first time, as AMOUNT/PERIOD (default: no limit)")
	setting(fs, "clerk-subject-budget", "AGENTKEY_CLERK_SUBJECT_BUDGET")

	fs.BoolVar(&s.selfServeOff, "disable-self-serve", false,
		"turn off the self-serve routes (/signup, /sdk-keys)")
	setting(fs, "disable-self-serve", "AGENTKEY_DISABLE_SELF_SERVE")
	fs.StringSliceVar(&s.signupScopes, "signup-scopes", nil,
		"comma-separated scopes of the keys POST /signup mints (default: none)")
	setting(fs, "signup-scopes", "AGENTKEY_SIGNUP_SCOPES")
	fs.StringSliceVar(&s.signupBudgets, "signup-budget", nil,
		"limits of each signup's account, as AMOUNT/PERIOD, or \"none\" for no limit (default 1/day)")
	setting(fs, "signup-budget", "AGENTKEY_SIGNUP_BUDGET")
	s.signupExpiry = 24 * time.Hour
	fs.Var(durationValue{d: &s.signupExpiry}, "signup-expiry", "how long a signup key lives")
	setting(fs, "signup-expiry", "AGENTKEY_SIGNUP_EXPIRY")
	fs.IntVar(&s.signupRate, "signup-rate", 10,
		"signups per client address per hour; -1 for no limit")
	setting(fs, "signup-rate", "AGENTKEY_SIGNUP_RATE")
}

// selfServeOptions returns the self-serve options the settings ask for.
func (s *serveSettings) selfServeOptions() (agentkey.SelfServeOptions, error) {
	opts := agentkey.SelfServeOptions{
		Disabled:     s.selfServeOff,
		SignupScopes: s.signupScopes,
		SignupExpiry: s.signupExpiry,
		SignupRate:   s.signupRate,
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
	if s.clerkAPIURL != "" && s.clerkSecretKey == "" {
		return usagef("--clerk-api-url needs --clerk-secret-key")
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
			SecretKey: s.clerkSecretKey, APIURL: s.clerkAPIURL, Logger: a.log,
		})
		if err != nil {
			return usagef("clerk: %w", err)
		}
		defer verifier.Close()
	}
	srv, err := akserver.New(akserver.Config{
		Service:       a.svc,
		Clerk:         verifier,
		ClerkDefaults: clerkDefaults,
		Logger:        a.log,
		SelfServe:     selfServe,
		MaxBodyBytes:  s.maxBodyBytes,
		Version:       version(),
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

	return serveHTTP(ctx, ln, srv.Handler(), a.log, s.shutdownTimeout)
}

// serveHTTP serves h on ln until ctx is done, then shuts down gracefully:
// it stops accepting connections and waits up to grace for the requests in
// flight to finish. Requests are not canceled by ctx.
func serveHTTP(ctx context.Context, ln net.Listener, h http.Handler, log *slog.Logger,
	grace time.Duration,
) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
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
