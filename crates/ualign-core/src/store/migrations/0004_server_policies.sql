-- ualign store, schema version 4: policies may come from an OpenAI-compatible server
-- (`source = "server"`; model_path holds "MODEL @ BASE_URL"). SQLite cannot alter a CHECK
-- constraint, so the table is rebuilt as its ALTER TABLE documentation says (foreign keys
-- off while it runs, checked before the commit). Released migrations are never edited.

CREATE TABLE policies_v4 (
    name         TEXT PRIMARY KEY,
    source       TEXT NOT NULL CHECK (source IN ('model', 'server', 'imported')),
    pool_size    INTEGER NOT NULL,
    model_path   TEXT,
    decoding     TEXT                                  -- JSON of the decoding settings
);
INSERT INTO policies_v4 (name, source, pool_size, model_path, decoding)
    SELECT name, source, pool_size, model_path, decoding FROM policies;
DROP TABLE policies;
ALTER TABLE policies_v4 RENAME TO policies;
