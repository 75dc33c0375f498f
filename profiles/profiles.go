package profiles

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/chatd-project/chatd/auth"
)

// Starter is a conversation starter shown with a profile: a label the user
// clicks and the message it sends.
type Starter struct {
	Label   string `json:"label"`
	Message string `json:"message"`
	// Command is an optional command identifier sent with the message.
	Command string `json:"command,omitempty"`
	// Icon is an icon name or an https: URL.
	Icon string `json:"icon,omitempty"`
}

// ChatProfile is a chat mode a user can pick when opening a chat.
type ChatProfile struct {
	// Name identifies the profile; unique among a user's profiles.
	Name string `json:"name"`
	// MarkdownDescription describes the profile (untrusted markdown).
	MarkdownDescription string `json:"markdown_description"`
	// Icon is an icon name or an https: URL.
	Icon string `json:"icon,omitempty"`
	// Default marks the profile picked when the client names none.
	Default  bool      `json:"default"`
	Starters []Starter `json:"starters"`
}

// MarshalJSON encodes the starter as the protocol's Starter object: an
// empty Command or Icon is null.
func (s Starter) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Label   string  `json:"label"`
		Message string  `json:"message"`
		Command *string `json:"command"`
		Icon    *string `json:"icon"`
	}{s.Label, s.Message, nullable(s.Command), nullable(s.Icon)})
}

// MarshalJSON encodes the profile as the protocol's ChatProfile object: an
// empty Icon is null.
func (p ChatProfile) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Name                string    `json:"name"`
		MarkdownDescription string    `json:"markdown_description"`
		Icon                *string   `json:"icon"`
		Default             bool      `json:"default"`
		Starters            []Starter `json:"starters"`
	}{p.Name, p.MarkdownDescription, nullable(p.Icon), p.Default, p.Starters})
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// Provider returns the profiles a user may use. The user is nil for an
// anonymous caller. It is called on every hello and every GET /app, so it
// sees the user's current metadata.
type Provider func(ctx context.Context, u *auth.User) ([]ChatProfile, error)

// Errors that callers branch on.
var (
	// ErrInvalid: the provider returned profiles that break a rule.
	ErrInvalid = errors.New("profiles: invalid profiles")
	// ErrForbidden: the requested profile is not among the user's.
	ErrForbidden = errors.New("profiles: profile not allowed for this user")
)

// Validate checks a provider's result: non-empty unique names, at most one
// default, labels and messages on every starter, and icons that are names
// or https: URLs.
func Validate(ps []ChatProfile) error {
	seen := make(map[string]bool, len(ps))
	defaults := 0
	for i, p := range ps {
		if strings.TrimSpace(p.Name) == "" {
			return fmt.Errorf("%w: profile %d has no name", ErrInvalid, i)
		}
		if seen[p.Name] {
			return fmt.Errorf("%w: duplicate profile name %q", ErrInvalid, p.Name)
		}
		seen[p.Name] = true
		if p.Default {
			defaults++
		}
		if err := checkIcon(p.Icon); err != nil {
			return fmt.Errorf("%w: profile %q: %v", ErrInvalid, p.Name, err)
		}
		for j, s := range p.Starters {
			if s.Label == "" || s.Message == "" {
				return fmt.Errorf("%w: profile %q starter %d needs a label and a message", ErrInvalid, p.Name, j)
			}
			if err := checkIcon(s.Icon); err != nil {
				return fmt.Errorf("%w: profile %q starter %q: %v", ErrInvalid, p.Name, s.Label, err)
			}
		}
	}
	if defaults > 1 {
		return fmt.Errorf("%w: %d profiles are marked default, at most one may be", ErrInvalid, defaults)
	}
	return nil
}

// checkIcon accepts "", a plain icon name, or an https: URL.
func checkIcon(icon string) error {
	if icon == "" {
		return nil
	}
	if strings.Contains(icon, ":") || strings.Contains(icon, "/") {
		u, err := url.Parse(icon)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			return fmt.Errorf("icon %q is neither a name nor an https: URL", icon)
		}
		return nil
	}
	for _, r := range icon {
		if !(r == '-' || r == '_' || r == '.' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return fmt.Errorf("icon name %q has a character other than letters, digits, '-', '_' and '.'", icon)
		}
	}
	return nil
}

// Resolve picks the profile for a new chat from the user's profiles: the
// requested one when named (ErrForbidden when it is not among them), else
// the default, else the first. It returns "" when there are no profiles and
// none was requested.
func Resolve(ps []ChatProfile, requested string) (string, error) {
	if requested != "" {
		for _, p := range ps {
			if p.Name == requested {
				return p.Name, nil
			}
		}
		return "", ErrForbidden
	}
	for _, p := range ps {
		if p.Default {
			return p.Name, nil
		}
	}
	if len(ps) > 0 {
		return ps[0].Name, nil
	}
	return "", nil
}

// Normalize returns ps with nil starter lists made empty, so that their JSON
// form always has "starters": [].
func Normalize(ps []ChatProfile) []ChatProfile {
	out := make([]ChatProfile, len(ps))
	for i, p := range ps {
		if p.Starters == nil {
			p.Starters = []Starter{}
		}
		out[i] = p
	}
	return out
}
