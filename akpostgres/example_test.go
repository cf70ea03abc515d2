package akpostgres_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/agentkey-go/agentkey"
	"github.com/agentkey-go/agentkey/akpostgres"
)

// Connect, migrate, and run a Service on PostgreSQL. The example needs a
// server, so it is compiled but not run.
func Example() {
	ctx := context.Background()
	store, err := akpostgres.Open(ctx, os.Getenv("DATABASE_URL"), akpostgres.Config{Schema: "billing"})
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
	fmt.Println(res.OK(), res.Charged)
}
