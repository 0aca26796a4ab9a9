-- Storage schema of baseten-key-rotator. D1 is the source of truth; KV only caches.
-- All times are integer milliseconds since the epoch (UTC).

-- One row per model set ever seen: the lease (a compare-and-set lock with an expiry,
-- so a run that dies frees the set by itself) and the outcome of the last run.
CREATE TABLE sets (
  model_set        TEXT PRIMARY KEY,
  lease_holder     TEXT,
  lease_expires_at INTEGER NOT NULL DEFAULT 0,
  last_trigger     TEXT,
  last_outcome     TEXT,      -- 'rotated' | 'noop' | 'failed' | 'busy'
  last_error       TEXT,      -- never key material: upstream status and error text only
  last_run_at      INTEGER
);

-- One row per key this worker ever asked Baseten for.
-- state: pending -> current -> previous -> revoked, or pending -> abandoned.
-- `name` is recorded (pending) before Baseten is called, so a key whose mint answer
-- was lost can always be found by name and deleted.
-- `ciphertext` is base64(iv || AES-256-GCM(api_key)), AAD "<set>:<generation>";
-- the plaintext key is never stored. `prefix` is Baseten's public key id (needed to revoke).
CREATE TABLE keys (
  model_set   TEXT    NOT NULL,
  generation  INTEGER NOT NULL,
  state       TEXT    NOT NULL CHECK (state IN ('pending','current','previous','revoked','abandoned')),
  name        TEXT    NOT NULL,
  model_ids   TEXT    NOT NULL,          -- JSON array, as minted
  overlap_ms  INTEGER NOT NULL,          -- the set's overlap when minted (promise arithmetic)
  prefix      TEXT,
  ciphertext  TEXT,
  created_at  INTEGER NOT NULL,          -- pending: when recorded; current: when minted
  refresh_at  INTEGER,                   -- when the next rotation is due
  expires_at  INTEGER,                   -- the latest expiry promised for this key
  replaced_at INTEGER,
  revoked_at  INTEGER,
  PRIMARY KEY (model_set, generation)
);
-- At most one current key per set, enforced by the database itself.
CREATE UNIQUE INDEX keys_one_current ON keys(model_set) WHERE state = 'current';
CREATE UNIQUE INDEX keys_name ON keys(name);
CREATE INDEX keys_live ON keys(state) WHERE state IN ('pending','current','previous');

-- Append-only audit trail of what happened to which generation (no key material).
CREATE TABLE audit (
  id         INTEGER PRIMARY KEY AUTOINCREMENT,
  model_set  TEXT    NOT NULL,
  generation INTEGER,
  action     TEXT    NOT NULL,           -- 'minted' | 'revoked' | 'abandoned' | 'failed'
  trigger    TEXT    NOT NULL,
  reason     TEXT,
  at         INTEGER NOT NULL
);
CREATE INDEX audit_set_at ON audit(model_set, at);

-- Final answers to inbound webhooks, by webhook-id, so a redelivery returns the first answer.
CREATE TABLE webhook_receipts (
  webhook_id  TEXT PRIMARY KEY,
  status      INTEGER NOT NULL,
  body        TEXT    NOT NULL,          -- the response body (rotation result: no key material)
  received_at INTEGER NOT NULL
);
CREATE INDEX webhook_receipts_received ON webhook_receipts(received_at);
