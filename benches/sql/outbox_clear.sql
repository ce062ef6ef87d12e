-- Owed events in the job row (before 6e11596) against a table of their
-- own (since, src/store/postgres/owed.rs): the claims and outbox clears
-- of 30,000 one-shot jobs, in 150 batches of 200, one session, each batch
-- its own transaction, the statements as src/store/postgres/sql.rs writes
-- them (rows locked in id order first; in the table variant the whole
-- clear, which also clears the flags of rows that have any and answers
-- the jobs still at their version). Prints the
-- milliseconds of each and the WAL it writes a job.
--   psql -v variant=row -f benches/sql/outbox_clear.sql    (before)
--   psql -v variant=table -f benches/sql/outbox_clear.sql  (the owed table)
-- Works in a schema `mb` of its own, dropped before and after.
DROP SCHEMA IF EXISTS mb CASCADE;
CREATE SCHEMA mb;
CREATE TABLE mb.jobs (
    id             bytea          PRIMARY KEY CHECK (octet_length(id) = 12),
    name           text           NOT NULL,
    description    text           NOT NULL,
    schedule_time  timestamptz(3) NOT NULL,
    created_at     timestamptz(3) NOT NULL,
    updated_at     timestamptz(3) NOT NULL,
    status         smallint       NOT NULL,
    job_type       smallint       NOT NULL,
    job_data       text           NOT NULL,
    scheduled_key  bigint         NOT NULL,
    version        bigint         NOT NULL,
    pending_create boolean        NOT NULL,
    pending_update boolean        NOT NULL,
    pending_run    boolean        NOT NULL,
    trace_parent   text,
    recurrence text, armed boolean NOT NULL DEFAULT false, client_key text, attempts text,
    pending_dead_letter boolean NOT NULL DEFAULT false, pending_delete boolean NOT NULL DEFAULT false);
CREATE UNIQUE INDEX ON mb.jobs (client_key) WHERE client_key IS NOT NULL;
CREATE INDEX ON mb.jobs (schedule_time, id) WHERE armed;
CREATE INDEX ON mb.jobs (schedule_time, id) WHERE (status = 2 AND recurrence IS NULL);
CREATE INDEX ON mb.jobs (schedule_time, id);
CREATE INDEX ON mb.jobs (updated_at, id) WHERE (pending_create OR pending_update OR pending_run OR pending_dead_letter OR pending_delete);
CREATE INDEX ON mb.jobs (updated_at, id) WHERE (status IN (4, 5) AND recurrence IS NULL);
CREATE INDEX ON mb.jobs (updated_at, id) WHERE status = 3;
INSERT INTO mb.jobs (id, name, description, schedule_time, created_at, updated_at, status, job_type, job_data, scheduled_key, version, pending_create, pending_update, pending_run)
SELECT decode(lpad(to_hex(g), 24, '0'), 'hex'), 'bench-job-' || g, 'fire bench', now() + interval '1 minute' + g * interval '33 microseconds', now(), now(), 2, 0,
       '{"to":"someone@example.com","subject":"hello","body":"a job of the fire benchmark"}', g, 1, false, false, false
FROM generate_series(1, 30000) g;
CREATE TABLE mb.batches AS
SELECT b, array_agg(id ORDER BY id) AS ids, array_agg(scheduled_key ORDER BY id) AS keys, array_agg(version + 1 ORDER BY id) AS versions
FROM (SELECT id, scheduled_key, version, (row_number() OVER (ORDER BY schedule_time) - 1) / 200 AS b FROM mb.jobs) s GROUP BY b;
VACUUM ANALYZE mb.jobs;
CREATE TABLE mb.owed (id bytea NOT NULL, version bigint NOT NULL, updated_at timestamptz(3) NOT NULL, PRIMARY KEY (id, version));
CREATE OR REPLACE PROCEDURE mb.fire() LANGUAGE plpgsql AS $$
DECLARE r record; n int; t0 timestamptz; t1 timestamptz; t2 timestamptz; w0 pg_lsn; w1 pg_lsn; w2 pg_lsn;
BEGIN
  t0 := clock_timestamp(); w0 := pg_current_wal_insert_lsn();
  FOR r IN SELECT * FROM mb.batches ORDER BY b LOOP
    WITH due AS MATERIALIZED (SELECT j.id AS due_id FROM (SELECT * FROM unnest(r.ids, r.keys) AS f(id, key) ORDER BY f.id) AS f
      CROSS JOIN LATERAL (SELECT j.id FROM mb.jobs AS j WHERE j.id = f.id AND j.scheduled_key = f.key AND j.status + 0 = 2 AND j.recurrence IS NULL FOR UPDATE) AS j),
    upd AS (UPDATE mb.jobs AS j SET status = 3, pending_run = true, version = j.version + 1, updated_at = now()
      WHERE j.id = ANY(ARRAY(SELECT due_id FROM due)) RETURNING j.*)
    SELECT count(*) INTO n FROM upd;
    COMMIT;
  END LOOP;
  t1 := clock_timestamp(); w1 := pg_current_wal_insert_lsn();
  FOR r IN SELECT * FROM mb.batches ORDER BY b LOOP
    WITH locked AS MATERIALIZED (SELECT j.id AS locked_id FROM (SELECT * FROM unnest(r.ids, r.versions) AS f(id, version) ORDER BY f.id) AS f
      CROSS JOIN LATERAL (SELECT j.id FROM mb.jobs AS j WHERE j.id = f.id AND j.version = f.version FOR UPDATE) AS j),
    upd AS (UPDATE mb.jobs AS j SET pending_create = false, pending_update = false, pending_run = false, pending_dead_letter = false, pending_delete = false
      WHERE j.id = ANY(ARRAY(SELECT locked_id FROM locked)) RETURNING j.id)
    SELECT count(*) INTO n FROM upd;
    COMMIT;
  END LOOP;
  t2 := clock_timestamp(); w2 := pg_current_wal_insert_lsn();
  RAISE NOTICE 'owed in the row: claims % ms, clears % ms, WAL bytes a job: claim %, clear %; last batch %', round(extract(epoch FROM t1 - t0) * 1000), round(extract(epoch FROM t2 - t1) * 1000), round(pg_wal_lsn_diff(w1, w0) / 30000), round(pg_wal_lsn_diff(w2, w1) / 30000), n;
END $$;
CREATE OR REPLACE PROCEDURE mb.fire_owed() LANGUAGE plpgsql AS $$
DECLARE r record; n int; t0 timestamptz; t1 timestamptz; t2 timestamptz; w0 pg_lsn; w1 pg_lsn; w2 pg_lsn;
BEGIN
  t0 := clock_timestamp(); w0 := pg_current_wal_insert_lsn();
  FOR r IN SELECT * FROM mb.batches ORDER BY b LOOP
    WITH due AS MATERIALIZED (SELECT j.id AS due_id FROM (SELECT * FROM unnest(r.ids, r.keys) AS f(id, key) ORDER BY f.id) AS f
      CROSS JOIN LATERAL (SELECT j.id FROM mb.jobs AS j WHERE j.id = f.id AND j.scheduled_key = f.key AND j.status + 0 = 2 AND j.recurrence IS NULL FOR UPDATE) AS j),
    upd AS (UPDATE mb.jobs AS j SET status = 3, version = j.version + 1, updated_at = now()
      WHERE j.id = ANY(ARRAY(SELECT due_id FROM due)) RETURNING j.*),
    ins AS (INSERT INTO mb.owed (id, version, updated_at) SELECT id, version, updated_at FROM upd)
    SELECT count(*) INTO n FROM upd;
    COMMIT;
  END LOOP;
  t1 := clock_timestamp(); w1 := pg_current_wal_insert_lsn();
  FOR r IN SELECT * FROM mb.batches ORDER BY b LOOP
    WITH f AS MATERIALIZED (SELECT * FROM unnest(r.ids, r.versions) AS f(id, version) ORDER BY id),
    flagged AS MATERIALIZED (SELECT j.id AS flagged_id FROM f CROSS JOIN LATERAL (SELECT j.id FROM mb.jobs AS j
      WHERE j.id = f.id AND j.version = f.version AND (pending_create OR pending_update OR pending_run OR pending_dead_letter OR pending_delete) FOR UPDATE) AS j),
    unflagged AS (UPDATE mb.jobs AS j SET pending_create = false, pending_update = false, pending_run = false, pending_dead_letter = false, pending_delete = false
      WHERE j.id = ANY(ARRAY(SELECT flagged_id FROM flagged)) RETURNING j.id),
    paid AS MATERIALIZED (SELECT o.id AS paid_id FROM f CROSS JOIN LATERAL (SELECT o.id FROM mb.owed AS o WHERE o.id = f.id AND o.version = f.version FOR UPDATE) AS o),
    gone AS (DELETE FROM mb.owed AS o WHERE o.id = ANY(ARRAY(SELECT paid_id FROM paid)) RETURNING o.id),
    cleared AS (SELECT id FROM unflagged UNION SELECT id FROM gone
      UNION SELECT j.id FROM f CROSS JOIN LATERAL (SELECT j.id FROM mb.jobs AS j WHERE j.id = f.id AND j.version = f.version OFFSET 0) AS j)
    SELECT count(*) INTO n FROM cleared;
    COMMIT;
  END LOOP;
  t2 := clock_timestamp(); w2 := pg_current_wal_insert_lsn();
  RAISE NOTICE 'owed in a table: claims % ms, clears % ms, WAL bytes a job: claim %, clear %; last batch %', round(extract(epoch FROM t1 - t0) * 1000), round(extract(epoch FROM t2 - t1) * 1000), round(pg_wal_lsn_diff(w1, w0) / 30000), round(pg_wal_lsn_diff(w2, w1) / 30000), n;
END $$;
CHECKPOINT;
SELECT CASE WHEN :'variant' = 'table' THEN 'CALL mb.fire_owed();' ELSE 'CALL mb.fire();' END AS call \gset
:call
DROP SCHEMA mb CASCADE;
