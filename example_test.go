package agentkey_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"

	"github.com/agentkey-go/agentkey"
	"github.com/agentkey-go/agentkey/aksqlite"
)

// openExampleService returns a service on a fresh SQLite file, and a function
// that closes both.
func openExampleService() (*agentkey.Service, func()) {
	dir, err := os.MkdirTemp("", "agentkey-example")
	if err != nil {
		log.Fatal(err)
	}
	store, err := aksqlite.Open(filepath.Join(dir, "agentkey.db"), aksqlite.Config{})
	if err != nil {
		log.Fatal(err)
	}
	if err := store.Migrate(context.Background()); err != nil {
		log.Fatal(err)
	}
	svc, err := agentkey.New(store, agentkey.Config{})
	if err != nil {
		log.Fatal(err)
	}
	return svc, func() {
		_ = svc.Close(context.Background())
		_ = store.Close()
		_ = os.RemoveAll(dir)
	}
}

// A key with a $10 monthly budget protects a route; the handler charges the
// cost of its work in one line.
func Example() {
	ctx := context.Background()
	svc, closeAll := openExampleService()
	defer closeAll()

	ck, err := svc.CreateKey(ctx, agentkey.CreateKeyParams{
		AccountID: "acct_1",
		Scopes:    []string{"proxy.chat"},
		Budgets:   []agentkey.BudgetSpec{{Limit: 10 * agentkey.Dollar, Period: agentkey.PeriodMonth}},
	})
	if err != nil {
		log.Fatal(err)
	}

	chat := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cost, _ := agentkey.ParseMoney("0.0004") // what the model call cost
		res, err := agentkey.Charge(r.Context(), cost)
		if err != nil || !res.OK() {
			http.Error(w, "not billed", http.StatusTooManyRequests)
			return
		}
		remaining, _ := res.Key.Remaining()
		fmt.Fprintf(w, "charged %s, %s left", res.Charged, remaining)
	})
	protected := svc.Middleware(agentkey.MiddlewareOptions{Scope: "proxy.chat"})(chat)

	req := httptest.NewRequest(http.MethodPost, "/api/chat", nil)
	req.Header.Set("Authorization", "Bearer "+ck.Secret)
	rec := httptest.NewRecorder()
	protected.ServeHTTP(rec, req)
	fmt.Println(rec.Code, rec.Body.String())

	req.Header.Del("Authorization")
	rec = httptest.NewRecorder()
	protected.ServeHTTP(rec, req)
	fmt.Print(rec.Code, " ", rec.Body.String())
	// Output:
	// 200 charged 0.0004, 9.9996 left
	// 401 {"error":"Missing API key"}
}

// Holding an estimate before the work and settling the real cost after it:
// concurrent requests can never together pass the limit.
func ExampleService_Reserve() {
	ctx := context.Background()
	svc, closeAll := openExampleService()
	defer closeAll()

	ck, err := svc.CreateKey(ctx, agentkey.CreateKeyParams{
		AccountID: "acct_1",
		Budgets:   []agentkey.BudgetSpec{{Limit: agentkey.Dollar}},
	})
	if err != nil {
		log.Fatal(err)
	}

	hold, err := svc.Reserve(ctx, ck.Key.ID, 80*agentkey.Cent)
	if err != nil {
		log.Fatal(err)
	}
	other, err := svc.Reserve(ctx, ck.Key.ID, 30*agentkey.Cent)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("second hold:", other.Reason)

	settled, err := svc.Settle(ctx, hold.Hold.ID, 35*agentkey.Cent)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("charged", settled.Charged, "released", settled.Released)
	// Output:
	// second hold: budget_exceeded
	// charged 0.35 released 0.45
}

// A team budget caps every key of the team together.
func ExampleService_CreateAccount() {
	ctx := context.Background()
	svc, closeAll := openExampleService()
	defer closeAll()

	for _, p := range []agentkey.AccountParams{
		{ID: "org_acme", Budgets: []agentkey.BudgetSpec{{Limit: 100 * agentkey.Dollar, Period: agentkey.PeriodMonth}}},
		{ID: "team_ml", ParentID: "org_acme", Budgets: []agentkey.BudgetSpec{{Limit: 5 * agentkey.Dollar, Period: agentkey.PeriodDay}}},
	} {
		if _, err := svc.CreateAccount(ctx, p); err != nil {
			log.Fatal(err)
		}
	}
	a, _ := svc.CreateKey(ctx, agentkey.CreateKeyParams{AccountID: "team_ml"})
	b, _ := svc.CreateKey(ctx, agentkey.CreateKeyParams{AccountID: "team_ml"})

	first, _ := svc.TrackUsage(ctx, a.Secret, 3*agentkey.Dollar)
	second, _ := svc.TrackUsage(ctx, b.Secret, 3*agentkey.Dollar)
	fmt.Println(first.OK(), second.Reason, second.RefusedBy.OwnerID, second.RefusedBy.Period)
	// Output:
	// true budget_exceeded team_ml day
}

func ExampleParseMoney() {
	for _, s := range []string{"12.50", "$0.0004", "1.2345678", "-1"} {
		m, err := agentkey.ParseMoney(s)
		fmt.Println(int64(m), err)
	}
	// Output:
	// 12500000 <nil>
	// 400 <nil>
	// 0 parse amount "1.2345678": amount has more than 6 decimals
	// 0 parse amount "-1": amount is negative
}
