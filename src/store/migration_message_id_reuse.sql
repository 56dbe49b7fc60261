-- A Message-ID is not always unique: a CRM or a web form may stamp one id on every mail it
-- sends. Two different messages with one id are both kept; the id stays indexed for dedupe
-- and threading, no longer unique.
DROP INDEX messages_id;
CREATE INDEX messages_id ON messages (message_id, direction);
