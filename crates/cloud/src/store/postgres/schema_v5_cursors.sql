-- Sync cursors that survive a move (issue 12, finding 2). A message's place in its mailbox
-- (`box_seq`, what `GET /v1/messages?after=` counts) and a backup item's `change_seq` (what
-- `?since=` counts) are numbered per user, from counters that move with the user, instead of
-- from counters of the region: a cursor a client holds from one region means the same at the
-- next, and what the target adds is numbered after everything it was given.
CREATE TABLE user_counters (
    user_id TEXT NOT NULL,
    name    TEXT NOT NULL CHECK (name IN ('inbox', 'sent', 'backup')),
    value   BIGINT NOT NULL,
    PRIMARY KEY (user_id, name)
);

ALTER TABLE messages ADD COLUMN box_seq BIGINT;
UPDATE messages SET box_seq = seq;
CREATE UNIQUE INDEX messages_by_box_seq ON messages(owner_id, box, box_seq);

INSERT INTO user_counters (user_id, name, value)
    SELECT owner_id, box, MAX(seq) FROM messages GROUP BY owner_id, box;
INSERT INTO user_counters (user_id, name, value)
    SELECT owner_id, 'backup', MAX(change_seq) FROM backup_items GROUP BY owner_id;
