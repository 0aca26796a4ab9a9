-- The rotator's own secrets (issue #11): re-sealing under a new ENCRYPTION_KEY and the
-- management key's last answer. Nothing here holds key material.

-- Stored keys that no configured key opened when last tried (DESIGN §4.9): /healthz answers
-- 503 undecryptable_keys naming their sets. `location` is 'd1:<generation>' or 'kv'.
-- `keyring` is the set of key ids configured when it was found (sorted, space-separated):
-- after the keyring changes (the missing key put back), the next tick tries again.
CREATE TABLE undecryptable_keys (
  model_set  TEXT    NOT NULL,
  location   TEXT    NOT NULL,
  generation INTEGER,
  sealed_by  TEXT,              -- key id recorded in the ciphertext; NULL for the format without one
  keyring    TEXT    NOT NULL,
  found_at   INTEGER NOT NULL,
  PRIMARY KEY (model_set, location)
);

-- Small named values: 'management_key' = JSON {"ok", "checked_at", "error"} (DESIGN §4.10).
CREATE TABLE secrets_state (
  name  TEXT PRIMARY KEY,
  value TEXT    NOT NULL,
  at    INTEGER NOT NULL
);

-- Re-sealing looks for ciphertexts not sealed by the primary: `k1:<key id>:` is the first 12
-- characters (src/keyring.ts), so this index makes that lookup cost what it finds.
CREATE INDEX keys_sealed_by ON keys(substr(ciphertext, 1, 12)) WHERE ciphertext IS NOT NULL;

-- When a new key of the set last failed verification (DESIGN §4.8, engine v2): the cron's
-- scheduled mints back off for a few minutes from then (the current key's promise keeps being
-- extended), so a verify endpoint that keeps failing does not mint and delete a key every tick.
ALTER TABLE sets ADD COLUMN verify_failed_at INTEGER;
