-- Engine v2 (issue #9): promises recorded before they are served, explicit revocations,
-- and what the engine knows about the KV cache. All times are integer ms since the epoch.

-- An explicit revocation (revoke_previous, POST /v1/admin/revoke): recorded before the key is
-- deleted at Baseten, so a run that stops half-way leaves the intent behind for the next run.
-- A previous key is revoked when revoke_at has passed (explicit) or when its recorded
-- expires_at has passed and KV has held a newer generation long enough (kv_replaced_at).
ALTER TABLE keys ADD COLUMN revoke_at INTEGER;
ALTER TABLE keys ADD COLUMN revoke_reason TEXT;
-- When the engine saw KV hold a generation newer than this key (its KV put landed, or a drop):
-- from kv_replaced_at + 65 s (KV edge cache 60 s + isolate memory 5 s) no location serves it.
ALTER TABLE keys ADD COLUMN kv_replaced_at INTEGER;

-- The generation the engine last wrote to (or dropped from) KV for the set, and when. A
-- current key whose generation differs is "behind": the next run of any path rewrites KV.
ALTER TABLE sets ADD COLUMN cached_generation INTEGER;
ALTER TABLE sets ADD COLUMN cached_at INTEGER;

-- Engine-wide facts, one row each: 'last_tick_at' (the cron's last tick; status says the
-- engine is stalled when it is older than 3 minutes).
CREATE TABLE meta (
  name  TEXT PRIMARY KEY,
  value INTEGER NOT NULL
);
