package auth_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/chatd-project/chatd/auth"
)

func ExampleService_Login() {
	ctx := context.Background()
	pool := auth.NewHashPool(auth.DefaultParams, 0, 64) // a worker per CPU
	defer pool.Close()
	svc := auth.NewService(auth.NewMemoryStore(nil).Stores(), pool, nil, auth.Config{})

	if _, err := svc.CreateUser(ctx, auth.User{Identifier: "ada@example.com", DisplayName: "Ada"}, "correct horse battery staple"); err != nil {
		fmt.Println(err)
		return
	}
	_, _, err := svc.Login(ctx, "ada@example.com", "wrong", "192.0.2.1")
	fmt.Println(errors.Is(err, auth.ErrInvalidCredentials))

	u, tok, err := svc.Login(ctx, "ada@example.com", "correct horse battery staple", "192.0.2.1")
	if err != nil {
		fmt.Println(err)
		return
	}
	id, err := svc.Authenticate(ctx, tok.Value) // on every later request
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(u.DisplayName, id.User.Identifier, len(tok.Value))
	// Output:
	// true
	// Ada ada@example.com 43
}
