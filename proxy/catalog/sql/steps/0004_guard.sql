-- PLACEHOLDER on branch catalogsec only: step 4 belongs to branch dbguard (0004_guard.sql).
-- It exists here because step numbers may have no gaps (install.step_versions); at merge, take
-- dbguard's file.
SELECT 1;
