-- Outlook's conversation of a message: the 22-byte header block of its Thread-Index, in
-- lower-case hex. Inbound messages keep theirs; our own mail keeps the one we set, so a reply
-- from a client that dropped In-Reply-To (Outlook, Exchange) still finds its ticket.
ALTER TABLE messages ADD COLUMN conversation TEXT;
CREATE INDEX messages_conversation ON messages (conversation) WHERE conversation IS NOT NULL;
ALTER TABLE outbox ADD COLUMN conversation TEXT;
CREATE INDEX outbox_conversation ON outbox (conversation) WHERE conversation IS NOT NULL;
