-- Consent changes that the regions holding the user's services have not all confirmed yet
-- (issue 12, finding 4). Every consent event of an account adds its user's row, or raises its
-- version to the history's new length, in the event's own commit; the row goes only once every
-- region holding one of the user's services has applied a state at least that new. The
-- housekeeping task pushes what is left, so a push lost to an unreachable region, or a
-- withdrawal whose final push was lost after a racing grant's push had landed, is reconciled to
-- the home's state instead of leaving a service region holding a grant the home withdrew.
CREATE TABLE consent_outbox (
    user_id TEXT PRIMARY KEY,
    version INTEGER NOT NULL
) STRICT;

CREATE TRIGGER consent_outbox_on_event AFTER INSERT ON consent_events
WHEN EXISTS (SELECT 1 FROM users WHERE id = NEW.user_id AND kind = 'account')
BEGIN
    INSERT INTO consent_outbox (user_id, version)
    VALUES (NEW.user_id, (SELECT count(*) FROM consent_events WHERE user_id = NEW.user_id))
    ON CONFLICT (user_id) DO UPDATE SET version = excluded.version;
END;
