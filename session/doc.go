// Package session owns what chatd keeps about a chat: the per-socket
// UserSession that handlers use (Get, Set, typed accessors and the built-in
// fields id, env, chat_settings, user, chat_profile and client_type), the
// session records, the application's session values, the outbound frame log
// that reattaching clients replay, the persisted threads and their steps, and
// the pending asks of sessions with the files uploaded for them.
//
// # Stores
//
// Store is the storage interface, composed of one interface per role:
// Sessions (records, values and the sequenced log), Threads, Asks (asks and
// uploaded files) and Lifecycle (attaching, grace periods and end claims),
// plus DeleteUserData, which spans them all. MemoryStore keeps everything in
// the process (one instance, nothing to install) and RedisStore keeps it in
// Redis so that any instance can serve any session. Each role has its memory
// and Redis implementations side by side (memory_<role>.go,
// redis_<role>.go, the Lua scripts in redis_<role>_scripts.go) and its
// conformance suite in package sessiontest, which both stores pass. Only the
// redis*.go files import the Redis client.
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
// A thread's steps are read a page at a time (ListSteps): the newest page
// first, each page in the order the steps were stored, with a keyset cursor
// on the steps' positions (base64url of the decimal position of the oldest
// step of the page, the same in both stores; the next page holds the steps
// before it). On Redis a page is one script over the thread's order and
// steps: a by-score range of the order with LIMIT, then one HMGET, in
// O(log N + page). ThreadInfo reads a thread's hash and metadata without
// any step, so that its owner is checked before a step is loaded; Thread
// and Steps read every step and are not used by the server. A user message
// may cap the thread's steps (UserMessage.MaxSteps, counted with ZCARD of
// the order in the same script): past the cap it is refused, nothing
// stored.
//
// # Concurrency
//
// An ask's answer and its end are claims: one atomic check-and-set that
// exactly one caller wins, idempotent under a retry of the same call (the
// Redis store keeps the winner's nonce). A file upload takes its ask's slot
// atomically before reading, writes one chunk (at most ChunkSize bytes) at
// a time, each checked against the upload's nonce, and commits only while
// the ask is pending; any failure deletes what it wrote and gives the slot
// back.
//
// Stores and UserSessions are safe for concurrent use. The stores'
// operations are each atomic (one Lua script, a MULTI, or one mutex hold),
// so several instances may act on one session at once; ordering the
// handlers of a session is the server's job. A UserSession keeps a copy of
// the record (guarded by a mutex; the server holds it through a Live, which
// reads the record and updates its settings with SyncSettings) and reads and
// writes application values through the store on every call, caching
// nothing. Accessors hold no state and may be shared.
//
// # Redis keys
//
// Every key starts with the store's namespace. Keys of one session share the
// hash tag {s:<id>}, of one thread {t:<id>}, of one user {u:<id>}:
//
//	s:{s:<id>}           hash    user, thread, profile, client, epoch, env (JSON),
//	                             settings (JSON), created_at (RFC 3339), seq (counter),
//	                             instance (where attached), runner (the instance
//	                             holding the runner lease), fence (its token, a
//	                             counter), started (id of the turn it started),
//	                             sfence (the fence it was started under), sturn
//	                             (that turn's entry, when it started as its user
//	                             message came and never waited in the inbox),
//	                             queued ("1" once a turn was pushed to the inbox,
//	                             "" once it is seen empty), ended ("1" once the
//	                             end is claimed, beside :end)
//	s:{s:<id>}:kv        hash    application values, raw JSON
//	s:{s:<id>}:log       stream  outbound frames, ids <seq>-0, field p = payload;
//	                             trimmed to about 2,000 entries (at least LogKeep kept)
//	s:{s:<id>}:fids      hash    f:<frame id> → seq, c:<client message id> → seq, q:<turn id> → seq
//	s:{s:<id>}:fids0     hash    the same, of the IDKeep frames before (dropped a generation at a time)
//	s:{s:<id>}:end       string  the end claim's nonce
//	s:{s:<id>}:inbox     list    queued turns, oldest first: "<id>\n<kind>\n<data>"
//	s:{s:<id>}:streams   hash    the messages streaming now: step:<mid> (step JSON
//	                             without content), n:<mid> (deltas), c:<mid> (content)
//	s:{s:<id>}:ask       hash    the session's latest ask: id, kind, state (pending,
//	                             answered, ended), exp (ExpiresAt, Unix ms; 0: none),
//	                             ask (JSON), max_size, max_files, nfiles (slots taken),
//	                             claim (nonce of the answer or end), answer (JSON)
//	s:{s:<id>}:files     zset    ids of the session's files, scored by upload order
//	                             (the record's fseq counter)
//	f:{s:<id>}:<fid>     hash    a file's meta: ask, name, mime, size, created
//	                             (RFC 3339), state (uploading, ok), n (chunks written),
//	                             nonce (of its upload), thread (once kept with one)
//	f:{s:<id>}:<fid>:<n> string  chunk n (from 0) of the file, at most ChunkSize bytes
//	t:{t:<id>}           hash    n (step counter), persisted ("1"), name, user_id,
//	                             chat_profile, created_at, updated_at (Unix ms),
//	                             session (the latest session created on it),
//	                             hv (head version: renames, metadata, values),
//	                             base (restored from the database of record: its
//	                             steps at positions up to base are there only)
//	t:{t:<id>}:steps     hash    step id → step JSON (with a database of record, the
//	                             newest window of a long thread: see TrimThread)
//	t:{t:<id>}:order     zset    step id scored by its position (from n)
//	t:{t:<id>}:meta      hash    metadata key → JSON value (SetThreadMetadata)
//	t:{t:<id>}:values    hash    saved application values, raw JSON (SaveThreadValues)
//	t:{t:<id>}:files     set     <session id>:<file id> of the files kept with the thread
//	u:{u:<id>}:threads   zset    persisted thread ids scored by updated_at (ms)
//	u:{u:<id>}:summaries hash    persisted thread id → {"name", "chat_profile",
//	                             "created_at" (ms)} JSON, for listing
//	u:{u:<id>}:lnames    hash    persisted thread id → its name lower-cased (for Q)
//	u:{u:<id>}:sessions  set     ids of the user's sessions (for DeleteUserData);
//	                             lives as long as their longest end claim
//	u:{u:<id>}:live      set     ids of the user's attached sessions
//	ending               zset    detached session ids scored by grace deadline (ms)
//	archive              stream  with WithArchive only: the steps written to persisted
//	                             threads (t, u, at, s, n, j), their heads (t, u, h,
//	                             at, name, p, c, m: metadata), saved values (t, u,
//	                             v, x) and deletions (t, u, d), for the archiver of
//	                             the database of record (see WithRecord)
//	archive:threads      zset    threads archived, by update time (ms), for EvictIdle
//	instances            set     instances that hold sessions or runner leases
//	inst:<id>            string  an instance's lease (expires with it)
//	inst:<id>:sessions   set     ids of the sessions attached there
//	inst:<id>:runs       set     ids of the sessions whose runner lease it holds
//
// Session keys expire together: Create and Touch set their TTL, and a write
// that creates one of them gives it the record's remaining TTL. The end claim
// lives a minute longer than the record. A file's keys are session keys until
// KeepFilesWithThread persists them (Touch extends them, skipping kept ones;
// a retried Create does not); the ask lives as long as the record and at
// least a minute past its ExpiresAt (Touch never shortens it). The keys of a thread expire with its
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
// Create, Append, AppendUserMessage, Attach, Touch, DeleteThread,
// KeepFilesWithThread and DeleteUserData each run as one script over keys of
// more than one hash tag (session, thread, user, ending), some built inside
// the script: they need a single Redis server (standalone or sentinel), not
// Redis Cluster. ListThreads reads keys of the user's hash tag only; the
// other ask and file scripts keys of the session's.
package session
