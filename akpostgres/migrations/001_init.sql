-- Keys, budgets, the ledger and idempotency records.
--
-- Table and index names are written as {{table "x"}} and {{name "x"}}; the
-- store fills in its schema and prefix, quoted, when it loads this file.
--
-- Identifier columns use COLLATE "C" so that ORDER BY id is byte order, the
-- same in every database and in the SQLite store, whatever the database's
-- default collation. Budgets are locked in that order.

-- A key is an own key (hash and prefix set) or an external subject (subject
-- set). scopes NULL means unlimited; '{}' means none.
CREATE TABLE {{table "keys"}} (
    id           text COLLATE "C" NOT NULL,
    hash         bytea,
    prefix       text NOT NULL DEFAULT '',
    subject      text,
    account_id   text NOT NULL,
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

-- A budget belongs to a key (owner_kind 'key', owner_id a key id) or to an
-- account; an owner may have several. limit_micros NULL means unlimited.
-- held is what open holds reserve.
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
    CONSTRAINT {{name "budgets_owner_kind_check"}} CHECK (owner_kind IN ('key', 'account')),
    CONSTRAINT {{name "budgets_amounts_check"}} CHECK (used >= 0 AND held >= 0)
);

CREATE INDEX {{name "budgets_owner_idx"}} ON {{table "budgets"}} (owner_kind, owner_id, id);

-- The ledger is the truth; budgets.used caches it. key_id, account_id,
-- idempotency_key and metadata are NULL when absent.
CREATE TABLE {{table "ledger"}} (
    id              bigint GENERATED ALWAYS AS IDENTITY,
    op_id           text NOT NULL,
    kind            text NOT NULL,
    budget_id       text COLLATE "C" NOT NULL,
    key_id          text COLLATE "C",
    account_id      text,
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

-- The result of every charge made with an idempotency key, per key.
CREATE TABLE {{table "idempotency"}} (
    key_id     text COLLATE "C" NOT NULL,
    idem_key   text NOT NULL,
    op_id      text NOT NULL,
    result     jsonb NOT NULL,
    created_at timestamptz NOT NULL,
    CONSTRAINT {{name "idempotency_pkey"}} PRIMARY KEY (key_id, idem_key)
);

-- For expiring old records later.
CREATE INDEX {{name "idempotency_created_idx"}} ON {{table "idempotency"}} (created_at);
