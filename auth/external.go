package auth

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// ErrIdentifierTaken: an identity provider's first sign-in of a person
// would create a user whose identifier another user has already. Users are
// found by their link to the provider, never by an email alone, so the
// sign-in is refused until an administrator links the two (chatd users
// link). errors.Is(err, ErrExists) holds for it too.
var ErrIdentifierTaken = fmt.Errorf("%w: another user has this identifier; an administrator may link the accounts", ErrExists)

// UserByLink returns the user linked to l, or ErrNotFound.
func (s *Service) UserByLink(ctx context.Context, l Link) (*PersistedUser, error) {
	return s.users.GetUserByLink(ctx, l)
}

// SignInLinked signs in the person an identity provider vouched for and
// issues a token. existing is UserByLink(l) as the caller found it, nil
// for a first sign-in; u is the user to sign in (the application's hook
// may have changed it).
//
// A first sign-in creates u, without a password, linked to l, in one step;
// when another sign-in of the same link created it meanwhile, that user is
// signed in. When u's identifier belongs to a user not linked to l, it
// returns ErrIdentifierTaken and stores nothing. A later sign-in keeps the
// user's identifier and display name and stores u's metadata when it
// differs (nil metadata leaves it alone).
func (s *Service) SignInLinked(ctx context.Context, l Link, u User, existing *PersistedUser) (*PersistedUser, Token, error) {
	if l.Provider == "" || l.Subject == "" {
		return nil, Token{}, fmt.Errorf("%w: a link needs a provider and a subject", ErrInvalid)
	}
	var pu *PersistedUser
	var err error
	if existing != nil {
		pu, err = s.syncMetadata(ctx, existing, u.Metadata, false)
	} else {
		pu, err = s.createLinked(ctx, l, u)
	}
	if err != nil {
		return nil, Token{}, err
	}
	tok, err := s.issue(ctx, pu.ID)
	if err != nil {
		return nil, Token{}, err
	}
	return pu, tok, nil
}

func (s *Service) createLinked(ctx context.Context, l Link, u User) (*PersistedUser, error) {
	if err := ValidateIdentifier(u.Identifier); err != nil {
		return nil, err
	}
	pu, err := s.users.CreateLinkedUser(ctx, u, l)
	if !errors.Is(err, ErrExists) {
		return pu, err
	}
	pu, err = s.users.GetUserByLink(ctx, l)
	if errors.Is(err, ErrNotFound) {
		return nil, ErrIdentifierTaken
	}
	return pu, err
}

// Limits of BeginFlow: sign-ins begun per client address and window.
const (
	flowsPerAddr = 30
	flowWindow   = time.Minute
)

// AllowFlow counts a sign-in through an identity provider begun from
// clientAddr: at most 30 a minute per address (per /64 for IPv6, where one
// client holds a whole prefix), so that a flood of sign-in redirects can
// neither fill the store with flows nor make the server call the provider
// without end. Past the limit it returns a *ThrottledError.
func (s *Service) AllowFlow(ctx context.Context, clientAddr string) error {
	key := clientAddr
	if a, err := netip.ParseAddr(clientAddr); err == nil && a.Is6() && !a.Is4In6() {
		p, _ := a.Prefix(64)
		key = p.String()
	}
	_, left, ok, err := s.throttle.Reserve(ctx, "o:"+HashToken(key), flowsPerAddr, flowWindow)
	if err != nil {
		return err
	}
	if !ok {
		return throttled(left)
	}
	return nil
}

// PutFlow keeps value under key for ttl, for one TakeFlow: the state of a
// sign-in through an identity provider, between the redirect to the
// provider and its callback (AllowFlow first).
func (s *Service) PutFlow(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if s.flows == nil {
		return errors.New("auth: no flow store")
	}
	return s.flows.PutFlow(ctx, key, value, ttl)
}

// TakeFlow returns and forgets what BeginFlow kept under key, or
// ErrNotFound when there is nothing (never kept, expired or taken).
func (s *Service) TakeFlow(ctx context.Context, key string) ([]byte, error) {
	if s.flows == nil {
		return nil, errors.New("auth: no flow store")
	}
	return s.flows.TakeFlow(ctx, key)
}
