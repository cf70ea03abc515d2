// Package akserver is the HTTP server of the agentkey binary: an admin API,
// a decision API for services written in other languages, the self-serve
// routes, health checks and Prometheus metrics, as one http.Handler.
//
//	srv, err := akserver.New(akserver.Config{Service: svc, Logger: logger})
//	...
//	httpSrv := &http.Server{Addr: ":8080", Handler: srv.Handler()}
//
// # Tokens
//
// The admin API takes the admin token (akadm_ and 48 hex characters), and the
// decision API a service token (aksvc_ and 48 hex characters), each as
// "Authorization: Bearer <token>". Only their SHA-256 hashes are kept, in the
// store's settings, and compared in constant time; a token is shown once, when
// it is made. EnsureAdminToken makes the admin token on a server's first
// start, RotateAdminToken replaces it, and CreateServiceToken and
// RevokeServiceToken manage service tokens by name. A missing or wrong token
// is answered 401 {"error": "unauthorized"}.
//
// # Admin API
//
// Under /admin/v1, in JSON. Amounts are decimal strings ("12.50"),
// durations such as "90s", "30m" or "7d" (ParseDuration), times RFC 3339,
// periods none, day, week or month. As in agentkey.CreateKeyParams, a key
// without "scopes" may do everything, and one with "scopes": [] nothing. Lists
// take after and limit and answer a "next" cursor while there may be more.
//
//	POST   /accounts                       {id, parent_id, name,
//	                                        budgets: [{limit, period, anchor}]}
//	GET    /accounts?parent=&after=&limit= {accounts, next}
//	GET    /accounts/{id}                  the account with its budgets
//	GET    /accounts/{id}/tree             {path: [the accounts above it, root first],
//	                                        account: {...its fields, children: [...]}}
//	PATCH  /accounts/{id}                  {parent_id}: move ("" makes it a root)
//	POST   /keys                           {account_id, user_id, delegated_by, name, scopes,
//	                                        budgets, expires_in | expires_at}: 201, the secret
//	                                        once as "key" beside the key's fields
//	GET    /keys?account_id=&kind=&include_revoked=&after=&limit=   {keys, next}
//	GET    /keys/{id}                      the key with the budgets of its whole path
//	POST   /keys/{id}/revoke
//	PATCH  /keys/{id}                      {account_id}: move
//	POST   /subjects                       {subject, ...as keys, expires_in}: 201 when created
//	GET    /subjects/{subject}
//	PUT    /budgets/{owner_kind}/{owner_id}/{period}   {limit, anchor}: set or replace
//	DELETE /budgets/{owner_kind}/{owner_id}/{period}
//	GET    /budgets/{owner_kind}/{owner_id}            {budgets}
//	POST   /budgets/{budget_id}/adjust     {amount (signed), reason}
//	GET    /holds?key_id=&account_id=&state=&after=&limit=          {holds, next}
//	GET    /holds/{id}
//	POST   /holds/{id}/release
//	GET    /ledger?key_id=&subject=&account_id=&budget_id=&kind=&since=&until=&after=&limit=
//	                                       {entries, next}; CSV of every page with
//	                                       format=csv or Accept: text/csv
//	GET    /audit                          {budgets, drifts, clean}
//	POST   /token/rotate                   {token}: the new admin token, once
//	GET    /service-tokens                 {service_tokens: [{name, created_at}]}
//	POST   /service-tokens                 {name}: 201 {name, token}, once
//	DELETE /service-tokens/{name}
//	POST   /clerk/purge                    {subject | credential}: 204; the Clerk
//	                                        verifier forgets them (404 without Clerk)
//
// The revoke, release, rotate and DELETE routes take no body: anything but
// an empty body or {} is refused. A route refuses a query parameter it does
// not take, and one given twice, naming it; only the parameters listed above
// are taken. Service tokens are listed by name and creation time; a token and
// its hash are never shown again. The Clerk cache is purged by subject, or by
// a credential given in the body, never in the URL, which proxies and access
// logs keep.
//
// # Decision API
//
// The middleware's logic over HTTP, under /v1, for a service that protects
// its own routes: it forwards what its caller presented and gets the
// decision back. It is the hot path, and costs one store round trip for a
// decision without a hold and one more for a hold.
//
//	POST /v1/authorize {credential, credential_type, scope, estimate, hold_ttl,
//	                    idempotency_key, metadata}
//	POST /v1/charge    {key_id | credential (+ credential_type), amount,
//	                    idempotency_key, metadata}
//	POST /v1/settle    {hold_id, amount, metadata, idempotency_key}
//	POST /v1/release   {hold_id, idempotency_key}
//
// credential_type is agentkey (the default), clerk_api_key or clerk_m2m (with
// Config.Clerk). Authorize and charge answer 200 with the decision:
//
//	{"allow": true, "status": 200, "key": {...}, "hold": {...}}
//	{"allow": false, "status": 429, "error": "budget_exceeded", "reason": "budget_exceeded",
//	 "budget": {...the refusing budget...}, "retry_after": 3600, "key": {...}}
//
// where status is what agentkey's middleware would answer the end user (401
// for a missing, invalid, revoked or expired credential, 403 for a missing
// scope, 429 over budget) and error its body's error. With an estimate,
// authorize holds it against every budget on the key's path, and the service
// settles the real cost (settle) or gives it back (release) after the work.
// hold_ttl, such as "90s" or "10m", needs an estimate and is at most
// Config.MaxHoldTTL (24h by default); so does idempotency_key on authorize,
// which makes a retried hold count once (without an estimate, authorize
// writes nothing, and a key there is refused rather than ignored). On charge,
// idempotency_key makes a retried charge count once. Settle and release
// answer the agentkey.CloseResult and are idempotent by hold_id: repeating
// one answers the first result, with replayed set, so an idempotency_key is
// accepted there and not needed. A key reused with a different amount is 409
// {"error": "idempotency_key_reused"}, and the first operation stands. A
// fault answers 500 {"error": "auth_unavailable"}: the service must refuse
// its request (fail closed).
//
// A Clerk subject's row is created from Config.ClerkDefaults the first time
// authorize or charge sees it. Service tokens' verifications are cached for
// Config.ServiceTokenTTL, 30 seconds by default: a token revoked through
// another process keeps working here for up to that long.
//
// # Bad input
//
// Everywhere: a body over Config.MaxBodyBytes is 413; malformed JSON, unknown
// fields, trailing data, and bad amounts, durations, periods, times or ids are
// 400 {"error": "invalid_request", "message": "..."} with a message naming the
// field, and nothing is written. A path that no route has is 404
// {"error": "not_found"}; a route's path with another method is 405
// {"error": "method_not_allowed"} with an Allow header. Errors map to statuses
// in one table: not found 404; an id taken, a closed hold, a cycle or a
// too-deep tree, an adjustment past the limit, an idempotency key reused with
// another amount 409; any other failure 500, its detail logged and not shown.
//
// # Health and metrics
//
// GET /healthz is 200 while the process runs; GET /readyz is 200 when the
// database answers and 503 otherwise. GET /metrics serves Config.Registry:
// agentkey_decisions_total by endpoint, outcome and reason,
// agentkey_charged_microunits_total, agentkey_holds_opened_total,
// agentkey_holds_closed_total (of this process), agentkey_holds_open and
// agentkey_holds_open_microunits (of the database, read at each scrape),
// agentkey_http_requests_total and agentkey_http_request_duration_seconds by
// route pattern, agentkey_clerk_cache_hits_total, _misses_total and
// _clerk_calls_total when a Clerk verifier is configured, and the Go runtime
// and process collectors.
package akserver
