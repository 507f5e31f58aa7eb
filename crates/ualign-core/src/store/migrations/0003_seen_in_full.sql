-- ualign store, schema version 3: whether a participant had seen every answer in full when
-- they confirmed theirs. Released migrations are never edited.

-- 1: every answer's last line had been on screen (an answer that fit whole counts as
-- seen); 0: the participant confirmed before; NULL: not measured (answers stored before
-- schema 3, and simulated participants, who have no screen).
ALTER TABLE answers ADD COLUMN seen_in_full INTEGER;
