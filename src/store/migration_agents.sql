-- Version 2: agents answer through supportd (relayed answers, internal notes, commands),
-- tickets wait on the customer (pending), and are assigned.
--
-- SQLite cannot ALTER a CHECK constraint. Widening one (a value the old rows never hold) is the
-- case SQLite's "Making Other Kinds Of Table Schema Changes" allows through writable_schema; the
-- migration runner bumps schema_version afterwards and checks integrity.

-- The agent who owns the ticket (lower-case address), when one was assigned.
ALTER TABLE tickets ADD COLUMN assignee TEXT;
-- When the ticket was last closed, for `support.reopen_days`.
ALTER TABLE tickets ADD COLUMN closed_at INTEGER;
-- The closed ticket this one continues, when a customer answered one closed too long ago.
ALTER TABLE tickets ADD COLUMN previous_ref TEXT;

PRAGMA writable_schema = ON;
UPDATE sqlite_schema
   SET sql = replace(sql, 'CHECK (status IN (''open'', ''closed''))',
                          'CHECK (status IN (''open'', ''pending'', ''closed''))')
 WHERE type = 'table' AND name = 'tickets';
UPDATE sqlite_schema
   SET sql = replace(sql, 'CHECK (kind IN (''ack'', ''notification''))',
                          'CHECK (kind IN (''ack'', ''notification'', ''relay'', ''agent_notice''))')
 WHERE type = 'table' AND name = 'outbox';
PRAGMA writable_schema = OFF;
