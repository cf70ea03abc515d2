// Command clerk is a paid API whose customers call it with the API keys they
// create in Clerk: POST /api/chat stands in for a model call, admitted only
// with a Clerk API key whose customer has budget left, and charged what the
// call cost. Each customer (the key's user_ or org_ subject) gets $50 a month
// for scope proxy.chat the first time one of its keys is seen.
//
//	go run ./examples/clerk -emulate   # against an in-process Clerk emulator
//	CLERK_SECRET_KEY=sk_test_... go run ./examples/clerk
//	curl -X POST -H "Authorization: Bearer <Clerk API key>" 'localhost:8080/api/chat?cost=2.5'
//
// Query parameters, as in examples/quickstart: cost, the call's cost in cents
// (decimal, default 1); max_cost, the most it may cost, held before the work
// (default: cost); and work_ms, how long the simulated call takes (default 0,
// at most 60000). With -charge-after, nothing is held: the budget is checked
// before the work and the cost charged after it with TrackByAPIKey, as in the
// reference's quick start.
//
// It reads CLERK_SECRET_KEY and CLERK_API_URL (default Clerk's own,
// https://api.clerk.com/v1); with -emulate it starts an emulator of Clerk's
// Backend API instead, registers a demo API key and prints it. It keeps its
// data in clerk-example.db (SQLite) unless DATABASE_URL names a PostgreSQL
// database, and listens on ADDR (default :8080).
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/agentkey-go/agentkey"
	"github.com/agentkey-go/agentkey/akclerk"
	"github.com/agentkey-go/agentkey/akpostgres"
	"github.com/agentkey-go/agentkey/aksqlite"
	"github.com/agentkey-go/agentkey/internal/clerkemu"
)

// demoSubject is the Clerk user that owns the emulated demo key.
const demoSubject = "user_demo"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Getenv); err != nil {
		fmt.Fprintln(os.Stderr, "clerk example:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer, getenv func(string) string) error {
	flags := flag.NewFlagSet("clerk", flag.ContinueOnError)
	emulate := flags.Bool("emulate", false,
		"start an emulator of Clerk's Backend API in process, with a demo API key")
	dbPath := flags.String("db", "clerk-example.db", "SQLite file, when DATABASE_URL is not set")
	chargeAfter := flags.Bool("charge-after", false,
		"check the budget before the work and charge after it, instead of holding max_cost first")
	if err := flags.Parse(args); err != nil {
		return err
	}

	cfg := akclerk.ConfigFromEnv(getenv)
	var demoSecret string
	if *emulate {
		emu := clerkemu.New("sk_test_emulator")
		defer emu.Close()
		demoSecret = "ak_demo_" + randomHex(16)
		emu.AddAPIKey(demoSecret, clerkemu.APIKey{Name: "demo", Subject: demoSubject})
		cfg.SecretKey, cfg.APIURL = emu.SecretKey(), emu.URL()
	}
	if cfg.SecretKey == "" {
		return fmt.Errorf("set %s to your Clerk secret key, or run with -emulate",
			akclerk.EnvSecretKey)
	}

	logger := slog.New(slog.NewTextHandler(stdout, nil))
	cfg.Logger = logger
	verifier, err := akclerk.NewVerifier(cfg)
	if err != nil {
		return err
	}
	defer verifier.Close()

	store, closeStore, err := openStore(ctx, getenv("DATABASE_URL"), *dbPath)
	if err != nil {
		return err
	}
	defer closeStore()
	svc, err := agentkey.New(store, agentkey.Config{Logger: logger})
	if err != nil {
		return err
	}
	defer svc.Close(context.Background())

	addr := getenv("ADDR")
	if addr == "" {
		addr = ":8080"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	logger.Info("listening", "addr", ln.Addr().String(), "clerk_api_url", cfg.APIURL)
	if demoSecret != "" {
		printDemo(stdout, ln.Addr(), demoSecret)
	}

	srv := &http.Server{
		Handler:           newHandler(svc, verifier, logger, *chargeAfter),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// printDemo prints the emulated demo key and a request that uses it.
func printDemo(w io.Writer, addr net.Addr, secret string) {
	host := "localhost"
	if a, ok := addr.(*net.TCPAddr); ok && !a.IP.IsUnspecified() {
		host = a.IP.String()
	}
	port := "8080"
	if a, ok := addr.(*net.TCPAddr); ok {
		port = fmt.Sprint(a.Port)
	}
	url := "http://" + net.JoinHostPort(host, port) + "/api/chat?cost=2.5"

	fmt.Fprintf(w, "\nClerk is emulated in process. Demo API key of %s:\n\n  %s\n\n",
		demoSubject, secret)
	fmt.Fprintf(w, "Try:\n\n  curl -s -X POST -H \"Authorization: Bearer %s\" '%s'\n\n",
		secret, url)
}

// openStore opens PostgreSQL when url is set and SQLite otherwise, and
// migrates it.
func openStore(ctx context.Context, url, path string) (agentkey.Store, func(), error) {
	if url != "" {
		store, err := akpostgres.Open(ctx, url, akpostgres.Config{})
		if err != nil {
			return nil, nil, err
		}
		if err := store.Migrate(ctx); err != nil {
			store.Close()
			return nil, nil, err
		}
		return store, store.Close, nil
	}

	store, err := aksqlite.Open(path, aksqlite.Config{})
	if err != nil {
		return nil, nil, err
	}
	if err := store.Migrate(ctx); err != nil {
		_ = store.Close()
		return nil, nil, err
	}
	return store, func() { _ = store.Close() }, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
