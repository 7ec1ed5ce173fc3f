-- The database-side guard's event triggers (routines/guard.sql explains what they do).
--
-- Creating an event trigger takes a superuser (on managed services, their admin role:
-- rds_superuser, neon_superuser, ...). install.py therefore applies this file apart from the
-- steps and routines, only when the triggers are missing, inside a savepoint, and carries on
-- without it when the installing role lacks the privilege: the text guard then works alone.
-- Event trigger names are per database, so they carry the catalog schema's name.

DROP EVENT TRIGGER IF EXISTS @extschema@_guard_ddl_command_end;
DROP EVENT TRIGGER IF EXISTS @extschema@_guard_sql_drop;

CREATE EVENT TRIGGER @extschema@_guard_ddl_command_end ON ddl_command_end
    EXECUTE FUNCTION @extschema@._ddlguard_on_ddl_command_end();
CREATE EVENT TRIGGER @extschema@_guard_sql_drop ON sql_drop
    EXECUTE FUNCTION @extschema@._ddlguard_on_sql_drop();

-- ALWAYS: `SET session_replication_role = replica` must not switch the guard off.
ALTER EVENT TRIGGER @extschema@_guard_ddl_command_end ENABLE ALWAYS;
ALTER EVENT TRIGGER @extschema@_guard_sql_drop ENABLE ALWAYS;

-- Shapes stored while the triggers were absent may be stale: start from the live tables.
SELECT @extschema@._ddlguard_rebaseline();

-- Proxies already running reload their snapshot, which now says the guard is active.
SELECT @extschema@._notify('guard', NULL, NULL, NULL);
