-- 001_init: keys, budgets, the ledger and idempotency records.
--
-- {p} is replaced by the configured table prefix. Times are INTEGER unix
-- microseconds, NULL when absent; money is INTEGER micro-units. Few CHECKs on
-- purpose: SQLite can only change a CHECK by rebuilding the table, and kinds,
-- periods and owners will grow.

-- keys holds own keys (hash set, subject NULL) and external subjects (subject
-- set, hash NULL). account_id is free text for now; a later accounts table
-- (with parents, for the budget tree) can be referenced without a rewrite.
CREATE TABLE {p}keys (
    id           TEXT    NOT NULL PRIMARY KEY,
    hash         BLOB    UNIQUE,
    prefix       TEXT    NOT NULL DEFAULT '',
    subject      TEXT    UNIQUE,
    account_id   TEXT    NOT NULL,
    user_id      TEXT    NOT NULL DEFAULT '',
    delegated_by TEXT    NOT NULL DEFAULT '',
    name         TEXT    NOT NULL DEFAULT '',
    scopes       TEXT,   -- JSON array of strings; NULL means unlimited
    expires_at   INTEGER,
    revoked_at   INTEGER,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER
) STRICT;

CREATE INDEX {p}keys_account_id ON {p}keys (account_id, id);

-- budgets belong to a key or an account (owner_kind, owner_id), several per
-- owner. held is what open holds reserve; a later migration adds the holds.
CREATE TABLE {p}budgets (
    id           TEXT    NOT NULL PRIMARY KEY,
    owner_kind   TEXT    NOT NULL,
    owner_id     TEXT    NOT NULL,
    limit_micros INTEGER, -- NULL means unlimited
    period       TEXT    NOT NULL,
    location     TEXT    NOT NULL,
    anchor       INTEGER NOT NULL,
    period_start INTEGER NOT NULL,
    reset_at     INTEGER, -- NULL for a period that never ends
    used         INTEGER NOT NULL DEFAULT 0,
    held         INTEGER NOT NULL DEFAULT 0,
    created_at   INTEGER NOT NULL,
    CHECK (used >= 0 AND held >= 0)
) STRICT;

CREATE INDEX {p}budgets_owner ON {p}budgets (owner_kind, owner_id, id);

-- ledger is the truth; budgets.used is a cache of it. AUTOINCREMENT keeps ids
-- ascending and never reused, even if old entries are archived one day.
CREATE TABLE {p}ledger (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    op_id           TEXT    NOT NULL,
    kind            TEXT    NOT NULL,
    budget_id       TEXT    NOT NULL REFERENCES {p}budgets (id),
    key_id          TEXT    REFERENCES {p}keys (id),
    account_id      TEXT,
    amount          INTEGER NOT NULL,
    period_start    INTEGER NOT NULL,
    idempotency_key TEXT,
    metadata        TEXT,   -- JSON object of strings; NULL when none
    created_at      INTEGER NOT NULL
) STRICT;

CREATE INDEX {p}ledger_budget_period ON {p}ledger (budget_id, period_start);
CREATE INDEX {p}ledger_key_id ON {p}ledger (key_id, id);
CREATE INDEX {p}ledger_account_id ON {p}ledger (account_id, id);
CREATE INDEX {p}ledger_created_at ON {p}ledger (created_at);

-- idempotency remembers the result of each charge made with an idempotency
-- key, per key, so that a retry returns it instead of charging again.
CREATE TABLE {p}idempotency (
    key_id     TEXT    NOT NULL REFERENCES {p}keys (id),
    idem_key   TEXT    NOT NULL,
    op_id      TEXT    NOT NULL,
    result     TEXT    NOT NULL, -- JSON of the agentkey.ChargeResult
    created_at INTEGER NOT NULL,
    PRIMARY KEY (key_id, idem_key)
) STRICT, WITHOUT ROWID;
