-- ualign store, schema version 1. Released migrations are never edited: add a new file.

CREATE TABLE study (
    id           INTEGER PRIMARY KEY CHECK (id = 1),  -- a database belongs to one study
    name         TEXT NOT NULL,
    hash         TEXT NOT NULL,                        -- SHA-256 of the study file and its prompt files
    source       TEXT NOT NULL,                        -- the study file's text
    path         TEXT NOT NULL,
    created_at   TEXT NOT NULL
);

CREATE TABLE prompts (
    id           TEXT PRIMARY KEY,
    text         TEXT NOT NULL,
    tags         TEXT NOT NULL DEFAULT '[]'            -- JSON array
);

CREATE TABLE policies (
    name         TEXT PRIMARY KEY,
    source       TEXT NOT NULL CHECK (source IN ('model', 'imported')),
    pool_size    INTEGER NOT NULL,
    model_path   TEXT,
    decoding     TEXT                                  -- JSON of the decoding settings
);

CREATE TABLE candidates (
    id              INTEGER PRIMARY KEY,
    policy          TEXT NOT NULL REFERENCES policies(name),
    prompt_id       TEXT NOT NULL REFERENCES prompts(id),
    sample_index    INTEGER NOT NULL,
    text            TEXT NOT NULL,
    token_count     INTEGER,
    finish_reason   TEXT,
    logprob         REAL,
    seed            INTEGER,
    settings        TEXT,                              -- JSON of the generation settings used
    model_hash      TEXT,
    provider        TEXT,                              -- execution provider and device, or 'imported'
    prefill_ms      REAL,
    decode_ms       REAL,
    meta            TEXT,                              -- JSON metadata carried from an import
    created_at      TEXT NOT NULL,
    UNIQUE (policy, prompt_id, sample_index)
);

-- Deliberately broken texts for attention checks, derived from a real candidate.
CREATE TABLE attention_texts (
    id              INTEGER PRIMARY KEY,
    candidate_id    INTEGER NOT NULL REFERENCES candidates(id),
    text            TEXT NOT NULL,
    UNIQUE (candidate_id)
);

CREATE TABLE participants (
    id              TEXT PRIMARY KEY,                  -- pseudonym
    consent_at      TEXT,
    created_at      TEXT NOT NULL,
    completed_at    TEXT
);

CREATE TABLE sessions (
    id              INTEGER PRIMARY KEY,
    participant_id  TEXT NOT NULL REFERENCES participants(id),
    started_at      TEXT NOT NULL,
    ended_at        TEXT,
    end_reason      TEXT,
    client          TEXT                               -- ualign version, terminal size
);

-- The participant's whole trial list, frozen at enrolment so that resuming never repeats
-- or skips a trial.
CREATE TABLE trials (
    id              INTEGER PRIMARY KEY,
    participant_id  TEXT NOT NULL REFERENCES participants(id),
    position        INTEGER NOT NULL,                  -- 0-based order of presentation
    block           TEXT NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('best_of_k', 'rank', 'attention', 'repeat')),
    mode            TEXT NOT NULL CHECK (mode IN ('pick', 'order')),
    prompt_id       TEXT NOT NULL REFERENCES prompts(id),
    k               INTEGER,                           -- best_of_k: candidates from policy_a
    policy_a        TEXT,
    policy_b        TEXT,
    slots           TEXT NOT NULL,                     -- JSON: what fills each displayed slot, in displayed order
    repeat_of       INTEGER REFERENCES trials(id),
    candidate_ids   TEXT,                              -- JSON: displayed candidate ids in displayed order, set when shown
    session_id      INTEGER REFERENCES sessions(id),
    shown_at        TEXT,
    UNIQUE (participant_id, position)
);

CREATE TABLE answers (
    trial_id        INTEGER PRIMARY KEY REFERENCES trials(id),
    choice          INTEGER,                           -- displayed slot (0-based) picked as favourite
    ordering        TEXT,                              -- JSON: displayed slots, best first (order mode)
    no_preference   INTEGER NOT NULL DEFAULT 0,
    skipped         INTEGER NOT NULL DEFAULT 0,
    response_ms     INTEGER NOT NULL,
    answered_at     TEXT NOT NULL,
    session_id      INTEGER REFERENCES sessions(id)
);

CREATE INDEX candidates_pool ON candidates(policy, prompt_id);
CREATE INDEX trials_participant ON trials(participant_id, position);
