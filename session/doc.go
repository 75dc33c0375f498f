// Package session owns what chatd keeps about a chat: the per-socket
// UserSession that handlers use (Get, Set, typed accessors and the built-in
// fields id, env, chat_settings, user, chat_profile and client_type), the
// session records, the application's session values, the outbound frame log
// that reattaching clients replay, and the persisted threads and their steps.
//
// # Stores
//
// Store is the storage interface; MemoryStore keeps everything in the
// process (one instance, nothing to install) and RedisStore keeps it in Redis
// so that any instance can serve any session. Both pass the conformance suite
// in package sessiontest. Only the redis*.go files import the Redis client.
//
// Both stores keep values, settings and steps as JSON, so that what a handler
// stores it reads back the same on any instance and on either store: numbers
// read into an any are float64.
//
// Seqs are allocated by the store, gapless from 1 in every session, in the
// same atomic operation that logs the frame and writes its step. A frame with
// an ID and a user message with a ClientID are idempotent: a retry returns
// the first seq and stores nothing. Steps are written by their ID (a replaced
// step keeps its position) and ordered by a per-thread counter, never by
// clocks. A thread is persisted by its first user message; until then its
// keys expire with its session's, afterwards never. Creating a session on a
// thread records it as the thread's latest session and keeps the thread.
//
// A user's persisted threads are listed most recently updated first, by
// (updated_at descending, id descending), with a keyset cursor on that pair
// (base64url of "<updated_ms>:<id>", the same in both stores). On Redis a
// page reads only keys of the user's hash tag, in one script, in O(log N +
// page); a search by name (ThreadQuery.Q) scans the list from the cursor.
//
// # Concurrency
//
// Stores and UserSessions are safe for concurrent use. The stores'
// operations are each atomic (one Lua script, a MULTI, or one mutex hold),
// so several instances may act on one session at once; ordering the
// handlers of a session is the server's job. A UserSession keeps a copy of
// the record (guarded by a mutex; the server updates its settings with
// SyncSettings) and reads and writes application values through the store on
// every call, caching nothing. Accessors hold no state and may be shared.
//
// # Redis keys
//
// Every key starts with the store's namespace. Keys of one session share the
// hash tag {s:<id>}, of one thread {t:<id>}, of one user {u:<id>}:
//
//	s:{s:<id>}           hash    user, thread, profile, client, epoch, env (JSON),
//	                             settings (JSON), created_at (RFC 3339), seq (counter),
//	                             instance (where attached)
//	s:{s:<id>}:kv        hash    application values, raw JSON
//	s:{s:<id>}:log       stream  outbound frames, ids <seq>-0, field p = payload;
//	                             trimmed to about 2,000 entries (at least LogKeep kept)
//	s:{s:<id>}:fids      hash    f:<frame id> → seq, c:<client message id> → seq
//	s:{s:<id>}:end       string  the end claim's nonce
//	t:{t:<id>}           hash    n (step counter), persisted ("1"), name, user_id,
//	                             chat_profile, created_at, updated_at (Unix ms),
//	                             session (the latest session created on it)
//	t:{t:<id>}:steps     hash    step id → step JSON
//	t:{t:<id>}:order     zset    step id scored by its position (from n)
//	t:{t:<id>}:meta      hash    metadata key → JSON value (SetThreadMetadata)
//	t:{t:<id>}:values    hash    saved application values, raw JSON (SaveThreadValues)
//	u:{u:<id>}:threads   zset    persisted thread ids scored by updated_at (ms)
//	u:{u:<id>}:summaries hash    persisted thread id → {"name", "chat_profile",
//	                             "created_at" (ms)} JSON, for listing
//	u:{u:<id>}:lnames    hash    persisted thread id → its name lower-cased (for Q)
//	u:{u:<id>}:sessions  set     ids of the user's sessions (for DeleteUserData);
//	                             lives as long as their longest end claim
//	u:{u:<id>}:live      set     ids of the user's attached sessions
//	ending               zset    detached session ids scored by grace deadline (ms)
//
// Session keys expire together: Create and Touch set their TTL, and a write
// that creates one of them gives it the record's remaining TTL. The end claim
// lives a minute longer than the record. The keys of a thread expire with its
// sessions (no sooner than the one created last) until the thread is
// persisted. Live marks of sessions that expired while attached are dropped
// by Attach when they would count against the limit; ids of sessions that are
// gone are dropped from their user's sessions by Create, two at a time.
//
// The user's threads, summaries and lnames are written together with the
// thread: by the user message that persists it, the steps that update it
// (updated_at), RenameThread and DeleteThread. Only the owner's sessions
// update a thread.
//
// Times written by the stores (thread creation and update) come from the
// store's clock in Go (NewMemoryStore's now, RedisStore.WithClock), never
// from Redis, so that both stores agree; updated_at never goes backwards.
//
// Create, Append, AppendUserMessage, Attach, Touch and DeleteUserData each
// run as one script over keys of more than one hash tag (session, thread,
// user, ending), some built inside the script: they need a single Redis
// server (standalone or sentinel), not Redis Cluster. ListThreads reads keys
// of the user's hash tag only.
package session
