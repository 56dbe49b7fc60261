-- Service levels (issue 10): response clocks on a business calendar, escalations, accounts.
--
-- Escalation mail goes through the outbox like any other, as kind 'escalation'. SQLite cannot
-- ALTER a CHECK constraint; widening one (a value no old row holds) is the case SQLite's
-- "Making Other Kinds Of Table Schema Changes" allows through writable_schema. The edit adds
-- 'escalation' after 'notification' in whatever list the CHECK holds by then, so it also
-- works after another migration widened the same list; the runner bumps schema_version
-- afterwards and checks integrity.
PRAGMA writable_schema = ON;
UPDATE sqlite_schema
   SET sql = replace(sql, '''notification''', '''notification'', ''escalation''')
 WHERE type = 'table' AND name = 'outbox' AND instr(sql, '''escalation''') = 0;
PRAGMA writable_schema = OFF;

-- One row per ticket and clock. The only clock is the first response: from the request's
-- arrival to the first answer relayed to the customer (the earliest outbound message on the
-- ticket), paused while the ticket is pending (status_changed events).
CREATE TABLE sla_clocks (
    ticket_id    INTEGER NOT NULL REFERENCES tickets (id),
    clock        TEXT NOT NULL CHECK (clock IN ('first_response')),
    started_at   INTEGER NOT NULL,  -- arrival: IMAP INTERNALDATE when known, else when stored
    budget       INTEGER NOT NULL,  -- seconds promised (the later bound of the promise)
    business     INTEGER NOT NULL,  -- 1: the seconds count inside working hours ([sla])
    due_at       INTEGER NOT NULL,  -- as the acknowledgement promised it, before any pause
    satisfied_at INTEGER,           -- confirm_only: the acknowledgement was the answer
    at_risk_at   INTEGER,           -- when the "at risk" notification was queued (or skipped)
    breached_at  INTEGER,           -- when the "breached" notification was queued
    PRIMARY KEY (ticket_id, clock)
) WITHOUT ROWID;

-- Customer accounts, imported from CSV (`supportd accounts import`).
CREATE TABLE accounts (
    email       TEXT PRIMARY KEY,          -- lower-case
    name        TEXT NOT NULL DEFAULT '',
    plan        TEXT NOT NULL DEFAULT '',
    project_url TEXT NOT NULL DEFAULT '',  -- as written
    project_key TEXT NOT NULL DEFAULT '',  -- host and path, lower-case, for matching
    company     TEXT NOT NULL DEFAULT '',
    created_at  TEXT NOT NULL DEFAULT '',  -- as written
    extra       TEXT NOT NULL DEFAULT '[]',-- JSON [[column, value], ...]: other columns, in file order
    imported_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX accounts_project ON accounts (project_key);

-- The account a ticket's request was matched to, and how.
CREATE TABLE ticket_accounts (
    ticket_id  INTEGER PRIMARY KEY REFERENCES tickets (id),
    email      TEXT NOT NULL,
    matched_by TEXT NOT NULL CHECK (matched_by IN ('sender', 'email_in_message', 'project_url'))
);
