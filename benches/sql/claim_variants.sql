-- Three shapes of the one-shot claim (src/store/postgres/sql.rs,
-- claim_many_statement), each over 30,000 jobs in batches of 256, one
-- session, each batch its own transaction:
--   lock    the service's: rows locked in id order, then updated by key
--   nolock  one UPDATE ... FROM unnest(...): no lock pass (its lock order
--           is the plan's)
--   tid     the lock pass, then the update by the locked rows' ctid
-- Prints the milliseconds and the WAL a job:
--   psql -v variant=lock|nolock|tid -f benches/sql/claim_variants.sql
-- and the backend's CPU for the claims alone (as root, on the server's
-- machine; pauses of `pause` seconds around the CALL mark it):
--   benches/sql/backend_cpu.sh lock|nolock|tid
-- Works in a schema `mc` of its own, dropped before and after.
DROP SCHEMA IF EXISTS mc CASCADE;
CREATE SCHEMA mc;
CREATE TABLE mc.jobs (
    id bytea PRIMARY KEY CHECK (octet_length(id) = 12), name text NOT NULL, description text NOT NULL,
    schedule_time timestamptz(3) NOT NULL, created_at timestamptz(3) NOT NULL, updated_at timestamptz(3) NOT NULL,
    status smallint NOT NULL, job_type smallint NOT NULL, job_data text NOT NULL, scheduled_key bigint NOT NULL,
    version bigint NOT NULL, pending_create boolean NOT NULL, pending_update boolean NOT NULL, pending_run boolean NOT NULL,
    trace_parent text, recurrence text, armed boolean NOT NULL DEFAULT false, client_key text, attempts text,
    pending_dead_letter boolean NOT NULL DEFAULT false, pending_delete boolean NOT NULL DEFAULT false);
CREATE UNIQUE INDEX ON mc.jobs (client_key) WHERE client_key IS NOT NULL;
CREATE INDEX ON mc.jobs (schedule_time, id) WHERE armed;
CREATE INDEX ON mc.jobs (schedule_time, id) WHERE (status = 2 AND recurrence IS NULL);
CREATE INDEX sti ON mc.jobs (schedule_time, id);
CREATE INDEX ON mc.jobs (updated_at, id) WHERE (pending_create OR pending_update OR pending_run OR pending_dead_letter OR pending_delete);
CREATE INDEX ON mc.jobs (updated_at, id) WHERE (status IN (4, 5) AND recurrence IS NULL);
CREATE INDEX runi ON mc.jobs (updated_at, id) WHERE status = 3;
INSERT INTO mc.jobs (id, name, description, schedule_time, created_at, updated_at, status, job_type, job_data, scheduled_key, version, pending_create, pending_update, pending_run)
SELECT decode(lpad(to_hex((g * 7919) % 1000003), 24, '0'), 'hex'), 'bench-job-' || g, 'fire bench', now() + interval '1 minute' + g * interval '33 microseconds', now(), now(), 2, 0,
       '{"to":"someone@example.com","subject":"hello","body":"a job of the fire benchmark"}', g, 1, false, false, false
FROM generate_series(1, 30000) g;
CREATE TABLE mc.batches AS
SELECT b, array_agg(id ORDER BY id) AS ids, array_agg(scheduled_key ORDER BY id) AS keys
FROM (SELECT id, scheduled_key, (row_number() OVER (ORDER BY schedule_time) - 1) / 256 AS b FROM mc.jobs) s GROUP BY b;
VACUUM ANALYZE mc.jobs;
CREATE TABLE mc.owed (id bytea NOT NULL, version bigint NOT NULL, updated_at timestamptz(3) NOT NULL, PRIMARY KEY (id, version));
CREATE OR REPLACE PROCEDURE mc.claim(variant text) LANGUAGE plpgsql AS $$
DECLARE r record; n int; t0 timestamptz := clock_timestamp(); w0 pg_lsn := pg_current_wal_insert_lsn();
BEGIN
  FOR r IN SELECT * FROM mc.batches ORDER BY b LOOP
    CASE variant
    WHEN 'lock' THEN
      WITH due AS MATERIALIZED (SELECT j.id AS due_id FROM (SELECT * FROM unnest(r.ids, r.keys) AS f(id, key) ORDER BY f.id) AS f
        CROSS JOIN LATERAL (SELECT j.id FROM mc.jobs AS j WHERE j.id = f.id AND j.scheduled_key = f.key AND j.status + 0 = 2 AND j.recurrence IS NULL FOR UPDATE) AS j),
      upd AS (UPDATE mc.jobs AS j SET status = 3, version = j.version + 1, updated_at = now()
        WHERE j.id = ANY(ARRAY(SELECT due_id FROM due)) RETURNING j.*),
      ins AS (INSERT INTO mc.owed (id, version, updated_at) SELECT id, version, updated_at FROM upd)
      SELECT count(*) INTO n FROM upd;
    WHEN 'nolock' THEN
      WITH upd AS (UPDATE mc.jobs AS j SET status = 3, version = j.version + 1, updated_at = now()
        FROM unnest(r.ids, r.keys) AS f(id, key)
        WHERE j.id = f.id AND j.scheduled_key = f.key AND j.status + 0 = 2 AND j.recurrence IS NULL RETURNING j.*),
      ins AS (INSERT INTO mc.owed (id, version, updated_at) SELECT id, version, updated_at FROM upd)
      SELECT count(*) INTO n FROM upd;
    WHEN 'tid' THEN
      WITH due AS MATERIALIZED (SELECT j.ctid AS due_tid FROM (SELECT * FROM unnest(r.ids, r.keys) AS f(id, key) ORDER BY f.id) AS f
        CROSS JOIN LATERAL (SELECT j.ctid FROM mc.jobs AS j WHERE j.id = f.id AND j.scheduled_key = f.key AND j.status + 0 = 2 AND j.recurrence IS NULL FOR UPDATE) AS j),
      upd AS (UPDATE mc.jobs AS j SET status = 3, version = j.version + 1, updated_at = now()
        WHERE j.ctid = ANY(ARRAY(SELECT due_tid FROM due)) RETURNING j.*),
      ins AS (INSERT INTO mc.owed (id, version, updated_at) SELECT id, version, updated_at FROM upd)
      SELECT count(*) INTO n FROM upd;
    END CASE;
    COMMIT;
  END LOOP;
  RAISE NOTICE '%: % ms, WAL % B/job, last %', variant, round(extract(epoch FROM clock_timestamp() - t0) * 1000), round(pg_wal_lsn_diff(pg_current_wal_insert_lsn(), w0) / 30000), n;
END $$;
CHECKPOINT;
\if :{?pause}
SELECT pg_sleep(:pause);
\endif
CALL mc.claim(:'variant');
\if :{?pause}
SELECT pg_sleep(:pause);
\endif
DROP SCHEMA mc CASCADE;
