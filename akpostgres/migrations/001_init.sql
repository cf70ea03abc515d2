-- Keys, accounts, budgets, holds, the ledger, idempotency records and
-- settings.
--
-- Table and index names are written as {{table "x"}} and {{name "x"}}; the
-- store fills in its schema and prefix, quoted, when it loads this file.
--
-- Identifier columns use COLLATE "C" so that ORDER BY id is byte order, the
-- same in every database and in the SQLite store, whatever the database's
-- default collation. Budgets are locked in that order. Columns compared with
-- each other share the collation, so that the comparisons can use indexes.
--
-- The ledger, holds and idempotency records have no foreign keys to budgets or
-- keys: budgets can be deleted, and the ledger keeps their history.

-- A key is an own key (hash and prefix set) or an external subject (subject
-- set). scopes NULL means unlimited; '{}' means none. account_id need not name
-- an accounts row: then the key's own budgets are its whole path.
CREATE TABLE {{table "keys"}} (
    id           text COLLATE "C" NOT NULL,
    hash         bytea,
    prefix       text NOT NULL DEFAULT '',
    subject      text,
    account_id   text COLLATE "C" NOT NULL,
    user_id      text NOT NULL DEFAULT '',
    delegated_by text NOT NULL DEFAULT '',
    name         text NOT NULL DEFAULT '',
    scopes       text[],
    expires_at   timestamptz,
    revoked_at   timestamptz,
    created_at   timestamptz NOT NULL,
    last_used_at timestamptz,
    CONSTRAINT {{name "keys_pkey"}} PRIMARY KEY (id),
    CONSTRAINT {{name "keys_hash_key"}} UNIQUE (hash),
    CONSTRAINT {{name "keys_subject_key"}} UNIQUE (subject)
);

CREATE INDEX {{name "keys_account_idx"}} ON {{table "keys"}} (account_id, id);

-- Accounts are the nodes of the budget tree; parent_id is NULL for a root.
-- Accounts are never deleted. Tree changes run under an advisory lock, so no
-- two of them can build a cycle together.
CREATE TABLE {{table "accounts"}} (
    id         text COLLATE "C" NOT NULL,
    parent_id  text COLLATE "C",
    name       text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL,
    CONSTRAINT {{name "accounts_pkey"}} PRIMARY KEY (id),
    CONSTRAINT {{name "accounts_parent_fkey"}} FOREIGN KEY (parent_id)
        REFERENCES {{table "accounts"}} (id)
);

CREATE INDEX {{name "accounts_parent_idx"}} ON {{table "accounts"}} (parent_id, id);

-- A budget belongs to a key (owner_kind 'key', owner_id a key id) or to an
-- account, at most one per period. limit_micros NULL means unlimited. held is
-- what open holds reserve.
CREATE TABLE {{table "budgets"}} (
    id           text COLLATE "C" NOT NULL,
    owner_kind   text NOT NULL,
    owner_id     text COLLATE "C" NOT NULL,
    limit_micros bigint,
    period       text NOT NULL,
    location     text NOT NULL,
    anchor       timestamptz NOT NULL,
    period_start timestamptz NOT NULL,
    reset_at     timestamptz,
    used         bigint NOT NULL DEFAULT 0,
    held         bigint NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL,
    CONSTRAINT {{name "budgets_pkey"}} PRIMARY KEY (id),
    CONSTRAINT {{name "budgets_owner_period_key"}} UNIQUE (owner_kind, owner_id, period),
    CONSTRAINT {{name "budgets_owner_kind_check"}} CHECK (owner_kind IN ('key', 'account')),
    CONSTRAINT {{name "budgets_amounts_check"}} CHECK (used >= 0 AND held >= 0)
);

-- A hold sets amount aside on each of budget_ids, the budgets of its key's
-- path when it was made, in id order. state is open, settled, released or
-- expired; closed_at is NULL while it is open.
CREATE TABLE {{table "holds"}} (
    id              text COLLATE "C" NOT NULL,
    key_id          text COLLATE "C" NOT NULL,
    account_id      text COLLATE "C" NOT NULL,
    amount          bigint NOT NULL,
    budget_ids      text[] COLLATE "C" NOT NULL,
    state           text NOT NULL,
    expires_at      timestamptz NOT NULL,
    created_at      timestamptz NOT NULL,
    closed_at       timestamptz,
    charged         bigint NOT NULL DEFAULT 0,
    overrun         bigint NOT NULL DEFAULT 0,
    idempotency_key text,
    metadata        jsonb,
    CONSTRAINT {{name "holds_pkey"}} PRIMARY KEY (id)
);

CREATE INDEX {{name "holds_key_idx"}} ON {{table "holds"}} (key_id, id);
CREATE INDEX {{name "holds_account_idx"}} ON {{table "holds"}} (account_id, id);

-- The sweeper's queue: open holds by expiry. Closed holds leave it.
CREATE INDEX {{name "holds_open_expiry_idx"}} ON {{table "holds"}} (expires_at, id)
    WHERE state = 'open';

-- Open holds by budget, for releasing the expired holds of a budget that
-- refused. fastupdate is off so that no reservation pays for flushing a
-- pending list (PostgreSQL manual, GIN Indexes, GIN Fast Update Technique).
CREATE INDEX {{name "holds_open_budgets_idx"}} ON {{table "holds"}} USING gin (budget_ids)
    WITH (fastupdate = off) WHERE state = 'open';

-- The ledger is the truth; budgets.used and budgets.held cache it. key_id,
-- account_id, hold_id, idempotency_key and metadata are NULL when absent.
CREATE TABLE {{table "ledger"}} (
    id              bigint GENERATED ALWAYS AS IDENTITY,
    op_id           text NOT NULL,
    kind            text NOT NULL,
    budget_id       text COLLATE "C" NOT NULL,
    key_id          text COLLATE "C",
    account_id      text COLLATE "C",
    hold_id         text COLLATE "C",
    amount          bigint NOT NULL,
    period_start    timestamptz NOT NULL,
    idempotency_key text,
    metadata        jsonb,
    created_at      timestamptz NOT NULL,
    CONSTRAINT {{name "ledger_pkey"}} PRIMARY KEY (id)
);

CREATE INDEX {{name "ledger_budget_period_idx"}} ON {{table "ledger"}} (budget_id, period_start);
CREATE INDEX {{name "ledger_key_idx"}} ON {{table "ledger"}} (key_id, id);
CREATE INDEX {{name "ledger_account_idx"}} ON {{table "ledger"}} (account_id, id);
CREATE INDEX {{name "ledger_created_idx"}} ON {{table "ledger"}} (created_at);

-- The result of every charge ('charge') and hold ('hold') made with an
-- idempotency key, per key: the same idempotency key may name one of each.
CREATE TABLE {{table "idempotency"}} (
    key_id     text COLLATE "C" NOT NULL,
    kind       text NOT NULL,
    idem_key   text NOT NULL,
    op_id      text NOT NULL,
    result     jsonb NOT NULL,
    created_at timestamptz NOT NULL,
    CONSTRAINT {{name "idempotency_pkey"}} PRIMARY KEY (key_id, kind, idem_key)
);

-- For expiring old records later.
CREATE INDEX {{name "idempotency_created_idx"}} ON {{table "idempotency"}} (created_at);

-- Named values kept for the application, such as the hash of an admin token.
CREATE TABLE {{table "settings"}} (
    name       text NOT NULL,
    value      text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT statement_timestamp(),
    CONSTRAINT {{name "settings_pkey"}} PRIMARY KEY (name)
);
