// Package akclerk puts agentkey's spend caps on the API keys that your
// customers create with Clerk, and on your own services' Clerk
// machine-to-machine (M2M) tokens. Clerk issues, verifies and revokes the
// credential; agentkey caps what its subject may spend, scopes what it may do
// and ends its access when it expires.
//
// It is named so that it can be imported beside clerk-sdk-go's package clerk
// without an alias, and it talks to Clerk only through that SDK.
//
// # Quick start
//
// Set CLERK_SECRET_KEY to your Clerk instance's secret key (and
// CLERK_API_URL only to reach a server other than Clerk's own), then:
//
//	ctx := context.Background()
//	verifier, err := akclerk.NewVerifier(akclerk.ConfigFromEnv(os.Getenv))
//	if err != nil {
//		log.Fatal(err)
//	}
//	defer verifier.Close()
//
//	store, err := akpostgres.Open(ctx, os.Getenv("DATABASE_URL"), akpostgres.Config{})
//	if err != nil {
//		log.Fatal(err)
//	}
//	defer store.Close()
//	if err := store.Migrate(ctx); err != nil {
//		log.Fatal(err)
//	}
//	svc, err := agentkey.New(store, agentkey.Config{})
//	if err != nil {
//		log.Fatal(err)
//	}
//	defer svc.Close(ctx)
//
//	protect := akclerk.APIKeyMiddleware(akclerk.APIKeyOptions{
//		Service:  svc,
//		Verifier: verifier,
//		Scope:    "proxy.chat",
//		// The row created the first time each customer is seen.
//		Defaults: agentkey.SubjectParams{
//			Scopes: []string{"proxy.chat"},
//			Budgets: []agentkey.BudgetSpec{
//				{Limit: 50 * agentkey.Dollar, Period: agentkey.PeriodMonth},
//			},
//		},
//	})
//	mux := http.NewServeMux()
//	mux.Handle("POST /api/chat", protect(http.HandlerFunc(chat)))
//
// and in chat, after the billable work:
//
//	res, err := agentkey.Charge(r.Context(), cost)
//
// or, as the reference's trackByApiKey does, by the key's subject:
//
//	key, _ := akclerk.APIKeyFromContext(r.Context())
//	res, err := akclerk.TrackByAPIKey(r.Context(), svc, key.Subject, cost)
//
// ConfigFromEnv reads both CLERK_SECRET_KEY and CLERK_API_URL; building a
// VerifierConfig by hand, set APIURL too if your deployment sets
// CLERK_API_URL. aksqlite.Open serves as well as akpostgres.Open for one
// process. This is ExampleAPIKeyMiddleware; the package's other examples run
// against an emulator of Clerk's Backend API that is internal to this module
// and cannot be imported, so copy from this one.
//
// The customer calls your API with their Clerk API key in
// "Authorization: Bearer <secret>". The middleware verifies it with Clerk,
// creates a budget row for the key's subject (a user_ or org_ id) the first
// time it is seen, from Defaults or from OnFirstSeen (which can read a plan
// tier from the key's claims), enforces the row's budget, scope and expiry,
// and attaches the verified key (APIKeyFromContext) and the row with its
// budgets (agentkey.KeyFromContext) to the request's context. AccountID
// defaults to the subject.
//
// # Responses
//
//	valid, in budget, has scope        next handler
//	no Bearer credential               401 {"error": "Missing API key"}
//	unknown to Clerk (400 or 404),
//	or revoked or expired              401 {"error": "invalid_key", "reason": ...}
//	over budget                        429 {"error": "budget_exceeded", ...} and Retry-After
//	missing the required scope         403 {"error": "insufficient_scope", ...}
//	Clerk 5xx or 429, a Clerk timeout,
//	a network or storage fault         500 {"error": "auth_unavailable"}
//
// The bodies are those of agentkey's own middleware. A fault never lets a
// request through: it fails closed.
//
// # Scopes
//
// agentkey's scopes (what a subject may do: proxy.chat, usage.read) are
// enforced against the subject's budget row, set by Defaults or OnFirstSeen.
// They are separate from the scopes of the Clerk API key, which this package
// does not read; OnFirstSeen may copy them into the row if you want them to
// count.
//
// # The verification cache
//
// Clerk rate-limits its Backend API per instance, to 1,000 requests per 10
// seconds in production and 100 in development (Clerk's docs, Rate limits:
// https://clerk.com/docs/guides/how-clerk-works/system-limits), and each
// call costs tens of milliseconds: asking on every request would cap a whole
// fleet at 10 to 100 requests per second. So a Verifier caches Clerk's
// answers in process:
//
//   - Valid answers are reused for CacheTTL, 30 seconds by default, or until
//     the credential's expiration if that comes sooner. The trade-off: a key
//     revoked in Clerk keeps working here for up to CacheTTL. Call Purge (by
//     secret) or PurgeSubject (by user_, org_ or mch_ id) to make a
//     revocation take effect at once, for example from a Clerk webhook.
//   - Rejections (unknown, revoked, expired) are reused for NegativeCacheTTL,
//     5 seconds by default and never longer than CacheTTL, or not at all
//     when it is negative (NoNegativeCache). A revoked or expired answer is
//     never cached as valid.
//   - Faults (Clerk 5xx or 429, timeouts, network errors) are never cached.
//   - At most CacheSize valid credentials are kept, 10,000 by default, and
//     a quarter as many rejections beside them, so that clients sending
//     made-up keys cannot push the valid ones out; the least recently used
//     is dropped first.
//   - Concurrent verifications of one credential make one call to Clerk.
//   - Entries are keyed by the SHA-256 hash of the secret; the secret itself
//     is neither kept nor logged nor put in an error.
//
// DisableCache makes every request ask Clerk. Each call to Clerk is bounded
// by Timeout, 3 seconds by default.
//
// # Clerk M2M tokens
//
// To cap your own services (workers, microservices) that authenticate with
// Clerk M2M tokens, use M2MMiddleware and TrackByM2M: the same flow, verified
// with POST /m2m_tokens/verify and keyed on the machine's subject. That is
// internal cost control rather than customer spend caps.
//
// # Pointing at another server
//
// VerifierConfig.APIURL (CLERK_API_URL for ConfigFromEnv) sets the Backend
// API's base URL, https://api.clerk.com/v1 by default, so that the verifier
// can talk to any Clerk-compatible server, such as the emulator the tests and
// examples/clerk use.
//
// # Holding an estimate
//
// Without Estimate, the middleware checks that the subject has budget left,
// and the handler charges after the work; a charge that does not fit is
// refused, so work done for a subject on its last cents, or by many
// concurrent requests, can go unbilled. With Estimate set (for example
// agentkey.FixedEstimate), the middleware holds the estimate against the
// subject's budgets before the handler runs and refuses the request when it
// does not fit; the handler settles the real cost with agentkey.Charge. A
// hold the handler does not settle is released if it fails (status 400 or
// more, or no answer to a client that has gone) and settled at the estimate
// otherwise; agentkey.Release gives it back at once. With holds, charge with
// agentkey.Charge, not TrackByAPIKey, which would charge besides the hold.
package akclerk
