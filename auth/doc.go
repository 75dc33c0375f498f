// Package auth owns users, passwords and tokens: who is calling.
//
// It holds the User types, the password hashing pool (argon2id), the
// Service that logs users in with throttling, issues, checks and revokes
// tokens, and administers users, and the stores behind it: UserStore,
// TokenStore and ThrottleStore, each implemented in memory (MemoryStore, a
// single instance) and on Redis (RedisStore, shared by all instances). Both
// pass the conformance suite in package authtest. Only the redis*.go files
// (users in redis.go, tokens and throttling in redis_tokens.go) import the
// Redis client.
//
// Tokens are 32 random bytes, base64url without padding. The stores keep
// only their SHA-256 (HashToken), with an absolute and an idle expiry; the
// Service checks both against its own clock, so an injected clock works on
// either store. Revocations are reported to a Notifier so that the server
// can close the sockets opened with revoked tokens on every instance.
//
// Concurrency: Service, MemoryStore, RedisStore and HashPool are safe for
// concurrent use. The Service keeps no state of its own besides a dummy hash
// made once; everything else is in the stores, so instances sharing a Redis
// agree. A user's metadata changes only through UpdateMetadata, an optimistic
// read-modify-write (WATCH/MULTI on Redis) whose function may run more than
// once. Password hashing runs only on the HashPool's workers, which the pool
// owns and Close stops and waits for; a full queue answers ErrBusy at once
// rather than letting logins pile up.
//
// Neither the Service nor the stores log or return passwords or tokens.
package auth
