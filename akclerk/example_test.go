package akclerk_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"

	"github.com/clerk/clerk-sdk-go/v2"

	"github.com/agentkey-go/agentkey"
	"github.com/agentkey-go/agentkey/akclerk"
	"github.com/agentkey-go/agentkey/akpostgres"
	"github.com/agentkey-go/agentkey/aksqlite"
	"github.com/agentkey-go/agentkey/internal/clerkemu"
)

// The setup of a real service, as the package documentation shows it:
// ConfigFromEnv reads CLERK_SECRET_KEY and CLERK_API_URL, the budgets live in
// PostgreSQL, and each customer gets $50 a month the first time one of its
// keys is seen. It talks to Clerk itself, so it is compiled but not run here;
// the examples that run use an emulator of Clerk's Backend API instead.
func ExampleAPIKeyMiddleware() {
	ctx := context.Background()
	verifier, err := akclerk.NewVerifier(akclerk.ConfigFromEnv(os.Getenv))
	if err != nil {
		log.Fatal(err)
	}
	defer verifier.Close()

	store, err := akpostgres.Open(ctx, os.Getenv("DATABASE_URL"), akpostgres.Config{})
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

	protect := akclerk.APIKeyMiddleware(akclerk.APIKeyOptions{
		Service:  svc,
		Verifier: verifier,
		Scope:    "proxy.chat",
		// The row created the first time each customer is seen.
		Defaults: agentkey.SubjectParams{
			Scopes: []string{"proxy.chat"},
			Budgets: []agentkey.BudgetSpec{
				{Limit: 50 * agentkey.Dollar, Period: agentkey.PeriodMonth},
			},
		},
	})
	chat := func(w http.ResponseWriter, r *http.Request) {
		cost := 2 * agentkey.Cent // after the billable work: what it cost
		res, err := agentkey.Charge(r.Context(), cost)
		if err != nil || !res.OK() {
			http.Error(w, "not billed", http.StatusTooManyRequests)
			return
		}
		fmt.Fprintln(w, "charged", res.Charged)
	}
	mux := http.NewServeMux()
	mux.Handle("POST /api/chat", protect(http.HandlerFunc(chat)))
	err = http.ListenAndServe(":8080", mux) // returns only on failure
	log.Print(err)
}

// The quick start: customers call POST /api/chat with their Clerk API key;
// each customer gets a monthly budget the first time it is seen, from a plan
// tier in the key's claims, and is charged after each call. An emulator of
// Clerk's Backend API, internal to this module, stands in for Clerk.
func Example() {
	ctx := context.Background()

	// An emulator of Clerk's Backend API stands in for https://api.clerk.com/v1.
	emu := clerkemu.New("sk_test_example")
	defer emu.Close()
	emu.AddAPIKey("ak_customer_secret", clerkemu.APIKey{
		Subject: "user_2abc", Claims: json.RawMessage(`{"tier":"pro"}`),
	})

	svc, done := exampleService(ctx)
	defer done()
	// Against Clerk: akclerk.NewVerifier(akclerk.ConfigFromEnv(os.Getenv)).
	verifier, err := akclerk.NewVerifier(akclerk.VerifierConfig{
		SecretKey: emu.SecretKey(), APIURL: emu.URL(),
	})
	check(err)
	defer verifier.Close()

	protect := akclerk.APIKeyMiddleware(akclerk.APIKeyOptions{
		Service:  svc,
		Verifier: verifier,
		Scope:    "proxy.chat",
		OnFirstSeen: func(k *clerk.APIKey) agentkey.SubjectParams {
			var claims struct{ Tier string }
			_ = json.Unmarshal(k.Claims, &claims)
			limit := 20 * agentkey.Dollar
			if claims.Tier == "pro" {
				limit = 200 * agentkey.Dollar
			}
			return agentkey.SubjectParams{
				Scopes:  []string{"proxy.chat"},
				Budgets: []agentkey.BudgetSpec{{Limit: limit, Period: agentkey.PeriodMonth}},
			}
		},
	})
	chat := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cost := 2 * agentkey.Cent // what the model call cost
		key, _ := akclerk.APIKeyFromContext(r.Context())
		res, err := akclerk.TrackByAPIKey(r.Context(), svc, key.Subject, cost)
		if err != nil || !res.OK() {
			http.Error(w, "not billed", http.StatusTooManyRequests)
			return
		}
		remaining, _ := res.Key.Remaining()
		fmt.Fprintf(w, "charged %s to %s, %s left\n", res.Charged, key.Subject, remaining)
	})
	h := protect(chat)

	for _, auth := range []string{"Bearer ak_customer_secret", "Bearer ak_unknown", ""} {
		req := httptest.NewRequest(http.MethodPost, "/api/chat", nil)
		req.Header.Set("Authorization", auth)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		fmt.Print(rec.Code, " ", rec.Body.String())
	}
	// Output:
	// 200 charged 0.02 to user_2abc, 199.98 left
	// 401 {"error":"invalid_key","reason":"invalid_key"}
	// 401 {"error":"Missing API key"}
}

// Your own services authenticate with Clerk M2M tokens; the M2M middleware
// caps what each machine may spend.
func ExampleM2MMiddleware() {
	ctx := context.Background()
	emu := clerkemu.New("sk_test_example")
	defer emu.Close()
	emu.AddM2MToken("mt_worker_token", clerkemu.M2MToken{Subject: "mch_worker"})

	svc, done := exampleService(ctx)
	defer done()
	verifier, err := akclerk.NewVerifier(akclerk.VerifierConfig{
		SecretKey: emu.SecretKey(), APIURL: emu.URL(),
	})
	check(err)
	defer verifier.Close()

	protect := akclerk.M2MMiddleware(akclerk.M2MOptions{
		Service:  svc,
		Verifier: verifier,
		Defaults: agentkey.SubjectParams{
			Budgets: []agentkey.BudgetSpec{{Limit: 4 * agentkey.Cent, Period: agentkey.PeriodDay}},
		},
	})
	embed := protect(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, _ := akclerk.M2MTokenFromContext(r.Context())
		res, err := akclerk.TrackByM2M(r.Context(), svc, tok.Subject, 2*agentkey.Cent)
		check(err)
		fmt.Fprintln(w, tok.Subject, "charged", res.Charged)
	}))

	for range 3 {
		req := httptest.NewRequest(http.MethodPost, "/internal/embed", nil)
		req.Header.Set("Authorization", "Bearer mt_worker_token")
		rec := httptest.NewRecorder()
		embed.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			var body struct{ Error string }
			check(json.Unmarshal(rec.Body.Bytes(), &body))
			fmt.Println(rec.Code, body.Error)
			continue
		}
		fmt.Print(rec.Code, " ", rec.Body.String())
	}
	// Output:
	// 200 mch_worker charged 0.02
	// 200 mch_worker charged 0.02
	// 429 budget_exceeded
}

// A key revoked in Clerk is honoured within the cache's TTL; PurgeSubject,
// called for example from a Clerk webhook, makes it take effect at once.
func ExampleVerifier_PurgeSubject() {
	ctx := context.Background()
	emu := clerkemu.New("sk_test_example")
	defer emu.Close()
	emu.AddAPIKey("ak_customer_secret", clerkemu.APIKey{Subject: "user_2abc"})

	verifier, err := akclerk.NewVerifier(akclerk.VerifierConfig{
		SecretKey: emu.SecretKey(), APIURL: emu.URL(),
	})
	check(err)
	defer verifier.Close()

	res, err := verifier.VerifyAPIKey(ctx, "ak_customer_secret")
	check(err)
	fmt.Println("before:", res.OK())

	emu.RevokeAPIKey("ak_customer_secret", "leaked")
	res, err = verifier.VerifyAPIKey(ctx, "ak_customer_secret")
	check(err)
	fmt.Println("revoked, cached:", res.OK())

	verifier.PurgeSubject("user_2abc")
	res, err = verifier.VerifyAPIKey(ctx, "ak_customer_secret")
	check(err)
	fmt.Println("revoked, purged:", res.OK(), res.Reason)
	// Output:
	// before: true
	// revoked, cached: true
	// revoked, purged: false revoked
}

// exampleService returns a service on a SQLite file in a temporary directory,
// and a function that closes and removes everything.
func exampleService(ctx context.Context) (*agentkey.Service, func()) {
	dir, err := os.MkdirTemp("", "akclerk-example")
	check(err)
	store, err := aksqlite.Open(filepath.Join(dir, "agentkey.db"), aksqlite.Config{})
	check(err)
	check(store.Migrate(ctx))
	svc, err := agentkey.New(store, agentkey.Config{})
	check(err)
	return svc, func() {
		_ = svc.Close(ctx)
		_ = store.Close()
		_ = os.RemoveAll(dir)
	}
}

func check(err error) {
	if err != nil {
		panic(err)
	}
}
