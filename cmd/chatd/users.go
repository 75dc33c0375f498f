package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/chatd-project/chatd/auth"
	"github.com/chatd-project/chatd/auth/oauth"
	"github.com/chatd-project/chatd/bus"
)

const usersUsage = `usage:
  chatd users add --identifier ID [--display-name NAME] [--metadata JSON] --password-stdin
  chatd users list
  chatd users delete --identifier ID
  chatd users passwd --identifier ID --password-stdin
  chatd users link --identifier ID --provider NAME --subject SUB
  chatd users unlink --identifier ID --provider NAME --subject SUB

The password is read from standard input (one line), never from arguments.
link lets the person with the subject id SUB at the identity provider NAME
(its configured name) sign in as the user ID; unlink stops it. list shows
each user's links after the metadata, as NAME:SUB (SUB quoted when needed).
The commands work on the Redis store (REDIS_URL), and on the database of
record when DATABASE_URL is set (the users are kept there); the in-memory
store lives inside one server process and has only its demo users.
`

// runUsers manages users in the configured store. Revocations (passwd,
// delete) are published so that running instances close the sockets.
func runUsers(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usersUsage)
		return errUsage
	}
	cmd, rest := args[0], args[1:]
	fs := flag.NewFlagSet("chatd users "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usersUsage) }
	identifier := fs.String("identifier", "", "the user's identifier")
	displayName := fs.String("display-name", "", "the user's display name")
	metadata := fs.String("metadata", "", "the user's metadata, a JSON object")
	pwStdin := fs.Bool("password-stdin", false, "read the password from standard input")
	provider := fs.String("provider", "", "the identity provider's configured name (link, unlink)")
	subject := fs.String("subject", "", "the user's subject id at the identity provider (link, unlink)")
	redisURL := fs.String("redis-url", getenv("REDIS_URL"), "Redis URL ($REDIS_URL)")
	databaseURL := fs.String("database-url", getenv("DATABASE_URL"), "PostgreSQL URL of the database of record ($DATABASE_URL)")
	namespace := fs.String("namespace", "", "Redis key prefix ($CHAT_NAMESPACE, default chat:)")
	if err := fs.Parse(rest); err != nil {
		return errUsage
	}
	if fs.NArg() > 0 {
		// Not echoed: a stray argument may well be a password.
		fmt.Fprintf(stderr, "unexpected arguments (%d) after the flags; a password is read from standard input only\n%s", fs.NArg(), usersUsage)
		return errUsage
	}
	needID := cmd == "add" || cmd == "delete" || cmd == "passwd" || cmd == "link" || cmd == "unlink"
	needPW := cmd == "add" || cmd == "passwd"
	needLink := cmd == "link" || cmd == "unlink"
	switch {
	case !slices.Contains([]string{"add", "list", "delete", "passwd", "link", "unlink"}, cmd):
		fmt.Fprintf(stderr, "unknown users command %q\n%s", cmd, usersUsage)
		return errUsage
	case needID && *identifier == "":
		fmt.Fprintf(stderr, "--identifier is required\n%s", usersUsage)
		return errUsage
	case needPW && !*pwStdin:
		fmt.Fprintf(stderr, "--password-stdin is required: the password is read from standard input\n%s", usersUsage)
		return errUsage
	case needLink && (*provider == "" || *subject == ""):
		fmt.Fprintf(stderr, "--provider and --subject are required\n%s", usersUsage)
		return errUsage
	case needLink && !oauth.ValidName(*provider):
		fmt.Fprintf(stderr, "--provider %q is not a provider name: a lower-case letter, then up to 31 lower-case letters, digits, - and _\n%s", *provider, usersUsage)
		return errUsage
	}
	if *redisURL == "" {
		return errors.New("users commands need REDIS_URL: the in-memory store lives inside one server process")
	}
	ns := *namespace
	if ns == "" {
		ns = getenv("CHAT_NAMESPACE")
	}
	if ns == "" {
		ns = "chat:"
	}
	st, err := openStores(ctx, config{RedisURL: *redisURL, DatabaseURL: *databaseURL, Namespace: ns})
	if err != nil {
		return err
	}
	defer st.close()
	hasher := auth.NewHashPool(auth.DefaultParams, 1, 1)
	defer hasher.Close()
	svc := auth.NewService(st.auth, hasher, bus.Notifier{Bus: st.bus, Origin: "chatd-users"}, auth.Config{})

	switch cmd {
	case "add":
		md := map[string]any{}
		if *metadata != "" {
			if err := json.Unmarshal([]byte(*metadata), &md); err != nil || md == nil {
				return fmt.Errorf("--metadata must be a JSON object")
			}
		}
		pw, err := readPassword(stdin)
		if err != nil {
			return err
		}
		u, err := svc.CreateUser(ctx, auth.User{Identifier: *identifier, DisplayName: *displayName, Metadata: md}, pw)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "added %s (id %s)\n", u.Identifier, u.ID)
	case "list":
		us, err := svc.ListUsers(ctx)
		if err != nil {
			return err
		}
		for _, u := range us {
			md, _ := json.Marshal(u.Metadata)
			links, err := st.auth.Users.Links(ctx, u.ID)
			if errors.Is(err, auth.ErrNotFound) {
				continue // deleted meanwhile
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "%s\t%s\t%q\t%s", u.ID, u.Identifier, u.DisplayName, md)
			for _, l := range links {
				fmt.Fprintf(stdout, "\t%s", formatLink(l))
			}
			fmt.Fprintln(stdout)
		}
	case "delete":
		// The user goes first (its tokens are revoked and the running
		// instances close its sockets and end its chats), then its
		// sessions and threads.
		u, err := svc.DeleteUser(ctx, *identifier)
		if err != nil {
			return err
		}
		sessions, err := st.sessions.DeleteUserData(ctx, u.ID)
		if err != nil {
			return fmt.Errorf("user %s deleted, but not all of its chats: %w", u.Identifier, err)
		}
		fmt.Fprintf(stdout, "deleted %s (id %s) with its threads and %d sessions\n", u.Identifier, u.ID, len(sessions))
	case "passwd":
		pw, err := readPassword(stdin)
		if err != nil {
			return err
		}
		if err := svc.SetPassword(ctx, *identifier, pw); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "password of %s changed; its tokens are revoked\n", *identifier)
	case "link":
		u, err := userByIdentifier(ctx, st.auth.Users, *identifier)
		if err != nil {
			return err
		}
		l := auth.Link{Provider: *provider, Subject: *subject}
		err = st.auth.Users.AddLink(ctx, u.ID, l)
		if errors.Is(err, auth.ErrExists) {
			return fmt.Errorf("%s is linked to another user; unlink it there first: %w", formatLink(l), err)
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "linked %s (id %s) to %s\n", u.Identifier, u.ID, formatLink(l))
	case "unlink":
		u, err := userByIdentifier(ctx, st.auth.Users, *identifier)
		if err != nil {
			return err
		}
		l := auth.Link{Provider: *provider, Subject: *subject}
		err = st.auth.Users.RemoveLink(ctx, u.ID, l)
		if errors.Is(err, auth.ErrNotFound) {
			return fmt.Errorf("%s is not linked to %s: %w", formatLink(l), u.Identifier, err)
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "unlinked %s (id %s) from %s\n", u.Identifier, u.ID, formatLink(l))
	}
	return nil
}

// userByIdentifier returns the user with the given identifier; an unknown
// one is an error that names it.
func userByIdentifier(ctx context.Context, us auth.UserStore, identifier string) (*auth.PersistedUser, error) {
	u, _, err := us.GetUserByIdentifier(ctx, identifier)
	if errors.Is(err, auth.ErrNotFound) {
		return nil, fmt.Errorf("no user %s: %w", identifier, err)
	}
	return u, err
}

// formatLink shows l as provider:subject, the subject quoted when it is
// empty or holds a space, a quote or a character that is not printable,
// so that a line of users list stays one line with one field per link.
func formatLink(l auth.Link) string {
	sub := l.Subject
	if sub == "" || strings.ContainsFunc(sub, func(r rune) bool {
		return r == ' ' || r == '"' || r == '\\' || !unicode.IsPrint(r)
	}) {
		sub = strconv.Quote(sub)
	}
	return l.Provider + ":" + sub
}

// readPassword reads one line from r, without its line ending.
func readPassword(r io.Reader) (string, error) {
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read the password from standard input: %w", err)
	}
	pw := strings.TrimRight(line, "\r\n")
	if pw == "" {
		return "", errors.New("no password on standard input")
	}
	return pw, nil
}
