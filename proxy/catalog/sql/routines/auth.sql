-- The verifier lookup of auth.mode = "auth_query" (proxy/net/auth.py, VerifierLookup).
--
-- Security model: only a superuser may read pg_authid, so the function is SECURITY DEFINER and
-- owned by one; it returns a single role's SCRAM verifier (never an MD5 hash or a plain text
-- password) and only while the role's password is valid, so an expired role fails as on Postgres.
-- Nobody but its owner may execute it: the owner grants EXECUTE to the proxy's role. A verifier
-- lets its reader check a password and, with a client's proof, recover that client's key for one
-- login; it does not reveal the password.
--
-- Installed here only when the catalog role is a superuser. Otherwise a superuser runs the same
-- statements once by hand (README, "auth_query mode"); this file then leaves them alone.

DO $install$
BEGIN
    IF NOT (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
        RETURN;
    END IF;
    CREATE OR REPLACE FUNCTION @extschema@.auth_verifier(role_name text)
        RETURNS text
        LANGUAGE sql STABLE STRICT
        SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $body$
        SELECT rolpassword FROM pg_catalog.pg_authid
        WHERE rolname = role_name
          AND rolpassword LIKE 'SCRAM-SHA-256$%'
          AND (rolvaliduntil IS NULL OR rolvaliduntil > pg_catalog.now())
    $body$;
    REVOKE ALL ON FUNCTION @extschema@.auth_verifier(text) FROM PUBLIC;
END
$install$;
