-- What a thread shows besides its steps: its name (and the name lower-cased
-- as Go does it, for the search of the thread list), chat profile,
-- creation time and metadata, each version of them written by one archive
-- entry (head_ms, head_seq: an older entry delivered late never replaces
-- a newer one); and the application values saved with the thread (vals,
-- with their own entry version). Names are bytea, kept byte for byte.
-- Thread ids sort byte by byte (COLLATE "C"), as the thread list's keyset
-- cursor compares them. name_search is the folded name without its NUL
-- bytes (text cannot hold them), under a trigram index (pg_trgm, a trusted
-- extension the database's owner may create), so that a search of the
-- thread list finds its threads without walking the whole list; the exact
-- match is then checked on name_folded.
ALTER TABLE steps DROP CONSTRAINT steps_thread_id_fkey;
ALTER TABLE threads ALTER COLUMN id TYPE text COLLATE "C";
ALTER TABLE steps ALTER COLUMN thread_id TYPE text COLLATE "C";
ALTER TABLE deleted_threads ALTER COLUMN id TYPE text COLLATE "C";
ALTER TABLE steps ADD CONSTRAINT steps_thread_id_fkey
    FOREIGN KEY (thread_id) REFERENCES threads (id) ON DELETE CASCADE;

ALTER TABLE threads
    ADD COLUMN name         bytea NOT NULL DEFAULT '',
    ADD COLUMN name_folded  bytea NOT NULL DEFAULT '',
    ADD COLUMN name_search  text NOT NULL DEFAULT '',
    ADD COLUMN chat_profile bytea NOT NULL DEFAULT '',
    ADD COLUMN created_at   timestamptz,
    ADD COLUMN metadata     json NOT NULL DEFAULT '{}',
    ADD COLUMN head_ms      bigint NOT NULL DEFAULT 0,
    ADD COLUMN head_seq     bigint NOT NULL DEFAULT 0,
    ADD COLUMN vals         json NOT NULL DEFAULT '{}',
    ADD COLUMN vals_ms      bigint NOT NULL DEFAULT 0,
    ADD COLUMN vals_seq     bigint NOT NULL DEFAULT 0;

CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA public;
CREATE INDEX threads_name_search ON threads USING gin (name_search public.gin_trgm_ops);
