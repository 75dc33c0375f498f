package main

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
)

// writeReport writes the result as text, one figure a line.
func writeReport(w io.Writer, res *Result) {
	p := func(name, format string, args ...any) {
		fmt.Fprintf(w, "%-21s %s\n", name+":", fmt.Sprintf(format, args...))
	}
	if res.Login != nil {
		l := res.Login
		p("mode", "login, %d concurrent logins against %s", res.Sessions, res.URL)
		p("logins", "%d in %.3fs (%.1f/s)", res.Sessions, l.Seconds, l.PerSecond)
		p("statuses", "%s", counts(l.Statuses, func(k string) string {
			if n := l.RetryAfter[k]; n > 0 {
				return fmt.Sprintf(" (Retry-After on %d)", n)
			}
			return ""
		}))
		p("success status", "%s (and 503 or 429 with Retry-After)", cmp.Or(l.Expect, "200"))
		p("login latency", "%s", latency(l.Latency))
		if s := res.Server; s != nil {
			if s.Error != "" {
				p("server", "pid %d: %s", s.PID, s.Error)
			} else {
				p("server peak RSS", "%s VmHWM (RSS %s before, %s after; pid %d)", kib(s.PeakRSSKiB),
					kib(s.RSSBeforeKiB), kib(s.RSSAfterKiB), s.PID)
			}
		}
		result(p, res)
		return
	}
	if res.Mode == ModeChat {
		p("mode", "chat, %d sessions against %s for %.1fs (pause %gs)", res.Sessions, res.URL,
			res.DurationSeconds, res.PauseSeconds)
	} else {
		p("mode", "%s, %d sessions against %s for %.1fs", res.Mode, res.Sessions, res.URL, res.DurationSeconds)
	}
	p("sessions opened", "%d/%d in %.3fs (%d failed; open p50 %.1fms, p99 %.1fms)", res.SessionsOpened, res.Sessions,
		res.OpenSeconds, res.SessionsFailed, res.OpenLatency.P50, res.OpenLatency.P99)
	if len(res.OpenErrors) > 0 {
		p("open errors", "%s", counts(res.OpenErrors, nil))
	}
	if res.Mode == ModeChat {
		p("messages sent", "%d", res.MessagesSent)
		p("replies received", "%d (%d unmatched)", res.RepliesReceived, res.Unmatched)
		p("messages per second", "%.1f", res.MessagesPerSecond)
		p("latency", "%s", latency(res.Latency))
	}
	p("errors", "%s", counts(res.Errors, nil))
	p("seq gaps", "%d", res.Gaps)
	p("duplicates dropped", "%d", res.Duplicates)
	p("reconnects", "%d (resets %d, sessions replaced %d, messages resent %d)", res.Reconnects, res.Resets,
		res.Replaced, res.Resent)
	for _, pr := range []struct {
		name string
		r    *ProcResult
	}{{"server", res.Server}, {"redis", res.Redis}} {
		if pr.r == nil {
			continue
		}
		if pr.r.Error != "" {
			p(pr.name, "pid %d: %s", pr.r.PID, pr.r.Error)
			continue
		}
		p(pr.name+" RSS", "%.1f KiB per session (%s before opening, %s after; peak %s; pid %d)",
			pr.r.RSSPerSessionKiB, kib(pr.r.RSSBeforeKiB), kib(pr.r.RSSAfterKiB), kib(pr.r.PeakRSSKiB), pr.r.PID)
		if res.Mode == ModeChat {
			p(pr.name+" CPU", "%.3fms per message (%.2fs in the window)", pr.r.CPUPerMessageMs, pr.r.CPUSeconds)
		} else {
			p(pr.name+" CPU", "%.2fs in the window", pr.r.CPUSeconds)
		}
	}
	if ro := res.RedisOps; ro != nil {
		switch {
		case ro.Error != "":
			p("redis ops", "%s", ro.Error)
		case res.Mode == ModeChat:
			p("redis ops", "%.2f reads, %.2f commands per message (%d reads, %d commands)",
				ro.ReadsPerMessage, ro.CommandsPerMessage, ro.ReadsProcessed, ro.Commands)
		default:
			p("redis ops", "%d reads, %d commands in the window", ro.ReadsProcessed, ro.Commands)
		}
	}
	result(p, res)
}

func result(p func(name, format string, args ...any), res *Result) {
	if res.Failed {
		p("result", "FAILED: %s", strings.Join(res.Failures, "; "))
		return
	}
	p("result", "OK")
}

// counts lists a map of counts by key, in key order; note adds to a key.
func counts(m map[string]int64, note func(string) string) string {
	if len(m) == 0 {
		return "none"
	}
	var b strings.Builder
	for i, k := range slices.Sorted(maps.Keys(m)) {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%s=%d", k, m[k])
		if note != nil {
			b.WriteString(note(k))
		}
	}
	return b.String()
}

func latency(l Latency) string {
	if l.Count == 0 {
		return "none"
	}
	return fmt.Sprintf("p50 %.2fms  p90 %.2fms  p99 %.2fms  max %.2fms  (mean %.2fms, %d samples)",
		l.P50, l.P90, l.P99, l.Max, l.Mean, l.Count)
}

// kib formats a size in KiB.
func kib(n int64) string {
	switch {
	case n >= 10<<20 || n <= -10<<20:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<20))
	case n >= 10<<10 || n <= -10<<10:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d KiB", n)
}
