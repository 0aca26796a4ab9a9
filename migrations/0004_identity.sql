-- Identity (issue #10, #12 item 4): managed consumers, per-consumer tracking, and the audit
-- trail's `consumer` column (consumer_created / consumer_deleted rows name the consumer).

-- Consumers created through POST /v1/admin/consumers. Only the SHA-256 of the token is kept:
-- the token itself is shown once, in the 201 answer, and stored nowhere.
CREATE TABLE managed_consumers (
  name         TEXT PRIMARY KEY,          -- ^[a-z0-9][a-z0-9-]{0,63}$, never a configured consumer's name
  token_sha256 TEXT    NOT NULL UNIQUE,   -- lowercase hex
  model_sets   TEXT    NOT NULL,          -- JSON array of set ids
  created_at   INTEGER NOT NULL
);

-- Per consumer and set: the highest generation it fetched and when it first fetched that one.
-- Written off the response path, at most once per consumer, set and generation per location.
-- `lagging_notified` is the held generation a consumer.lagging event was sent for (once each).
CREATE TABLE consumer_seen (
  consumer         TEXT    NOT NULL,
  model_set        TEXT    NOT NULL,
  generation       INTEGER NOT NULL,
  first_at         INTEGER NOT NULL,
  lagging_notified INTEGER,
  PRIMARY KEY (consumer, model_set)
);

ALTER TABLE audit ADD COLUMN consumer TEXT;
