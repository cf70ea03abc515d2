package akpostgres

import "fmt"

// The columns that scanKey, scanBudget and scanEntry read, in their order.
const (
	keyColumns = `id, hash, prefix, subject, account_id, user_id, delegated_by, name, scopes,
	expires_at, revoked_at, created_at, last_used_at`
	budgetColumns = `id, owner_kind, owner_id, limit_micros, period, location, anchor,
	period_start, reset_at, used, held, created_at`
	entryColumns = `id, op_id, kind, budget_id, key_id, account_id, amount, period_start,
	idempotency_key, metadata, created_at`
)

// statements holds the SQL of every operation with the store's table names.
type statements struct {
	createMigrations, appliedVersions, recordMigration string

	insertKey, insertSubject, insertBudget string

	keyByID, keyByHash, keyBySubject             string
	budgetsByID, budgetsByHash, budgetsBySubject string

	revokeKey, lockKeys, touchKeys string

	chargeLoad, lockKeyBudgets, lockBudget, updateBudget string
	insertEntry, insertIdempotency, idempotencyResult    string

	selectEntries, budgetTotals string
}

// build renders every statement.
func (q *statements) build(r *renderer) error {
	for _, st := range []struct {
		dst  *string
		name string
		text string
	}{
		{&q.createMigrations, "createMigrations", `
CREATE TABLE IF NOT EXISTS {{table "migrations"}} (
    version    integer NOT NULL,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT {{name "migrations_pkey"}} PRIMARY KEY (version)
)`},
		{&q.appliedVersions, "appliedVersions", `
SELECT version FROM {{table "migrations"}} ORDER BY version`},
		{&q.recordMigration, "recordMigration", `
INSERT INTO {{table "migrations"}} (version, name) VALUES ($1, $2)`},

		{&q.insertKey, "insertKey", `
INSERT INTO {{table "keys"}} (` + keyColumns + `)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`},
		{&q.insertSubject, "insertSubject", `
INSERT INTO {{table "keys"}} (` + keyColumns + `)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
ON CONFLICT (subject) DO NOTHING`},
		{&q.insertBudget, "insertBudget", `
INSERT INTO {{table "budgets"}} (` + budgetColumns + `)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`},

		{&q.keyByID, "keyByID", `
SELECT ` + keyColumns + ` FROM {{table "keys"}} WHERE id = $1`},
		{&q.keyByHash, "keyByHash", `
SELECT ` + keyColumns + ` FROM {{table "keys"}} WHERE hash = $1`},
		{&q.keyBySubject, "keyBySubject", `
SELECT ` + keyColumns + ` FROM {{table "keys"}} WHERE subject = $1`},
		{&q.budgetsByID, "budgetsByID", `
SELECT ` + budgetColumns + ` FROM {{table "budgets"}}
WHERE owner_kind = 'key' AND owner_id = $1
ORDER BY id`},
		{&q.budgetsByHash, "budgetsByHash", `
SELECT ` + budgetColumns + ` FROM {{table "budgets"}}
WHERE owner_kind = 'key' AND owner_id = (SELECT id FROM {{table "keys"}} WHERE hash = $1)
ORDER BY id`},
		{&q.budgetsBySubject, "budgetsBySubject", `
SELECT ` + budgetColumns + ` FROM {{table "budgets"}}
WHERE owner_kind = 'key' AND owner_id = (SELECT id FROM {{table "keys"}} WHERE subject = $1)
ORDER BY id`},

		// coalesce keeps the first revocation time.
		{&q.revokeKey, "revokeKey", `
UPDATE {{table "keys"}} SET revoked_at = coalesce(revoked_at, $2)
WHERE id = $1 AND ($3::text = '' OR account_id = $3)
RETURNING ` + keyColumns},
		{&q.lockKeys, "lockKeys", `
SELECT id FROM {{table "keys"}} WHERE id = ANY($1) ORDER BY id FOR UPDATE`},
		{&q.touchKeys, "touchKeys", `
UPDATE {{table "keys"}} AS k SET last_used_at = t.at
FROM unnest($1::text[], $2::timestamptz[]) AS t (id, at)
WHERE k.id = t.id AND (k.last_used_at IS NULL OR k.last_used_at < t.at)`},

		// The key and the idempotency record in one statement that returns
		// one row even when neither exists, so that a replay is found even
		// for a key that is gone.
		{&q.chargeLoad, "chargeLoad", `
SELECT k.id, k.hash, k.prefix, k.subject, k.account_id, k.user_id, k.delegated_by, k.name,
    k.scopes, k.expires_at, k.revoked_at, k.created_at, k.last_used_at, i.result
FROM (SELECT) AS one
LEFT JOIN {{table "keys"}} AS k ON k.id = $1
LEFT JOIN {{table "idempotency"}} AS i ON i.key_id = $1 AND i.idem_key = $2`},
		{&q.lockKeyBudgets, "lockKeyBudgets", `
SELECT ` + budgetColumns + ` FROM {{table "budgets"}}
WHERE owner_kind = 'key' AND owner_id = $1
ORDER BY id FOR UPDATE`},
		{&q.lockBudget, "lockBudget", `
SELECT ` + budgetColumns + ` FROM {{table "budgets"}} WHERE id = $1 FOR UPDATE`},
		{&q.updateBudget, "updateBudget", `
UPDATE {{table "budgets"}} SET used = $2, period_start = $3, reset_at = $4
WHERE id = $1 AND used = $5 AND held = $6 AND period_start = $7`},
		{&q.insertEntry, "insertEntry", `
INSERT INTO {{table "ledger"}} (op_id, kind, budget_id, key_id, account_id, amount,
    period_start, idempotency_key, metadata, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`},
		{&q.insertIdempotency, "insertIdempotency", `
INSERT INTO {{table "idempotency"}} (key_id, idem_key, op_id, result, created_at)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (key_id, idem_key) DO NOTHING`},
		{&q.idempotencyResult, "idempotencyResult", `
SELECT result FROM {{table "idempotency"}} WHERE key_id = $1 AND idem_key = $2`},

		// Ledger appends its WHERE clause to this.
		{&q.selectEntries, "selectEntries", `
SELECT ` + entryColumns + ` FROM {{table "ledger"}}`},
		{&q.budgetTotals, "budgetTotals", `
SELECT b.id, b.owner_kind, b.owner_id, b.limit_micros, b.period, b.location, b.anchor,
    b.period_start, b.reset_at, b.used, b.held, b.created_at,
    coalesce((
        SELECT sum(l.amount) FROM {{table "ledger"}} AS l
        WHERE l.budget_id = b.id AND l.period_start = b.period_start
            AND l.kind = ANY($1)
    ), 0)::bigint
FROM {{table "budgets"}} AS b
ORDER BY b.id`},
	} {
		sql, err := r.render(st.name, st.text)
		if err != nil {
			return fmt.Errorf("build statements: %w", err)
		}
		*st.dst = sql
	}
	return nil
}
