-- Users and their links to identity providers. Names and ids are bytea:
-- they are kept byte for byte (any byte, NUL included, as the other
-- stores keep them) and sort as Go compares strings. metadata is the
-- application's JSON as given (json, not jsonb, so that any JSON string
-- round-trips).
CREATE TABLE users (
    id            text PRIMARY KEY,
    identifier    bytea NOT NULL UNIQUE,
    display_name  bytea NOT NULL,
    metadata      json NOT NULL,
    password_hash text NOT NULL DEFAULT '',
    anonymous     boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL
);

CREATE TABLE user_links (
    provider bytea NOT NULL,
    subject  bytea NOT NULL,
    user_id  text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    PRIMARY KEY (provider, subject)
);

CREATE INDEX user_links_by_user ON user_links (user_id);
