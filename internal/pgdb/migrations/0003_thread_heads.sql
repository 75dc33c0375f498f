-- What a thread shows besides its steps: its name (and the name lower-cased
-- as Go does it, for the search of the thread list), chat profile,
-- creation time and metadata, each version of them written by one archive
-- entry (head_ms, head_seq: an older entry delivered late never replaces
-- a newer one); and the application values saved with the thread (vals,
-- with their own entry version). Names are bytea, kept byte for byte.
-- Thread ids sort byte by byte (COLLATE "C"), as the thread list's keyset
-- cursor compares them.
ALTER TABLE steps DROP CONSTRAINT steps_thread_id_fkey;
ALTER TABLE threads ALTER COLUMN id TYPE text COLLATE "C";
ALTER TABLE steps ALTER COLUMN thread_id TYPE text COLLATE "C";
ALTER TABLE deleted_threads ALTER COLUMN id TYPE text COLLATE "C";
ALTER TABLE steps ADD CONSTRAINT steps_thread_id_fkey
    FOREIGN KEY (thread_id) REFERENCES threads (id) ON DELETE CASCADE;

ALTER TABLE threads
    ADD COLUMN name         bytea NOT NULL DEFAULT '',
    ADD COLUMN name_folded  bytea NOT NULL DEFAULT '',
    ADD COLUMN chat_profile bytea NOT NULL DEFAULT '',
    ADD COLUMN created_at   timestamptz,
    ADD COLUMN metadata     json NOT NULL DEFAULT '{}',
    ADD COLUMN head_ms      bigint NOT NULL DEFAULT 0,
    ADD COLUMN head_seq     bigint NOT NULL DEFAULT 0,
    ADD COLUMN vals         json NOT NULL DEFAULT '{}',
    ADD COLUMN vals_ms      bigint NOT NULL DEFAULT 0,
    ADD COLUMN vals_seq     bigint NOT NULL DEFAULT 0;
