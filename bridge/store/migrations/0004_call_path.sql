-- Which path carried a call: the ARI application, or the dialplan's FastAGI
-- fallback when the application was not registered.
ALTER TABLE calls ADD COLUMN path text NOT NULL DEFAULT 'ari' CHECK (path IN ('ari', 'agi'));
