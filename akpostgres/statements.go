package akpostgres

import (
	"fmt"
	"strconv"
)

// The columns that scanKey, scanBudget, scanEntry, holdRow and accountRow
// read, in their order.
const (
	keyColumns = `id, hash, prefix, subject, account_id, user_id, delegated_by, name, scopes,
	expires_at, revoked_at, created_at, last_used_at`
	budgetColumns = `id, owner_kind, owner_id, limit_micros, period, location, anchor,
	period_start, reset_at, used, held, created_at`
	entryColumns = `id, op_id, kind, budget_id, key_id, account_id, hold_id, amount,
	period_start, idempotency_key, metadata, created_at`
	holdColumns = `id, key_id, account_id, amount, budget_ids, state, expires_at, created_at,
	closed_at, charged, overrun, idempotency_key, metadata`
	accountColumns = `id, parent_id, name, created_at`
)

// expiredHoldsProbe bounds the expired holds that a charge or a hold looks
// at, oldest first, to find those on its path. A backlog larger than this
// (no sweeper running) can hide some of them from a charge that does not need
// their room; one that does sweeps its budgets (see agentkey.Service).
const expiredHoldsProbe = 64

// maxPathLevels bounds every walk up or down the account tree, so that a
// corrupted table (a cycle written by hand) can never make a query loop. No
// tree deeper than this is allowed, whatever maxDepth a caller passes.
const maxPathLevels = 16

// The kinds of idempotency records: a charge and a hold made with the same
// idempotency key are different operations.
const (
	idemCharge = "charge"
	idemHold   = "hold"
)

// statements holds the SQL of every operation with the store's table names.
type statements struct {
	createMigrations, appliedVersions, recordMigration string

	insertKey, insertSubject, insertBudget string

	keyByID, keyByHash, keyBySubject    string
	pathByID, pathByHash, pathBySubject string

	revokeKey, lockKeys, touchKeys, moveKey string
	lockKeyAccount                          string
	selectKeys, keyBudgets                  string

	loadByID, loadByHash, lockPathByID, lockPathByHash string
	expiredHoldBudgets                                 string
	lockBudget, updateBudget, insertEntry              string
	insertIdempotency, idempotencyResult               string

	selectEntries, budgetTotals string

	treeLock, treeCheck, insertAccount, setParent string
	accountByID, accounts, accountChildren        string
	budgetsByOwner, accountBudgets                string
	putBudget, lockOwnerBudgets, deleteBudget     string
	insertMeter, ownerAccount                     string
	insertHold, lockHold, lockHoldBudgets         string
	closeHold, holdByID, selectHolds              string
	expiredHolds, expiredHoldsOn, openHolds       string
	settingByName, insertSetting, upsertSetting   string
	settingsByPrefix                              string
}

// pathBudgets returns a statement that selects the budgets of the whole path
// of the key that keyCond selects, in id order, followed by suffix: the key's
// own budgets and those of its account and each account above it. The walk
// up stops after maxPathLevels accounts. The path's ids are collected into an
// array first, so that the budgets are found through the owner index however
// large the planner guesses the recursive walk to be; a semi-join on it
// scanned all budgets once a few hundred keys existed.
func pathBudgets(keyCond, suffix string) string {
	return `
WITH RECURSIVE k AS (
    SELECT id, account_id FROM {{table "keys"}} WHERE ` + keyCond + `
), path (id, parent_id, level) AS (
    SELECT a.id, a.parent_id, 1 FROM {{table "accounts"}} AS a JOIN k ON a.id = k.account_id
    UNION ALL
    SELECT a.id, a.parent_id, p.level + 1
    FROM path AS p JOIN {{table "accounts"}} AS a ON a.id = p.parent_id
    WHERE p.level < ` + strconv.Itoa(maxPathLevels) + `
)
SELECT ` + budgetColumns + ` FROM {{table "budgets"}} AS b
WHERE (b.owner_kind = 'key' AND b.owner_id = (SELECT id FROM k))
    OR (b.owner_kind = 'account' AND b.owner_id = ANY (ARRAY(SELECT id FROM path)))
ORDER BY b.id` + suffix
}

// loadKey returns a statement that selects the key that keyCond (on k)
// selects and the stored result of idempotency key $2 of kind $3, in one row
// even when neither exists.
func loadKey(keyCond, idemKeyID string) string {
	return `
SELECT k.id, k.hash, k.prefix, k.subject, k.account_id, k.user_id, k.delegated_by, k.name,
    k.scopes, k.expires_at, k.revoked_at, k.created_at, k.last_used_at, i.result
FROM (SELECT) AS one
LEFT JOIN {{table "keys"}} AS k ON ` + keyCond + `
LEFT JOIN {{table "idempotency"}} AS i
    ON i.key_id = ` + idemKeyID + ` AND i.kind = $3 AND i.idem_key = $2`
}

// ownerAccount returns an expression for the account of the budget owner
// that kind and id name: the key's account for a key (empty if the key is gone),
// the account itself for an account.
func ownerAccount(kind, id string) string {
	return `CASE ` + kind + `
    WHEN 'key' THEN coalesce((SELECT k.account_id FROM {{table "keys"}} AS k
        WHERE k.id = ` + id + `), '')
    ELSE ` + id + `
END`
}

// guarded returns a statement that runs update, which must change one row,
// and fails with division_by_zero when it changes none. The updates of the
// hot path are guarded by the state their row was read in under its lock, so
// this is a safety net against a store bug; but it must fail on the server,
// because the write batches end with COMMIT, and only an error makes
// PostgreSQL skip the rest of a batch (see Store.acquire). A data-modifying
// WITH runs to completion whatever the outer query reads (PostgreSQL manual,
// WITH Queries, Data-Modifying Statements in WITH).
func guarded(update string) string {
	return `
WITH u AS (` + update + `
    RETURNING 1
)
SELECT 1 / count(*) FROM u`
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
		{&q.pathByID, "pathByID", pathBudgets("id = $1", "")},
		{&q.pathByHash, "pathByHash", pathBudgets("hash = $1", "")},
		{&q.pathBySubject, "pathBySubject", pathBudgets("subject = $1", "")},

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
		// Keys appends its WHERE clause to this.
		{&q.selectKeys, "selectKeys", `
SELECT ` + keyColumns + ` FROM {{table "keys"}}`},
		{&q.keyBudgets, "keyBudgets", `
SELECT ` + budgetColumns + ` FROM {{table "budgets"}}
WHERE owner_kind = 'key' AND owner_id = ANY($1)
ORDER BY id`},
		{&q.lockKeyAccount, "lockKeyAccount", `
SELECT account_id FROM {{table "keys"}} WHERE id = $1 FOR UPDATE`},
		{&q.moveKey, "moveKey", `
UPDATE {{table "keys"}} SET account_id = $2 WHERE id = $1
RETURNING ` + keyColumns},

		// By id, the idempotency record is looked up by the id asked for,
		// so that a replay is found even for a key that is gone.
		{&q.loadByID, "loadByID", loadKey("k.id = $1", "$1")},
		{&q.loadByHash, "loadByHash", loadKey("k.hash = $1", "k.id")},
		{&q.lockPathByID, "lockPathByID", pathBudgets("id = $1", " FOR UPDATE OF b")},
		{&q.lockPathByHash, "lockPathByHash", pathBudgets("hash = $1", " FOR UPDATE OF b")},
		// The budgets of the oldest open holds expired at $1, through the
		// partial index of open holds by expiry: while a sweeper runs there
		// are few or none, and the query costs an index probe. One table and
		// no parameter but the time keep it cheap to plan, which matters as
		// PostgreSQL may plan a prepared statement at every execution
		// (PostgreSQL manual, PREPARE, Notes). The caller keeps the budgets
		// of its path.
		{&q.expiredHoldBudgets, "expiredHoldBudgets", `
SELECT DISTINCT x FROM (
    SELECT budget_ids FROM {{table "holds"}} WHERE state = 'open' AND expires_at <= $1
    ORDER BY expires_at LIMIT ` + strconv.Itoa(expiredHoldsProbe) + `
) AS h, unnest(h.budget_ids) AS x`},
		// The budget and the account of its owner: the key's account for a
		// key budget, the account itself for an account budget.
		{&q.lockBudget, "lockBudget", `
SELECT ` + budgetColumns + `, ` + ownerAccount("b.owner_kind", "b.owner_id") + `
FROM {{table "budgets"}} AS b WHERE b.id = $1 FOR UPDATE OF b`},
		// One statement per budget and per entry. One UPDATE ... FROM
		// unnest(...) for all the budgets and one INSERT ... SELECT FROM
		// unnest(...) for all the entries were tried: in pgbench they
		// raised the throughput of a key under two accounts by a quarter,
		// but through pgx they made the store's charges about a third
		// slower, on flat keys and on the tree alike.
		{&q.updateBudget, "updateBudget", guarded(`
UPDATE {{table "budgets"}} SET used = $2, held = $3, period_start = $4, reset_at = $5
WHERE id = $1 AND used = $6 AND held = $7 AND period_start = $8`)},
		{&q.insertEntry, "insertEntry", `
INSERT INTO {{table "ledger"}} (op_id, kind, budget_id, key_id, account_id, hold_id, amount,
    period_start, idempotency_key, metadata, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`},
		// No ON CONFLICT: a duplicate must fail, so that the rest of its
		// batch, COMMIT included, is skipped (see Store.write).
		{&q.insertIdempotency, "insertIdempotency", `
INSERT INTO {{table "idempotency"}} (key_id, kind, idem_key, op_id, result, created_at)
VALUES ($1, $2, $3, $4, $5, $6)`},
		{&q.idempotencyResult, "idempotencyResult", `
SELECT result FROM {{table "idempotency"}} WHERE key_id = $1 AND kind = $2 AND idem_key = $3`},

		// Ledger appends its WHERE clause to this.
		{&q.selectEntries, "selectEntries", `
SELECT ` + entryColumns + ` FROM {{table "ledger"}}`},
		// $1 are the kinds that count as used; $2 and $3 pair each kind with
		// the sign of its change to held.
		{&q.budgetTotals, "budgetTotals", `
SELECT b.id, b.owner_kind, b.owner_id, b.limit_micros, b.period, b.location, b.anchor,
    b.period_start, b.reset_at, b.used, b.held, b.created_at,
    coalesce((
        SELECT sum(l.amount) FROM {{table "ledger"}} AS l
        WHERE l.budget_id = b.id AND l.period_start = b.period_start
            AND l.kind = ANY($1)
    ), 0)::bigint,
    coalesce((
        SELECT sum(l.amount * d.sign) FROM {{table "ledger"}} AS l
        JOIN unnest($2::text[], $3::bigint[]) AS d (kind, sign) ON l.kind = d.kind
        WHERE l.budget_id = b.id
    ), 0)::bigint,
    coalesce((
        SELECT sum(h.amount) FROM {{table "holds"}} AS h
        WHERE h.state = 'open' AND h.budget_ids @> ARRAY[b.id]
    ), 0)::bigint
FROM {{table "budgets"}} AS b
ORDER BY b.id`},

		{&q.treeLock, "treeLock", `SELECT pg_advisory_xact_lock($1)`},
		// Whether account $1 exists; the depth of account $2 (0 if it does
		// not exist); whether $1 is $2 or above it; the height of the
		// subtree under $1 (1 for a leaf, 0 if it does not exist); and the
		// parent of $1 ('' for a root or none). Both walks stop after $3
		// levels.
		{&q.treeCheck, "treeCheck", `
WITH RECURSIVE up (id, parent_id, level) AS (
    SELECT id, parent_id, 1 FROM {{table "accounts"}} WHERE id = $2
    UNION ALL
    SELECT a.id, a.parent_id, u.level + 1
    FROM up AS u JOIN {{table "accounts"}} AS a ON a.id = u.parent_id
    WHERE u.level < $3
), down (id, level) AS (
    SELECT id, 1 FROM {{table "accounts"}} WHERE id = $1
    UNION ALL
    SELECT a.id, d.level + 1
    FROM down AS d JOIN {{table "accounts"}} AS a ON a.parent_id = d.id
    WHERE d.level < $3
)
SELECT EXISTS (SELECT FROM down),
    coalesce((SELECT max(level) FROM up), 0),
    EXISTS (SELECT FROM up WHERE id = $1),
    coalesce((SELECT max(level) FROM down), 0),
    coalesce((SELECT parent_id FROM {{table "accounts"}} WHERE id = $1), '')`},
		{&q.insertAccount, "insertAccount", `
INSERT INTO {{table "accounts"}} (` + accountColumns + `) VALUES ($1, $2, $3, $4)`},
		{&q.setParent, "setParent", `
UPDATE {{table "accounts"}} SET parent_id = $2 WHERE id = $1
RETURNING ` + accountColumns},
		{&q.accountByID, "accountByID", `
SELECT ` + accountColumns + ` FROM {{table "accounts"}} WHERE id = $1`},
		{&q.accounts, "accounts", `
SELECT ` + accountColumns + ` FROM {{table "accounts"}}
WHERE id > $1 ORDER BY id LIMIT $2`},
		{&q.accountChildren, "accountChildren", `
SELECT ` + accountColumns + ` FROM {{table "accounts"}}
WHERE parent_id = $3 AND id > $1 ORDER BY id LIMIT $2`},
		{&q.budgetsByOwner, "budgetsByOwner", `
SELECT ` + budgetColumns + ` FROM {{table "budgets"}}
WHERE owner_kind = $1 AND owner_id = $2
ORDER BY id`},
		{&q.accountBudgets, "accountBudgets", `
SELECT ` + budgetColumns + ` FROM {{table "budgets"}}
WHERE owner_kind = 'account' AND owner_id = ANY($1)
ORDER BY id`},

		// Inserts the budget if its owner exists, or replaces the limit of
		// the owner's budget of its period and, with $13, its anchor, keeping
		// its id, window, location and what it has used and held.
		{&q.putBudget, "putBudget", `
INSERT INTO {{table "budgets"}} AS b (` + budgetColumns + `)
SELECT $1::text, $2::text, $3::text, $4::bigint, $5::text, $6::text, $7::timestamptz,
    $8::timestamptz, $9::timestamptz, $10::bigint, $11::bigint, $12::timestamptz
WHERE ($2 = 'key' AND EXISTS (SELECT FROM {{table "keys"}} WHERE id = $3))
    OR ($2 = 'account' AND EXISTS (SELECT FROM {{table "accounts"}} WHERE id = $3))
ON CONFLICT (owner_kind, owner_id, period) DO UPDATE SET
    limit_micros = excluded.limit_micros,
    anchor = CASE WHEN $13::boolean THEN excluded.anchor ELSE b.anchor END
RETURNING ` + budgetColumns},
		{&q.lockOwnerBudgets, "lockOwnerBudgets", `
SELECT id FROM {{table "budgets"}} WHERE owner_kind = $1 AND owner_id = $2
ORDER BY id FOR UPDATE`},
		{&q.deleteBudget, "deleteBudget", `
DELETE FROM {{table "budgets"}} WHERE owner_kind = $1 AND owner_id = $2 AND period = $3
RETURNING ` + budgetColumns},
		{&q.ownerAccount, "ownerAccount", `
SELECT ` + ownerAccount("$1::text", "$2::text")},
		{&q.insertMeter, "insertMeter", `
INSERT INTO {{table "budgets"}} (` + budgetColumns + `)
SELECT $1::text, $2::text, $3::text, $4::bigint, $5::text, $6::text, $7::timestamptz,
    $8::timestamptz, $9::timestamptz, $10::bigint, $11::bigint, $12::timestamptz
WHERE NOT EXISTS (SELECT FROM {{table "budgets"}} WHERE owner_kind = $2 AND owner_id = $3)
RETURNING ` + budgetColumns},

		{&q.insertHold, "insertHold", `
INSERT INTO {{table "holds"}} (` + holdColumns + `)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`},
		{&q.lockHold, "lockHold", `
SELECT ` + holdColumns + ` FROM {{table "holds"}} WHERE id = $1 FOR UPDATE`},
		// Sent right after lockHold, so that it runs with the hold locked:
		// every operation locks a hold before its budgets.
		{&q.lockHoldBudgets, "lockHoldBudgets", `
SELECT ` + budgetColumns + ` FROM {{table "budgets"}} AS b
WHERE b.id IN (SELECT unnest(h.budget_ids) FROM {{table "holds"}} AS h WHERE h.id = $1)
ORDER BY b.id FOR UPDATE OF b`},
		{&q.closeHold, "closeHold", guarded(`
UPDATE {{table "holds"}} SET state = $2, closed_at = $3, charged = $4, overrun = $5
WHERE id = $1 AND state = $6`)},
		{&q.holdByID, "holdByID", `
SELECT ` + holdColumns + ` FROM {{table "holds"}} WHERE id = $1`},
		// Holds appends its WHERE clause to this.
		{&q.selectHolds, "selectHolds", `
SELECT ` + holdColumns + ` FROM {{table "holds"}}`},
		{&q.openHolds, "openHolds", `
SELECT count(*), coalesce(sum(amount), 0)::bigint FROM {{table "holds"}} WHERE state = 'open'`},
		{&q.expiredHolds, "expiredHolds", `
SELECT id FROM {{table "holds"}}
WHERE state = 'open' AND expires_at <= $1
ORDER BY expires_at, id LIMIT $2`},
		{&q.expiredHoldsOn, "expiredHoldsOn", `
SELECT id FROM {{table "holds"}}
WHERE state = 'open' AND expires_at <= $1 AND budget_ids && $3::text[]
ORDER BY expires_at, id LIMIT $2`},

		{&q.settingByName, "settingByName", `
SELECT value FROM {{table "settings"}} WHERE name = $1`},
		// starts_with, not LIKE, for which a name's _ would be a wildcard.
		{&q.settingsByPrefix, "settingsByPrefix", `
SELECT name, value FROM {{table "settings"}} WHERE starts_with(name, $1)`},
		{&q.insertSetting, "insertSetting", `
INSERT INTO {{table "settings"}} (name, value) VALUES ($1, $2)
ON CONFLICT (name) DO NOTHING`},
		{&q.upsertSetting, "upsertSetting", `
INSERT INTO {{table "settings"}} (name, value) VALUES ($1, $2)
ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at`},
	} {
		sql, err := r.render(st.name, st.text)
		if err != nil {
			return fmt.Errorf("build statements: %w", err)
		}
		*st.dst = sql
	}
	return nil
}
