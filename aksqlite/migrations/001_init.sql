-- 001_init: keys, accounts, budgets, holds, the ledger, idempotency records
-- and settings.
--
-- {p} is replaced by the configured table prefix. Times are INTEGER unix
-- microseconds, NULL when absent; money is INTEGER micro-units. Few CHECKs on
-- purpose: SQLite can only change a CHECK by rebuilding the table, and kinds,
-- periods and owners will grow. For the same reason, and because budgets can
-- be deleted while the ledger keeps their history, only the account tree has
-- a foreign key.

-- keys holds own keys (hash set, subject NULL) and external subjects (subject
-- set, hash NULL). account_id need not name an accounts row: a key of an
-- account outside the tree has its own budgets as its whole path.
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

-- accounts are the nodes of the budget tree. Tree changes run in a write
-- transaction, SQLite's single writer, so no two can build a cycle together.
CREATE TABLE {p}accounts (
    id         TEXT    NOT NULL PRIMARY KEY,
    parent_id  TEXT    REFERENCES {p}accounts (id), -- NULL for a root
    name       TEXT    NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL
) STRICT;

CREATE INDEX {p}accounts_parent_id ON {p}accounts (parent_id, id);

-- budgets belong to a key or an account (owner_kind, owner_id), at most one
-- per period. held is what open holds reserve.
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

CREATE UNIQUE INDEX {p}budgets_owner_period ON {p}budgets (owner_kind, owner_id, period);

-- holds are money set aside before the work. budget_ids are in hold_budgets.
CREATE TABLE {p}holds (
    id              TEXT    NOT NULL PRIMARY KEY,
    key_id          TEXT    NOT NULL,
    account_id      TEXT    NOT NULL,
    amount          INTEGER NOT NULL,
    state           TEXT    NOT NULL,
    expires_at      INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    closed_at       INTEGER,
    charged         INTEGER NOT NULL DEFAULT 0,
    overrun         INTEGER NOT NULL DEFAULT 0,
    idempotency_key TEXT,
    metadata        TEXT    -- JSON object of strings; NULL when none
) STRICT;

-- The sweeper's index: open holds only, so closed ones cost it nothing.
CREATE INDEX {p}holds_open_expires_at ON {p}holds (expires_at, id) WHERE state = 'open';
CREATE INDEX {p}holds_key_id ON {p}holds (key_id, id);
CREATE INDEX {p}holds_account_id ON {p}holds (account_id, id);

-- hold_budgets are the budgets a hold counts against, fixed when it is made.
CREATE TABLE {p}hold_budgets (
    hold_id   TEXT NOT NULL,
    budget_id TEXT NOT NULL,
    PRIMARY KEY (hold_id, budget_id)
) STRICT, WITHOUT ROWID;

CREATE INDEX {p}hold_budgets_budget_id ON {p}hold_budgets (budget_id, hold_id);

-- ledger is the truth; budgets.used and held are caches of it. AUTOINCREMENT
-- keeps ids ascending and never reused, even if old entries are archived one
-- day.
CREATE TABLE {p}ledger (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    op_id           TEXT    NOT NULL,
    kind            TEXT    NOT NULL,
    budget_id       TEXT    NOT NULL,
    key_id          TEXT,
    account_id      TEXT,
    hold_id         TEXT,
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

-- idempotency remembers the result of each charge ('charge') and hold
-- ('hold') made with an idempotency key, per key, so that a retry returns it
-- instead of charging or holding again. The kinds keep their keys apart.
CREATE TABLE {p}idempotency (
    key_id     TEXT    NOT NULL,
    kind       TEXT    NOT NULL,
    idem_key   TEXT    NOT NULL,
    op_id      TEXT    NOT NULL,
    result     TEXT    NOT NULL, -- JSON of the ChargeResult or ReserveResult
    created_at INTEGER NOT NULL,
    PRIMARY KEY (key_id, kind, idem_key)
) STRICT, WITHOUT ROWID;

-- settings are named values kept for the application.
CREATE TABLE {p}settings (
    name       TEXT    NOT NULL PRIMARY KEY,
    value      TEXT    NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
