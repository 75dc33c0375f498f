-- Threads and their steps, as the archiver copies them from Redis's
-- archive stream. A step row is keyed by its thread and id, so that an
-- entry delivered twice writes nothing twice; version is the stream entry
-- that last wrote it (its two numbers), so that an older entry delivered
-- late never replaces a newer one. position is the step's first place in
-- its thread.
-- A thread belongs to a user and goes with its user. A thread deleted
-- leaves its id in deleted_threads, so that an entry of it delivered late
-- does not bring it back.
CREATE TABLE threads (
    id         text PRIMARY KEY,
    user_id    text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    updated_at timestamptz NOT NULL
);

CREATE TABLE deleted_threads (
    id text PRIMARY KEY
);

CREATE INDEX threads_by_user ON threads (user_id, updated_at DESC, id DESC);

CREATE TABLE steps (
    thread_id text NOT NULL REFERENCES threads (id) ON DELETE CASCADE,
    id        text NOT NULL,
    position  bigint NOT NULL,
    body      json NOT NULL,
    version_ms  bigint NOT NULL,
    version_seq bigint NOT NULL,
    PRIMARY KEY (thread_id, id)
);

CREATE INDEX steps_in_order ON steps (thread_id, position);
