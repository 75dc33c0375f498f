package main

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/chatd-project/chatd/server"
)

// demoAsk answers the messages that ask the user something: /choose and
// /name in every profile, and an upload in the analyst profile when the
// message mentions upload or data (the seed's AskFileMessage). It reports
// whether it handled the message.
func demoAsk(ctx context.Context, c *server.Chat, m server.Message, profile string) (bool, error) {
	text := strings.TrimSpace(m.Content)
	lower := strings.ToLower(text)
	switch {
	case lower == "/choose" || strings.HasPrefix(lower, "/choose "):
		act, err := c.AskAction(ctx, server.AskAction{Content: "Choose one:", Actions: []server.Action{
			{Name: "yes", Label: "Yes"}, {Name: "no", Label: "No"},
		}})
		if errors.Is(err, server.ErrAskTimeout) {
			return true, c.Send(ctx, "No choice was made in time.")
		}
		if err != nil {
			return true, err
		}
		return true, c.Send(ctx, "You chose "+act.Name)
	case lower == "/name" || strings.HasPrefix(lower, "/name "):
		name, err := c.AskUser(ctx, server.AskUser{Content: "What is your name?"})
		if errors.Is(err, server.ErrAskTimeout) {
			return true, c.Send(ctx, "No answer was given in time.")
		}
		if err != nil {
			return true, err
		}
		return true, c.Send(ctx, fmt.Sprintf("Nice to meet you, %s!", strings.TrimSpace(name)))
	case profile == "analyst" && (strings.Contains(lower, "upload") || strings.Contains(lower, "data")):
		files, err := c.AskFile(ctx, server.AskFile{Content: "Please upload your data file:",
			Accept: []string{"text/csv", "application/json", "text/plain"}})
		if errors.Is(err, server.ErrAskTimeout) {
			return true, c.Send(ctx, "No file was uploaded in time.")
		}
		if err != nil {
			return true, err
		}
		if len(files) == 0 {
			return true, nil
		}
		if err := c.Send(ctx, "Data received! Analyzing..."); err != nil {
			return true, err
		}
		for _, f := range files {
			summary, err := summarize(f)
			if err != nil {
				summary = fmt.Sprintf("%s: could not be read (%v)", f.Name, err)
			}
			if err := c.Send(ctx, summary); err != nil {
				return true, err
			}
		}
		return false, nil
	}
	return false, nil
}

// summarize describes an uploaded file: rows and columns of a CSV, the
// keys of a JSON object, the lines of a text.
func summarize(f server.File) (string, error) {
	rc, err := f.Open()
	if err != nil {
		return "", err
	}
	defer rc.Close()
	switch f.MIME {
	case "text/csv":
		r := csv.NewReader(rc)
		r.FieldsPerRecord = -1
		rows, cols := 0, 0
		var header []string
		for {
			rec, err := r.Read()
			if err == io.EOF {
				break
			}
			if err != nil {
				return "", err
			}
			if header == nil {
				header = rec
			} else {
				rows++
			}
			cols = max(cols, len(rec))
		}
		return fmt.Sprintf("%s: CSV with %d rows and %d columns (%s)", f.Name, rows, cols, strings.Join(header, ", ")), nil
	case "application/json":
		var v any
		if err := json.NewDecoder(rc).Decode(&v); err != nil {
			return "", err
		}
		switch x := v.(type) {
		case map[string]any:
			keys := make([]string, 0, len(x))
			for k := range x {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			return fmt.Sprintf("%s: JSON object with %d keys (%s)", f.Name, len(keys), strings.Join(keys, ", ")), nil
		case []any:
			return fmt.Sprintf("%s: JSON array of %d items", f.Name, len(x)), nil
		default:
			return fmt.Sprintf("%s: a JSON value", f.Name), nil
		}
	default:
		sc := bufio.NewScanner(rc)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		lines := 0
		for sc.Scan() {
			lines++
		}
		if err := sc.Err(); err != nil {
			return "", err
		}
		return fmt.Sprintf("%s: text with %d lines", f.Name, lines), nil
	}
}
