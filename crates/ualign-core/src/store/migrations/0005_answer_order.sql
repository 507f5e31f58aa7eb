-- ualign store, schema version 5: the order in which answers were committed, so that a
-- live view (the dashboard) reads only the answers committed since its last read instead
-- of every answer on every commit. An answer's `seq` is one more than the largest before
-- it, assigned in the transaction that stores it (SQLite commits one writer at a time, so
-- a later commit always has a larger one). Answers stored before schema 5 are numbered by
-- when they were answered. Released migrations are never edited.

ALTER TABLE answers ADD COLUMN seq INTEGER;
UPDATE answers SET seq = o.n
    FROM (SELECT trial_id, ROW_NUMBER() OVER (ORDER BY answered_at, trial_id) AS n FROM answers) AS o
    WHERE o.trial_id = answers.trial_id;
CREATE UNIQUE INDEX answers_seq ON answers(seq);
