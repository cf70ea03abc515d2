package aksqlite_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/agentkey-go/agentkey"
	"github.com/agentkey-go/agentkey/aksqlite"
)

// Open a database file, migrate it, and run a Service on it.
func Example() {
	dir, err := os.MkdirTemp("", "agentkey-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	ctx := context.Background()
	store, err := aksqlite.Open(filepath.Join(dir, "agentkey.db"), aksqlite.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	if err := store.Migrate(ctx); err != nil {
		log.Fatal(err)
	}

	svc, err := agentkey.New(store, agentkey.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer svc.Close(ctx)

	key, err := svc.CreateKey(ctx, agentkey.CreateKeyParams{
		AccountID: "acct_1",
		Budgets:   []agentkey.BudgetSpec{{Limit: 5 * agentkey.Dollar, Period: agentkey.PeriodMonth}},
	})
	if err != nil {
		log.Fatal(err)
	}
	res, err := svc.TrackUsage(ctx, key.Secret, 1234*agentkey.Microunit)
	if err != nil {
		log.Fatal(err)
	}
	remaining, _ := res.Key.Remaining()
	fmt.Println(res.OK(), res.Charged, remaining)
	// Output: true 0.001234 4.998766
}
