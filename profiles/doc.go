// Package profiles holds chat profiles and conversation starters, the
// provider callback through which an application offers them per user, and
// the check that a profile a client asks for is one the user may use.
//
// A client never names a profile the server trusts: Resolve asks the
// provider again for the user and picks from what it returns. The package
// has no state and is safe for concurrent use.
package profiles
