-- Version 2: requests filed through the HTTP intake (src/http): the dashboard's API and the
-- form page. Times are unix seconds (UTC). Addresses are lower-case.
CREATE TABLE http_requests (
    id              INTEGER PRIMARY KEY,
    -- The synthesised message's Message-ID (without brackets), as in messages.message_id.
    message_id      TEXT NOT NULL UNIQUE,
    ticket_id       INTEGER NOT NULL REFERENCES tickets (id),
    email           TEXT NOT NULL,
    door            TEXT NOT NULL CHECK (door IN ('api', 'form')),
    -- The Idempotency-Key header (the form's CSRF nonce); NULL when the request had none.
    idempotency_key TEXT,
    -- SHA-256 of the request as validated, so a key reused for another request is refused.
    fingerprint     TEXT NOT NULL,
    -- The first answer (JSON), replayed to a retry with the same key.
    answer          TEXT NOT NULL,
    -- The account's details from the dashboard (JSON object), shown to the team.
    account         TEXT NOT NULL DEFAULT '{}',
    -- locale, project_url, page_url, browser as given (JSON object).
    context         TEXT NOT NULL DEFAULT '{}',
    created_at      INTEGER NOT NULL
);
CREATE UNIQUE INDEX http_requests_key ON http_requests (idempotency_key, email)
    WHERE idempotency_key IS NOT NULL;
-- The per-address rate limit counts an address's requests of the last hour.
CREATE INDEX http_requests_email ON http_requests (email, created_at);
CREATE INDEX http_requests_ticket ON http_requests (ticket_id);

-- /metrics counts the quarantine on every scrape; without this it would read every message.
CREATE INDEX messages_quarantined ON messages (id) WHERE action = 'quarantined';
