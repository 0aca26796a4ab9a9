-- Operators (audit route, metrics, overdue events). All times are ms since the epoch (UTC).

-- (audit.consumer, the consumer a consumer action concerns, is added by 0004_identity.sql.)
-- GET /v1/admin/audit pages newest first by id, for one set or all (the primary key serves "all").
CREATE INDEX audit_set_id ON audit(model_set, id);
-- Recent failed runs per set for the status timeline.
CREATE INDEX audit_action_at ON audit(action, at);

-- Recently revoked generations per set for the status timeline (live ones use keys_live).
CREATE INDEX keys_revoked_at ON keys(revoked_at) WHERE revoked_at IS NOT NULL;

-- Running totals of audit actions per set, kept by the database in the same transaction as the
-- audit row itself, so /metrics (bkr_rotations_total) reads one row per set and action instead of
-- counting the whole audit trail on every scrape.
CREATE TABLE audit_counts (
  model_set TEXT    NOT NULL,
  action    TEXT    NOT NULL,
  n         INTEGER NOT NULL,
  PRIMARY KEY (model_set, action)
);
INSERT INTO audit_counts (model_set, action, n) SELECT model_set, action, COUNT(*) FROM audit GROUP BY model_set, action;
CREATE TRIGGER audit_counts_insert AFTER INSERT ON audit
BEGIN
  INSERT INTO audit_counts (model_set, action, n) VALUES (NEW.model_set, NEW.action, 1)
  ON CONFLICT (model_set, action) DO UPDATE SET n = n + 1;
END;

-- `rotation.overdue` goes out once per set and generation: the first tick that finds the
-- generation's rotation more than 5 minutes overdue records it here, later ticks see the row.
CREATE TABLE overdue_notices (
  model_set  TEXT    NOT NULL,
  generation INTEGER NOT NULL,
  at         INTEGER NOT NULL,
  PRIMARY KEY (model_set, generation)
);
