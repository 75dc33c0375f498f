package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http/httptest"
	"time"

	"github.com/chatd-project/chatd/auth"
	"github.com/chatd-project/chatd/client"
	"github.com/chatd-project/chatd/server"
)

// Log in, open a chat, send a message and read the reply.
func Example() {
	url, stop := exampleServer(func(srv *server.Server) {
		srv.OnMessage(func(ctx context.Context, c *server.Chat, m server.Message) error {
			return c.Send(ctx, "You said: "+m.Content)
		})
	})
	defer stop()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := client.New(url)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := c.Login(ctx, "alice", "alice-password"); err != nil {
		log.Fatal(err)
	}
	s, err := c.Open(ctx, client.ChatOptions{})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	id, err := s.Send(ctx, "hello")
	if err != nil {
		log.Fatal(err)
	}
	for {
		f, err := s.Next(ctx)
		if err != nil {
			log.Fatal(err)
		}
		switch {
		case f.IsEcho() && f.ClientID == id:
			fmt.Println("echo:", f.Message.Content)
		case f.IsAssistantMessage():
			fmt.Println("reply:", f.Message.Content)
		case f.Type == client.TypeTaskEnd:
			return
		}
	}
	// Output:
	// echo: hello
	// reply: You said: hello
}

// Resume a thread later, from its id: the history frame comes first.
func ExampleClient_Resume() {
	url, stop := exampleServer(func(srv *server.Server) {
		srv.OnMessage(func(ctx context.Context, c *server.Chat, m server.Message) error {
			return c.Send(ctx, "Noted: "+m.Content)
		})
	})
	defer stop()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := client.New(url)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := c.Login(ctx, "alice", "alice-password"); err != nil {
		log.Fatal(err)
	}
	// A first chat, ended after one exchange.
	s, err := c.Open(ctx, client.ChatOptions{})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := s.Send(ctx, "buy milk"); err != nil {
		log.Fatal(err)
	}
	for f, err := s.Next(ctx); f.Type != client.TypeTaskEnd; f, err = s.Next(ctx) {
		if err != nil {
			log.Fatal(err)
		}
	}
	threadID := s.ThreadID()
	if err := s.End(ctx); err != nil {
		log.Fatal(err)
	}
	for { // until the server closed the chat
		if _, err := s.Next(ctx); err != nil {
			if !errors.Is(err, client.ErrEnded) {
				log.Fatal(err)
			}
			break
		}
	}
	_ = s.Close()

	r, err := c.Resume(ctx, threadID, client.ChatOptions{})
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	fmt.Println("resumed:", r.Welcome().Resumed)
	f, err := r.Next(ctx)
	if err != nil {
		log.Fatal(err)
	}
	for _, step := range f.History.Steps {
		fmt.Printf("%s: %s\n", step.Type, step.Content)
	}
	// Output:
	// resumed: thread
	// user_message: buy milk
	// assistant_message: Noted: buy milk
}

// Answer the questions a handler asks: a text ask and an action ask.
func ExampleSession_AnswerText() {
	url, stop := exampleServer(func(srv *server.Server) {
		srv.OnMessage(func(ctx context.Context, c *server.Chat, m server.Message) error {
			name, err := c.AskUser(ctx, server.AskUser{Content: "What is your name?"})
			if err != nil {
				return err
			}
			a, err := c.AskAction(ctx, server.AskAction{Content: "Tea or coffee?",
				Actions: []server.Action{{Name: "tea", Label: "Tea"}, {Name: "coffee", Label: "Coffee"}}})
			if err != nil {
				return err
			}
			return c.Send(ctx, fmt.Sprintf("One %s for %s.", a.Name, name))
		})
	})
	defer stop()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := client.New(url)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := c.Login(ctx, "alice", "alice-password"); err != nil {
		log.Fatal(err)
	}
	s, err := c.Open(ctx, client.ChatOptions{})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Send(ctx, "order"); err != nil {
		log.Fatal(err)
	}
	for {
		f, err := s.Next(ctx)
		if err != nil {
			log.Fatal(err)
		}
		switch {
		case f.Type == client.TypeAsk && f.Ask.Kind == "text":
			fmt.Println("asked:", f.Ask.Content)
			err = s.AnswerText(ctx, f.Ask.AskID, "Alice")
		case f.Type == client.TypeAsk && f.Ask.Kind == "action":
			fmt.Println("asked:", f.Ask.Content)
			err = s.AnswerAction(ctx, f.Ask.AskID, f.Ask.Actions[0].Name)
		case f.IsAssistantMessage():
			fmt.Println("reply:", f.Message.Content)
		case f.Type == client.TypeTaskEnd:
			return
		}
		if err != nil {
			log.Fatal(err)
		}
	}
	// Output:
	// asked: What is your name?
	// asked: Tea or coffee?
	// reply: One tea for Alice.
}

// exampleServer starts a server in memory with the user alice and returns
// its URL and a func that stops it.
func exampleServer(setup func(*server.Server)) (string, func()) {
	pool := auth.NewHashPool(testParams, 1, 8)
	srv, err := server.New(server.Config{}, server.WithHasher(pool),
		server.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		log.Fatal(err)
	}
	setup(srv)
	if err := srv.Start(); err != nil {
		log.Fatal(err)
	}
	if _, err := srv.Auth().CreateUser(context.Background(), auth.User{Identifier: "alice"}, "alice-password"); err != nil {
		log.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	return hs.URL, func() {
		srv.Close()
		hs.Close()
		pool.Close()
	}
}
