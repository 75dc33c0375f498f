package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/chatd-project/chatd/auth"
	"github.com/chatd-project/chatd/bus"
)

const usersUsage = `usage:
  chatd users add --identifier ID [--display-name NAME] [--metadata JSON] --password-stdin
  chatd users list
  chatd users delete --identifier ID
  chatd users passwd --identifier ID --password-stdin

The password is read from standard input (one line), never from arguments.
The commands work on the Redis store (REDIS_URL); the in-memory store lives
inside one server process and has only its demo users.
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
	redisURL := fs.String("redis-url", getenv("REDIS_URL"), "Redis URL ($REDIS_URL)")
	namespace := fs.String("namespace", "", "Redis key prefix ($CHAT_NAMESPACE, default chat:)")
	if err := fs.Parse(rest); err != nil {
		return errUsage
	}
	if fs.NArg() > 0 {
		// Not echoed: a stray argument may well be a password.
		fmt.Fprintf(stderr, "unexpected arguments (%d) after the flags; a password is read from standard input only\n%s", fs.NArg(), usersUsage)
		return errUsage
	}
	needID := cmd == "add" || cmd == "delete" || cmd == "passwd"
	needPW := cmd == "add" || cmd == "passwd"
	switch {
	case cmd != "add" && cmd != "list" && cmd != "delete" && cmd != "passwd":
		fmt.Fprintf(stderr, "unknown users command %q\n%s", cmd, usersUsage)
		return errUsage
	case needID && *identifier == "":
		fmt.Fprintf(stderr, "--identifier is required\n%s", usersUsage)
		return errUsage
	case needPW && !*pwStdin:
		fmt.Fprintf(stderr, "--password-stdin is required: the password is read from standard input\n%s", usersUsage)
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
	st, err := openStores(ctx, config{RedisURL: *redisURL, Namespace: ns})
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
			fmt.Fprintf(stdout, "%s\t%s\t%q\t%s\n", u.ID, u.Identifier, u.DisplayName, md)
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
	}
	return nil
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
