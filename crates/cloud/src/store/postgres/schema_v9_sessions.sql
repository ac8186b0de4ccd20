-- When each session was last used (to the nearest few minutes), for the user's session list.
-- NULL for sessions from before this column, and for sessions moved in from another region.
ALTER TABLE sessions ADD COLUMN last_seen_at BIGINT;
