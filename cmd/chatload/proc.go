package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// clockTicks is USER_HZ, the unit of the CPU times of /proc/<pid>/stat:
// 100 on every Linux architecture Go runs on.
const clockTicks = 100

// procSample is what /proc tells of a process at one moment.
type procSample struct {
	rssKiB int64         // VmRSS
	hwmKiB int64         // VmHWM, the peak RSS
	cpu    time.Duration // user + system time
}

// readProc reads /proc/<pid>/status and /proc/<pid>/stat.
func readProc(pid int) (procSample, error) {
	var s procSample
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, fmt.Errorf("read status of pid %d: %w", pid, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		switch name {
		case "VmRSS":
			s.rssKiB, err = parseKiB(value)
		case "VmHWM":
			s.hwmKiB, err = parseKiB(value)
		}
		if err != nil {
			return s, fmt.Errorf("status of pid %d: %s: %w", pid, name, err)
		}
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, fmt.Errorf("read stat of pid %d: %w", pid, err)
	}
	s.cpu, err = parseStatCPU(stat)
	if err != nil {
		return s, fmt.Errorf("stat of pid %d: %w", pid, err)
	}
	return s, nil
}

// parseKiB reads a status value such as "  123456 kB".
func parseKiB(v string) (int64, error) {
	f := strings.Fields(v)
	if len(f) != 2 || f[1] != "kB" {
		return 0, fmt.Errorf("unexpected value %q", strings.TrimSpace(v))
	}
	return strconv.ParseInt(f[0], 10, 64)
}

// parseStatCPU returns utime + stime of a /proc/<pid>/stat line. The
// command name (field 2) is in parentheses and may hold spaces and
// parentheses itself, so fields are counted after the last ')'.
func parseStatCPU(stat []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("no command name")
	}
	f := strings.Fields(string(stat[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, errors.New("too few fields")
	}
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("cpu time %q: %w", s, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// redisCounters are the counters of Redis the tool reads.
type redisCounters struct {
	reads    int64 // INFO stats total_reads_processed
	commands int64 // sum of the calls of INFO commandstats, INFO excluded
}

// redisInfo reads the counters of the Redis at url.
func redisInfo(ctx context.Context, c *redis.Client) (redisCounters, error) {
	var rc redisCounters
	stats, err := c.Info(ctx, "stats").Result()
	if err != nil {
		return rc, fmt.Errorf("redis INFO stats: %w", err)
	}
	found := false
	for _, line := range strings.Split(stats, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "total_reads_processed:"); ok {
			if rc.reads, err = strconv.ParseInt(v, 10, 64); err != nil {
				return rc, fmt.Errorf("redis total_reads_processed %q: %w", v, err)
			}
			found = true
		}
	}
	if !found {
		return rc, errors.New("redis INFO stats has no total_reads_processed")
	}
	cmds, err := c.Info(ctx, "commandstats").Result()
	if err != nil {
		return rc, fmt.Errorf("redis INFO commandstats: %w", err)
	}
	rc.commands, err = sumCalls(cmds)
	return rc, err
}

// sumCalls adds up the calls of an INFO commandstats answer, leaving out
// the INFO commands (the tool's own).
func sumCalls(info string) (int64, error) {
	var total int64
	for _, line := range strings.Split(info, "\n") {
		line = strings.TrimSpace(line)
		name, fields, ok := strings.Cut(line, ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") || name == "cmdstat_info" {
			continue
		}
		for _, kv := range strings.Split(fields, ",") {
			if v, ok := strings.CutPrefix(kv, "calls="); ok {
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					return 0, fmt.Errorf("redis %s calls %q: %w", name, v, err)
				}
				total += n
			}
		}
	}
	return total, nil
}
