// Package agentkey caps what each API key may spend: a dollar budget, a set of
// scopes and an expiry per key, enforced before the work runs and charged
// exactly after it.
//
// A Service sits on a Store (akpostgres for PostgreSQL, aksqlite for an
// embedded SQLite file). It mints keys whose secrets are shown once and stored
// only as SHA-256 hashes, validates them, and charges them:
//
//	svc, _ := agentkey.New(store, agentkey.Config{})
//	ck, _ := svc.CreateKey(ctx, agentkey.CreateKeyParams{
//		AccountID: "acct_1",
//		Scopes:    []string{"proxy.chat"},
//		Budgets:   []agentkey.BudgetSpec{{Limit: 10 * agentkey.Dollar, Period: agentkey.PeriodMonth}},
//	})
//	mux.Handle("POST /api/chat", svc.Middleware(agentkey.MiddlewareOptions{Scope: "proxy.chat"})(chat))
//
// and in the handler, after the billable work:
//
//	agentkey.Charge(r.Context(), cost)
//
// # Money
//
// Money is an integer count of micro-units (one dollar is 1,000,000). No float
// is used in accounting; a charge of $0.0004 is exact and nothing is rounded
// per charge. Amounts cross JSON as decimal strings.
//
// # Budgets and periods
//
// A key has one or more budgets, each with a limit and a period (none, day,
// week, month). Periods start at midnight in the budget's time zone (UTC unless
// Config.Location says otherwise); a monthly budget resets on its anchor day,
// or on the last day of a shorter month, and returns to its anchor day after
// it. An elapsed period rolls over at the next write, with no background job.
// A charge must fit every budget of the key, or none is touched.
//
// # The ledger
//
// Every charge, period reset and manual adjustment is a ledger entry. The
// ledger is the truth; a budget's used amount is a cache of it, which Audit
// checks. A charge with WithIdempotencyKey is applied at most once.
//
// # HTTP
//
// The middleware answers:
//
//	valid, in budget, has scope    next handler
//	no Bearer credential           401 {"error": "Missing API key"}
//	invalid, revoked or expired    401 {"error": "invalid_key", "reason": ...}
//	over budget                    429 {"error": "budget_exceeded", "budget": ...} and Retry-After
//	missing the required scope     403 {"error": "insufficient_scope", "required": ..., "available": [...]}
//	storage fault                  500 {"error": "auth_unavailable"}
//
// A fault never lets a request through: it fails closed.
//
// Validation checks that a key has budget left; it cannot know what the work
// will cost. A charge after the work that does not fit is refused, so work done
// for a key on its last cents can go unbilled.
//
// TODO: holds (reserve an estimate before the work, settle after) remove that
// gap; they are not implemented yet.
package agentkey
