-- ualign store, schema version 2: invitations. Released migrations are never edited.

-- Single-participant invitation codes (`ualign invite`). Only a code's SHA-256 is kept;
-- each admits the one pseudonym it was made for.
CREATE TABLE invitations (
    code_hash       TEXT PRIMARY KEY,
    participant_id  TEXT NOT NULL UNIQUE,
    created_at      TEXT NOT NULL,
    used_at         TEXT                               -- first admission
);
