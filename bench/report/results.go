package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// The servers and the loads of a run, as they name the result files.
const (
	serverFloor = "floor"
	serverChatd = "chatd"

	loadChat       = "chat"
	loadSaturation = "saturation"
	loadIdle       = "idle"
	loadLogin      = "login"
)

// runInfo is run.json: when and on what machine the run was made, and
// how long its loads lasted.
type runInfo struct {
	Date         string `json:"date"`
	NProc        int    `json:"nproc"`
	CPUModel     string `json:"cpu_model"`
	MemTotalKiB  int64  `json:"mem_total_kib"`
	GoVersion    string `json:"go_version"`
	RedisVersion string `json:"redis_version"`
	// HashWorkers is chatd's number of password hashing workers
	// (CHAT_HASH_WORKERS, by default the number of CPUs).
	HashWorkers int    `json:"hash_workers"`
	Command     string `json:"command"`
	// Commit is the commit the binaries were built from (git describe
	// --always --dirty).
	Commit string `json:"commit"`
	// LoadSeconds is how long the builds and the loads took.
	LoadSeconds float64 `json:"load_seconds"`
	// Durations is chatload's -duration of each load, in seconds.
	Durations map[string]float64 `json:"durations_s"`
	// Rounds is how many times the chat and saturation loads ran on each
	// server (0 in the results of a run from before rounds: one).
	Rounds int `json:"rounds"`
}

// loadResult is the part of chatload's JSON result that the report reads.
type loadResult struct {
	Mode              string           `json:"mode"`
	Sessions          int              `json:"sessions"`
	DurationSeconds   float64          `json:"duration_seconds"`
	PauseSeconds      float64          `json:"pause_seconds"`
	SessionsOpened    int              `json:"sessions_opened"`
	SessionsFailed    int              `json:"sessions_failed"`
	MessagesSent      int64            `json:"messages_sent"`
	RepliesReceived   int64            `json:"replies_received"`
	MessagesPerSecond float64          `json:"messages_per_second"`
	Latency           latency          `json:"latency"`
	Errors            map[string]int64 `json:"errors"`
	Gaps              int64            `json:"gaps"`
	Server            *procResult      `json:"server"`
	Redis             *procResult      `json:"redis"`
	RedisOps          *redisOps        `json:"redis_ops"`
	Login             *loginResult     `json:"login"`
	Failed            bool             `json:"failed"`
	Failures          []string         `json:"failures"`
}

// latency is chatload's summary of latencies, in milliseconds.
type latency struct {
	Count int64   `json:"count"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	Max   float64 `json:"max_ms"`
}

// procResult is what chatload read of a process in /proc.
type procResult struct {
	RSSPerSessionKiB float64 `json:"rss_per_session_kib"`
	PeakRSSKiB       int64   `json:"peak_rss_kib"`
	CPUSeconds       float64 `json:"cpu_seconds"`
	CPUPerMessageMs  float64 `json:"cpu_per_message_ms"`
	Error            string  `json:"error"`
}

// redisOps is what chatload read of Redis's counters.
type redisOps struct {
	ReadsProcessed  int64   `json:"reads_processed"`
	ReadsPerMessage float64 `json:"reads_per_message"`
	Error           string  `json:"error"`
}

// loginResult is the outcome of chatload's login mode.
type loginResult struct {
	Expect     string           `json:"expect"`
	Statuses   map[string]int64 `json:"statuses"`
	RetryAfter map[string]int64 `json:"retry_after"`
}

// redisMemory is <server>-idle-redis-memory.json: Redis's used_memory, in
// bytes, before the idle sessions were opened and while they were held.
type redisMemory struct {
	UsedMemoryBefore int64 `json:"used_memory_before"`
	UsedMemoryAfter  int64 `json:"used_memory_after"`
}

// round is one run of a load on each server, one after the other.
type round struct{ floor, chatd *loadResult }

// results are the files of a run.
type results struct {
	run runInfo
	// loads are chatload's results by "<server>-<load>"; for the loads run
	// in rounds, the first round's.
	loads map[string]*loadResult
	// rounds are the results of the chat and saturation loads by load,
	// in the order they ran (files <server>-<load>-<round>.json, or one
	// round of <server>-<load>.json from a run before rounds).
	rounds map[string][]round
	// memory is the Redis memory of the idle load by server.
	memory map[string]*redisMemory
	// missing names the files that were not found.
	missing []string
}

// load returns the result of a load on a server, nil when missing.
func (rs *results) load(server, load string) *loadResult {
	return rs.loads[server+"-"+load]
}

// loadResults reads the files of a run in dir. A missing file is noted
// in missing; a file that cannot be read or decoded is an error.
func loadResults(dir string) (*results, error) {
	rs := &results{loads: map[string]*loadResult{}, memory: map[string]*redisMemory{}, rounds: map[string][]round{}}
	read := func(name string, v any) (bool, error) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if errors.Is(err, fs.ErrNotExist) {
			rs.missing = append(rs.missing, name)
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if err := json.Unmarshal(b, v); err != nil {
			return false, fmt.Errorf("%s: %w", name, err)
		}
		return true, nil
	}
	if _, err := read("run.json", &rs.run); err != nil {
		return nil, err
	}
	exists := func(name string) bool {
		_, err := os.Stat(filepath.Join(dir, name))
		return err == nil
	}
	for _, load := range []string{loadChat, loadSaturation} {
		// The rounds run.json names, each missing file noted; when it names
		// none, the rounds until neither server has one, or else the files
		// of a run from before rounds.
		for k := 1; ; k++ {
			suffix := fmt.Sprintf("-%d.json", k)
			if rs.run.Rounds > 0 {
				if k > rs.run.Rounds {
					break
				}
			} else if !exists(serverFloor+"-"+load+suffix) && !exists(serverChatd+"-"+load+suffix) {
				if k > 1 {
					break
				}
				suffix = ".json"
			}
			var rd round
			for _, server := range []string{serverFloor, serverChatd} {
				var r loadResult
				ok, err := read(server+"-"+load+suffix, &r)
				if err != nil {
					return nil, err
				}
				if ok {
					if server == serverFloor {
						rd.floor = &r
					} else {
						rd.chatd = &r
					}
					if k == 1 {
						rs.loads[server+"-"+load] = &r
					} else {
						rs.loads[fmt.Sprintf("%s-%s-%d", server, load, k)] = &r
					}
				}
			}
			rs.rounds[load] = append(rs.rounds[load], rd)
			if suffix == ".json" {
				break
			}
		}
	}
	for _, server := range []string{serverFloor, serverChatd} {
		loads := []string{loadIdle}
		if server == serverChatd {
			loads = append(loads, loadLogin)
		}
		for _, load := range loads {
			var r loadResult
			ok, err := read(server+"-"+load+".json", &r)
			if err != nil {
				return nil, err
			}
			if ok {
				rs.loads[server+"-"+load] = &r
			}
		}
		var m redisMemory
		ok, err := read(server+"-idle-redis-memory.json", &m)
		if err != nil {
			return nil, err
		}
		if ok {
			rs.memory[server] = &m
		}
	}
	return rs, nil
}
