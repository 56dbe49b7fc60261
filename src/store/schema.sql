-- Version 1. Times are unix seconds (UTC). Addresses are lower-case.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value BLOB NOT NULL
);

CREATE TABLE tickets (
    id            INTEGER PRIMARY KEY,           -- the n of CHT-n
    ref           TEXT NOT NULL UNIQUE,
    customer      TEXT NOT NULL,
    customer_name TEXT,
    subject       TEXT NOT NULL,
    category      TEXT NOT NULL,
    status        TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    due_at        INTEGER,
    language      TEXT NOT NULL,
    flags         TEXT NOT NULL DEFAULT ''      -- space-separated: bouncing delivery_failed oversized
);
CREATE INDEX tickets_status ON tickets (status, category);

CREATE TABLE participants (
    ticket_id INTEGER NOT NULL REFERENCES tickets (id),
    address   TEXT NOT NULL,
    role      TEXT NOT NULL CHECK (role IN ('customer', 'cc', 'agent')),
    PRIMARY KEY (ticket_id, address)
) WITHOUT ROWID;

CREATE TABLE messages (
    id          INTEGER PRIMARY KEY,
    ticket_id   INTEGER REFERENCES tickets (id),  -- NULL: automated mail that threads nowhere
    direction   TEXT NOT NULL CHECK (direction IN ('in', 'out')),
    message_id  TEXT NOT NULL,                    -- without brackets
    raw_sha256  TEXT NOT NULL,
    in_reply_to TEXT NOT NULL DEFAULT '',         -- space-separated, without brackets
    refs        TEXT NOT NULL DEFAULT '',
    from_addr   TEXT NOT NULL DEFAULT '',
    from_name   TEXT,
    to_addrs    TEXT NOT NULL DEFAULT '',
    subject     TEXT NOT NULL DEFAULT '',
    date        INTEGER,
    received_at INTEGER NOT NULL,
    action      TEXT NOT NULL,                    -- new reply automated linked quarantined ack notification
    category    TEXT,
    language    TEXT,
    automated   TEXT,                             -- reason, NULL for human mail
    new_text    TEXT NOT NULL DEFAULT '',
    full_text   TEXT NOT NULL DEFAULT '',
    attachments TEXT NOT NULL DEFAULT '[]',           -- JSON: [{filename, content_type, size}]
    size        INTEGER NOT NULL,
    raw         BLOB NOT NULL,                    -- exactly the bytes received (or headers only when oversized)
    source      TEXT NOT NULL DEFAULT '',         -- where it came from: file path, imap:mailbox:uidvalidity:uid
    warnings    TEXT NOT NULL DEFAULT '',         -- newline-separated parse warnings
    error       TEXT                              -- why it was quarantined
);
-- Inbound mail; what we send lives in the outbox. Our own mail coming back (a forwarding loop)
-- is stored here as inbound, so the id is unique per direction.
CREATE UNIQUE INDEX messages_id ON messages (message_id, direction);
CREATE INDEX messages_sha ON messages (raw_sha256);
CREATE INDEX messages_ticket ON messages (ticket_id);

-- Every id an inbound message on a ticket cites, so that two replies to a message we never saw
-- (one that only Cc'd someone else, a lost parent) still find each other's ticket.
CREATE TABLE message_refs (
    ref_id    TEXT NOT NULL,
    ticket_id INTEGER NOT NULL REFERENCES tickets (id),
    PRIMARY KEY (ref_id, ticket_id)
) WITHOUT ROWID;

CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY,
    kind            TEXT NOT NULL CHECK (kind IN ('ack', 'notification')),
    ticket_id       INTEGER REFERENCES tickets (id),
    to_addr         TEXT NOT NULL,
    subject         TEXT NOT NULL,
    message_id      TEXT NOT NULL,
    in_reply_to     TEXT,
    raw             BLOB NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('queued', 'sending', 'sent', 'failed', 'suppressed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    sent_at         INTEGER
);
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);
CREATE INDEX outbox_to ON outbox (to_addr, kind, created_at);
-- Replies cite our Message-IDs: they are looked up here.
CREATE UNIQUE INDEX outbox_message_id ON outbox (message_id);

CREATE TABLE events (
    id         INTEGER PRIMARY KEY,
    at         INTEGER NOT NULL,
    kind       TEXT NOT NULL,   -- ack_suppressed link_refused bounce reopened quarantined duplicate forged_reference
    ticket_id  INTEGER,
    message_id INTEGER,
    address    TEXT,
    detail     TEXT NOT NULL DEFAULT ''
);
CREATE INDEX events_kind ON events (kind, at);

CREATE TABLE addresses (
    address       TEXT PRIMARY KEY,
    bouncing_since INTEGER,
    bounce_count  INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

CREATE TABLE mailboxes (
    name          TEXT PRIMARY KEY,                 -- account/mailbox, e.g. support@example.test/INBOX
    uidvalidity   INTEGER,
    last_uid      INTEGER NOT NULL DEFAULT 0,       -- highest UID committed
    last_fetch_at INTEGER,
    last_error    TEXT,
    last_error_at INTEGER,
    auth_failing  INTEGER NOT NULL DEFAULT 0
);
