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
// A budget has a limit and a period (none, day, week, month). Periods start at
// midnight in the budget's time zone (UTC unless Config.Location says
// otherwise); a monthly budget resets on its anchor day, or on the last day of
// a shorter month, and returns to its anchor day after it. An elapsed period
// rolls over at the next write, with no background job.
//
// # The budget tree
//
// Keys and subjects belong to an account, and accounts can sit under other
// accounts (an organisation, its teams, ...; at most MaxDepth levels, never a
// cycle). Any node can carry budgets, one per period: $10 a day and $200 a
// month on one key, $1,000 a month on its team, $5,000 on the organisation.
// Every charge and hold applies to the whole path from the key to the root,
// all or nothing; a refusal names the budget that refused (its node and
// period). Budgets are locked in one global order, so operations on
// overlapping paths never deadlock.
//
// # Holds
//
// Checking before the work and charging after it leaves two gaps: concurrent
// requests all pass the check while a key is nearly spent, and a request that
// costs more than what is left passes a check of "anything left". Reserve
// closes both: it holds an estimate against every budget on the path before
// the work, so used + held never passes a limit, and Settle charges the real
// cost after it (a cost above the hold is charged as far as it fits; the rest
// is recorded as an overrun). Release gives a hold back; an unsettled hold
// expires after Config.HoldTTL and is released at the next charge or hold on
// any of its budgets, or by SweepHolds (RunSweeper runs it periodically; run
// it in one goroutine of every process, so that reads of budgets show expired
// holds gone). The middleware holds when MiddlewareOptions has an Estimate,
// and Charge in the handler then settles.
//
// # The ledger
//
// Every charge, hold, release, settlement, overrun, period reset and manual
// adjustment is a ledger entry, and so is every change of the tree and of
// budgets: an account created or moved, a key moved, a budget set, replaced
// or removed (entries without money, which LedgerFilter.Kinds can leave out).
// The ledger is the truth; a budget's used and held amounts are a cache of
// it, which Audit checks against the ledger and against the open holds. A
// charge or hold with WithIdempotencyKey is applied at most once; the same
// key with another amount is refused with ErrIdempotencyKeyReused.
//
// # Self-serve routes
//
// Service.SelfServe returns the reference's self-serve routes as an
// http.Handler: POST /signup (an unauthenticated agent gets a short-lived key
// on a fresh account of its own, with only the scopes the integrator allows,
// rate-limited per client address), GET /sdk-keys/me (a key introspects
// itself), POST /sdk-keys (a key mints another on its account, attenuated: no
// scope it lacks, no larger budget, no later expiry) and DELETE
// /sdk-keys/{id} (only keys of the caller's account). Every signup gets its
// own account, even with an email: emails are not verified, so sharing an
// account by email would let anyone act on someone else's keys.
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
// Without an Estimate, the middleware only checks that a key has budget left,
// and a charge after the work that does not fit is refused: work done for a
// key on its last cents can then go unbilled. Hold an estimate to rule that out.
package agentkey
