#!/usr/bin/python3
"""Captures tests/data/pgoutput_basic.tsv from a throwaway PostgreSQL 15:
one line per pgoutput message (protocol version 1, messages on), as
"LSN<TAB>hex bytes", the way pg_logical_slot_peek_binary_changes returns
them.  The unit suite (tests/unit/test_decoder_pgoutput.c) and the fuzz
corpus are built on this file; rerun this script only to extend it, then
update the expectations there.

    PYTHONPATH=tests/integration tests/data/capture_pgoutput.py > tests/data/pgoutput_basic.tsv
"""
import harness

pg = harness.Postgres()
try:
    pg.sql("""
        CREATE TABLE ledger (id int PRIMARY KEY, note text);
        ALTER TABLE ledger REPLICA IDENTITY FULL;
        CREATE PUBLICATION golden FOR TABLE outbox, orders, ledger;
        SELECT pg_create_logical_replication_slot('golden', 'pgoutput');
    """)
    workload = [
        # 1: two events and a noise row in one transaction
        """BEGIN;
           INSERT INTO orders VALUES (1, 'NEW');
           INSERT INTO outbox (id, aggregatetype, aggregateid, type, payload, created_at)
           VALUES ('4fe6ea83-a619-4e2e-a476-da22885f542c', 'order', 'o-1', 'OrderCreated',
                   '{"total": 12.5, "items": ["a", "b"]}', '2026-11-21 20:35:21.352341+00'),
                  ('f8c565af-f077-457c-9560-bba20bec129d', 'order', 'o-2', 'OrderCreated',
                   NULL, '2026-11-21 20:35:21.352341+00');
           COMMIT;""",
        # 2: unicode, an empty string and a tab in text values
        """INSERT INTO outbox (id, aggregatetype, aggregateid, type, payload, tenant)
           VALUES ('00000000-0000-0000-0000-000000000001', 'kunde', 'k-ü', 'Grüße',
                   '{"name": "Zoë \\u00e9 😀"}', E'a\\tb');""",
        # 3: an UPDATE of a TOASTed row that leaves the payload alone
        """INSERT INTO outbox (id, aggregatetype, aggregateid, type, payload)
           VALUES ('00000000-0000-0000-0000-000000000002', 'big', 'b-1', 'Big',
                   jsonb_build_object('blob', (SELECT string_agg(md5(g::text), '')
                                              FROM generate_series(1, 400) g)));
           UPDATE outbox SET type = 'Bigger' WHERE aggregateid = 'b-1';""",
        # 4: DELETE by key and by the full row, and a TRUNCATE of two tables
        """DELETE FROM outbox WHERE aggregateid = 'o-2';
           INSERT INTO ledger VALUES (1, NULL);
           DELETE FROM ledger WHERE id = 1;
           TRUNCATE orders, ledger;""",
        # 5: a column added mid-stream (a new Relation message follows)
        """ALTER TABLE outbox ADD COLUMN region text;
           INSERT INTO outbox (id, aggregatetype, aggregateid, type, payload, region)
           VALUES ('00000000-0000-0000-0000-000000000003', 'order', 'o-3', 'OrderShipped',
                   '[]', 'eu');""",
        # 6: logical decoding messages, transactional and not
        """BEGIN;
           SELECT pg_logical_emit_message(true, 'outbox',
             '{"id": "00000000-0000-0000-0000-000000000004", "aggregatetype": "order", '
             '"aggregateid": "o-4", "type": "OrderPaid", "payload": {"paid" : true}}');
           SELECT pg_logical_emit_message(true, 'other', 'not ours');
           COMMIT;
           SELECT pg_logical_emit_message(false, 'outbox', '{"id": "x"}');""",
        # 7: a commit after it, so the non-transactional message is flushed
        "INSERT INTO orders VALUES (2, 'NEW');",
    ]
    for sql in workload:
        pg.sql(sql)
    rows = pg.sql("SELECT lsn, encode(data, 'hex') FROM pg_logical_slot_peek_binary_changes("
                  "'golden', NULL, NULL, 'proto_version', '1', "
                  "'publication_names', 'golden', 'messages', 'true')")
    for lsn, data in rows:
        print("%s\t%s" % (lsn, data))
finally:
    pg.destroy()
