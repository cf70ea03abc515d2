// Command quickstart is a paid API protected by agentkey: POST /api/chat
// stands in for a model call, admitted only with a key that has scope
// proxy.chat and budget left, and charged what the call cost.
//
//	go run ./examples/quickstart -new-key 10   # prints a key with a $10 monthly budget
//	go run ./examples/quickstart               # serves on :8080
//	curl -X POST -H "Authorization: Bearer ak_..." 'localhost:8080/api/chat?cost=2.5'
//
// Query parameters: cost, the call's cost in cents (decimal, default 1);
// max_cost, the most it may cost, held before the work (default: cost); and
// work_ms, how long the simulated call takes (default 0, at most 60000).
// With -charge-after, nothing is held: the budget is checked before the work
// and the cost charged after it.
//
// It keeps its data in quickstart.db (SQLite) unless DATABASE_URL names a
// PostgreSQL database, and listens on ADDR (default :8080; a port of 0 picks
// a free one, logged at start).
package main

import (
	"context"
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
	"github.com/agentkey-go/agentkey/akpostgres"
	"github.com/agentkey-go/agentkey/aksqlite"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Getenv); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer, getenv func(string) string) error {
	flags := flag.NewFlagSet("quickstart", flag.ContinueOnError)
	newKey := flags.String("new-key", "", "print a new key with this monthly budget in dollars, then exit")
	dbPath := flags.String("db", "quickstart.db", "SQLite file, when DATABASE_URL is not set")
	chargeAfter := flags.Bool("charge-after", false,
		"check the budget before the work and charge after it, instead of holding max_cost first")
	if err := flags.Parse(args); err != nil {
		return err
	}

	store, closeStore, err := openStore(ctx, getenv("DATABASE_URL"), *dbPath)
	if err != nil {
		return err
	}
	defer closeStore()

	logger := slog.New(slog.NewTextHandler(stdout, nil))
	svc, err := agentkey.New(store, agentkey.Config{Logger: logger})
	if err != nil {
		return err
	}
	defer svc.Close(context.Background())

	if *newKey != "" {
		return printNewKey(ctx, svc, *newKey, stdout)
	}

	addr := getenv("ADDR")
	if addr == "" {
		addr = ":8080"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: newHandler(svc, *chargeAfter), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	// The listener's address, so that a port of 0 shows the one chosen.
	logger.Info("listening", "addr", ln.Addr().String())
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
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
		store.Close()
		return nil, nil, err
	}
	return store, func() { store.Close() }, nil
}

func printNewKey(ctx context.Context, svc *agentkey.Service, dollars string, w io.Writer) error {
	limit, err := agentkey.ParseMoney(dollars)
	if err != nil {
		return fmt.Errorf("-new-key: %w", err)
	}
	ck, err := svc.CreateKey(ctx, agentkey.CreateKeyParams{
		AccountID: "acct_quickstart",
		Name:      "quickstart",
		Scopes:    []string{"proxy.chat"},
		Budgets:   []agentkey.BudgetSpec{{Limit: limit, Period: agentkey.PeriodMonth}},
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "%s\n", ck.Secret)
	return nil
}
