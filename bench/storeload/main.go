// Command storeload measures Redis's work for chat turns without a server
// in the way: it drives Redis the way a turn does, for many sessions at
// once, and prints what Redis spent per message.
//
//	go run ./bench/storeload -redis-url redis://127.0.0.1:6390 [-mode chatd,lean,minimal] [-sessions 1000] [-duration 15s]
//
// Modes, run one after the other on the same Redis:
//
//   - chatd: session.RedisStore as chatd runs it, one user message after
//     another: AppendUserMessage (echo, step, turn, runner lease,
//     task_start), then NextTurn with the reply, the demo's four session
//     values (a growing history among them) and task_end.
//   - turn: session.RedisStore as chatd runs a turn that ran ahead of its
//     store (the common case): the message and all of its turn in one
//     AppendTurn, with the same frames and values as chatd mode.
//   - lean: the commands of chatd's turn on its common path, on as many
//     keys, with the same values, in two straight scripts with few
//     arguments: what the turn's data costs Redis, apart from the scripts.
//   - minimal: the least a store that keeps a message before its handler
//     runs can do, in two scripts: the echo, task_start and the user's step
//     (idempotent by client id), then the reply, task_end and the
//     assistant's step; each with explicit seqs and the session's expiry.
//
// Each session sends a message, waits for both calls, and pauses (-pause,
// varied by a tenth); sessions start spread over the first pause. Redis's
// CPU comes from its own INFO cpu, over the messages of the window. The
// keys go under a namespace of the run's own, removed at the end; run it
// against a Redis of its own all the same (bench/run.sh starts one), since
// the figures are Redis's whole CPU.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/chatd-project/chatd/internal/redisconn"
	"github.com/chatd-project/chatd/session"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "storeload:", err)
		os.Exit(1)
	}
}

// config is what the flags set.
type config struct {
	redisURL string
	modes    []string
	sessions int
	duration time.Duration
	pause    time.Duration
}

func run(ctx context.Context, args []string, out io.Writer) error {
	var cfg config
	fs := flag.NewFlagSet("storeload", flag.ContinueOnError)
	fs.StringVar(&cfg.redisURL, "redis-url", "", "the Redis to load (required)")
	modes := fs.String("mode", "chatd,turn,lean,minimal", "comma-separated modes: chatd, turn, lean, minimal")
	fs.IntVar(&cfg.sessions, "sessions", 1000, "sessions at once")
	fs.DurationVar(&cfg.duration, "duration", 15*time.Second, "how long each mode runs")
	fs.DurationVar(&cfg.pause, "pause", time.Second, "pause between a session's messages")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if cfg.redisURL == "" || cfg.sessions < 1 || cfg.duration <= 0 || cfg.pause < 0 {
		return errors.New("-redis-url, -sessions above 0, -duration above 0 and -pause of 0 or more are needed")
	}
	cfg.modes = strings.Split(*modes, ",")
	for _, m := range cfg.modes {
		if m != "chatd" && m != "turn" && m != "minimal" && m != "lean" {
			return fmt.Errorf("unknown mode %q", m)
		}
	}
	opt, err := redis.ParseURL(cfg.redisURL)
	if err != nil {
		return errors.New("-redis-url is not a valid redis:// URL")
	}
	redisconn.Tune(opt)
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	for _, m := range cfg.modes {
		r, err := runMode(ctx, rdb, cfg, m)
		if err != nil {
			return fmt.Errorf("%s: %w", m, err)
		}
		fmt.Fprintf(out, "%-8s %d sessions, %d messages in %s, %d errors: Redis CPU %.1f µs, %.2f reads and %.1f commands per message\n",
			m, cfg.sessions, r.messages, cfg.duration, r.errors, r.cpuPerMessage, r.readsPerMessage, r.commandsPerMessage)
	}
	return nil
}

// result is what one mode measured.
type result struct {
	messages, errors                                   int64
	cpuPerMessage, readsPerMessage, commandsPerMessage float64
}

// turner runs one session's turns.
type turner interface {
	turn(ctx context.Context, content string) error
}

func runMode(ctx context.Context, rdb *redis.Client, cfg config, mode string) (result, error) {
	ns := "storeload:" + uuid.NewString()[:8] + ":"
	defer func() {
		if err := unlinkAll(context.WithoutCancel(ctx), rdb, ns); err != nil {
			fmt.Fprintln(os.Stderr, "storeload: removing its keys:", err)
		}
	}()
	var st *session.RedisStore
	var mini *minimal
	switch mode {
	case "chatd", "turn":
		st = session.NewRedisStore(rdb, ns)
		defer st.Close()
	default:
		var err error
		if mini, err = newMinimal(ctx, rdb, ns, mode == "lean"); err != nil {
			return result{}, err
		}
	}
	user := uuid.NewString()
	turners := make([]turner, cfg.sessions)
	for i := range turners {
		if st != nil {
			rec := session.Record{ID: uuid.NewString(), UserID: user, ThreadID: uuid.NewString(), ChatProfile: "assistant",
				ClientType: "webapp", Epoch: uuid.NewString(), CreatedAt: time.Now().UTC()}
			if err := st.Create(ctx, rec, 15*time.Minute); err != nil {
				return result{}, err
			}
			turners[i] = &storeTurner{st: st, rec: rec, whole: mode == "turn"}
		} else {
			t, err := mini.open(ctx)
			if err != nil {
				return result{}, err
			}
			turners[i] = t
		}
	}
	before, err := readCounters(ctx, rdb)
	if err != nil {
		return result{}, err
	}
	var messages, failed atomic.Int64
	start := time.Now()
	end := start.Add(cfg.duration)
	var wg sync.WaitGroup
	for _, t := range turners {
		wg.Go(func() {
			sleep := func(d time.Duration) { time.Sleep(max(min(d, time.Until(end)), 0)) }
			sleep(rand.N(cfg.pause + 1))
			for n := 0; time.Now().Before(end); n++ {
				if err := t.turn(ctx, fmt.Sprintf("hello from storeload #%d", n)); err != nil {
					failed.Add(1)
				} else {
					messages.Add(1)
				}
				sleep(cfg.pause + rand.N(cfg.pause/10+1) - cfg.pause/20)
			}
		})
	}
	wg.Wait()
	after, err := readCounters(ctx, rdb)
	if err != nil {
		return result{}, err
	}
	r := result{messages: messages.Load(), errors: failed.Load()}
	if m := float64(r.messages); m > 0 {
		r.cpuPerMessage = (after.cpu - before.cpu) / m * 1e6
		r.readsPerMessage = float64(after.reads-before.reads) / m
		r.commandsPerMessage = float64(after.commands-before.commands) / m
	}
	return r, nil
}

// storeTurner runs turns through session.RedisStore.
type storeTurner struct {
	st      *session.RedisStore
	rec     session.Record
	whole   bool  // each turn after the first (which persists the thread) in one AppendTurn
	fence   int64 // the fence of the last turn
	history []map[string]string
}

func (t *storeTurner) turn(ctx context.Context, content string) error {
	user := newStep("user_message", content)
	echo := newFrame("message", user)
	turnID := echo.ID
	um := session.UserMessage{
		ClientID: uuid.NewString(), Echo: echo, ThreadName: content,
		Then:     []session.Frame{{ID: uuid.NewString(), Payload: []byte(`{"type":"task_start"}`)}},
		Turn:     session.Turn{ID: turnID, Kind: "message", Data: []byte(`{"content":` + strconv.Quote(content) + `}`)},
		Instance: "storeload", MaxSteps: 10000,
	}
	if t.whole && t.fence > 0 {
		return t.wholeTurn(ctx, um, content)
	}
	a, err := t.st.AppendUserMessage(ctx, &t.rec, um)
	if err != nil {
		return err
	}
	if a.Fence == 0 {
		return errors.New("the turn did not start")
	}
	values, err := demoValues(&t.history, content)
	if err != nil {
		return err
	}
	reply := newFrame("message", newStep("assistant_message", "[assistant] "+content))
	end := session.Frame{ID: uuid.NewString(), Payload: []byte(`{"type":"task_end","stopped":false,"interrupted":false,"error":false}`)}
	_, err = t.st.NextTurn(ctx, &t.rec, a.Fence, turnID, false, values, reply, end)
	t.fence = a.Fence
	return err
}

// wholeTurn stores um and its turn in one AppendTurn.
func (t *storeTurner) wholeTurn(ctx context.Context, um session.UserMessage, content string) error {
	values, err := demoValues(&t.history, content)
	if err != nil {
		return err
	}
	reply := newFrame("message", newStep("assistant_message", "[assistant] "+content))
	end := session.Frame{ID: uuid.NewString(), Payload: []byte(`{"type":"task_end","stopped":false,"interrupted":false,"error":false}`)}
	_, stored, err := t.st.AppendTurn(ctx, &t.rec, um, t.fence+1, values, reply, end)
	if err != nil {
		return err
	}
	if !stored {
		return errors.New("the store declined the turn")
	}
	t.fence++
	return nil
}

// demoValues adds a message to history and returns the demo's values: the
// history, which grows by the message, and three more.
func demoValues(history *[]map[string]string, content string) (map[string][]byte, error) {
	*history = append(*history, map[string]string{"timestamp": time.Now().UTC().Format(time.RFC3339), "message": content, "type": "user"})
	h, err := json.Marshal(*history)
	if err != nil {
		return nil, err
	}
	return map[string][]byte{"conversation_history": h, "last_interaction": []byte(strconv.Quote(time.Now().UTC().Format(time.RFC3339))),
		"message_count": []byte(strconv.Itoa(len(*history))), "user_preferences": []byte(`{"language":"en","notifications":true}`)}, nil
}

func newStep(typ, content string) *session.Step {
	return &session.Step{ID: uuid.NewString(), Type: typ, Author: "storeload@example.com", Content: content, CreatedAt: time.Now().UTC()}
}

func newFrame(typ string, s *session.Step) session.Frame {
	id := uuid.NewString()
	p, _ := json.Marshal(map[string]any{"type": typ, "id": id, "step_type": s.Type, "author": s.Author, "content": s.Content})
	return session.Frame{ID: id, Payload: p, Step: s}
}

// counters are Redis's own figures.
type counters struct {
	cpu             float64 // seconds, used_cpu_sys + used_cpu_user
	reads, commands int64   // total_reads_processed, total_commands_processed
}

func readCounters(ctx context.Context, rdb *redis.Client) (counters, error) {
	var c counters
	info, err := rdb.Info(ctx, "cpu", "stats").Result()
	if err != nil {
		return c, fmt.Errorf("redis INFO: %w", err)
	}
	seen := 0
	for _, line := range strings.Split(info, "\n") {
		name, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue
		}
		switch name {
		case "used_cpu_sys", "used_cpu_user":
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return c, fmt.Errorf("redis %s %q: %w", name, v, err)
			}
			c.cpu += f
			seen++
		case "total_reads_processed", "total_commands_processed":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return c, fmt.Errorf("redis %s %q: %w", name, v, err)
			}
			if name == "total_reads_processed" {
				c.reads = n
			} else {
				c.commands = n
			}
			seen++
		}
	}
	if seen != 4 {
		return c, errors.New("redis INFO lacks used_cpu_sys, used_cpu_user, total_reads_processed or total_commands_processed")
	}
	return c, nil
}

// unlinkAll removes the keys under ns.
func unlinkAll(ctx context.Context, rdb *redis.Client, ns string) error {
	iter := rdb.Scan(ctx, 0, ns+"*", 1000).Iterator()
	var batch []string
	for iter.Next(ctx) {
		if batch = append(batch, iter.Val()); len(batch) == 500 {
			if err := rdb.Unlink(ctx, batch...).Err(); err != nil {
				return err
			}
			batch = batch[:0]
		}
	}
	if err := iter.Err(); err != nil {
		return err
	}
	if len(batch) > 0 {
		return rdb.Unlink(ctx, batch...).Err()
	}
	return nil
}
