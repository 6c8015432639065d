-- Two-channel recordings: each party on its own channel of one stereo file.
ALTER TABLE masking_sessions
    ADD COLUMN recording_channels smallint NOT NULL DEFAULT 1 CHECK (recording_channels IN (1, 2));
ALTER TABLE calls
    ADD COLUMN recording_channels smallint NOT NULL DEFAULT 1 CHECK (recording_channels IN (1, 2));
