-- Outbound event webhooks (EVENT_WEBHOOKS): the last delivery failure per subscriber, so
-- /v1/admin/status can show a receiver that stopped accepting events. Deliveries are
-- fire-and-forget; this table is written after the fact and never on a rotation's path.
--
-- `subscriber` is the sha-256 of the subscriber URL, not the URL: webhook URLs often carry a
-- credential in their path or query. `origin` (scheme://host[:port]) is what operators see.
CREATE TABLE event_deliveries (
  subscriber         TEXT PRIMARY KEY,
  origin             TEXT    NOT NULL,
  last_success_at    INTEGER,
  failed_at          INTEGER,           -- the last failure (after every retry)
  failed_event_id    TEXT,              -- the webhook-id the receiver would have seen
  failed_event_type  TEXT,
  failed_model_set   TEXT,
  failed_generation  INTEGER,
  failed_attempts    INTEGER,
  failed_error       TEXT               -- "HTTP 500", "timeout", ...: never a secret
);
