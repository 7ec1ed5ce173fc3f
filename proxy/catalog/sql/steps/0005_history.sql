-- PLACEHOLDER on branch catalogsec only: step 5 belongs to branch history (0005_history.sql).
-- It exists here because step numbers may have no gaps (install.step_versions); at merge, take
-- history's file.
SELECT 1;
