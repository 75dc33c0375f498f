package main

import (
	"cmp"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
)

// The markers of the section the report owns, and the heading and the
// introduction it is given when the document has no markers yet.
const (
	beginMarker = "<!-- bench:begin -->"
	endMarker   = "<!-- bench:end -->"
	heading     = "## Whole system against the floor"
	intro       = "How chatd as shipped (the demo application on Redis) compares with the floor " +
		"(`bench/floor`), the least a server can do on the same libraries: one Redis round trip per " +
		"message, no password hashing, no handlers. `bench/run.sh` builds both and chatload, starts " +
		"its own redis-server on loopback, and puts each server through the same loads, on a fresh " +
		"process for each load; `bench/report` writes the part below from the JSON results, which " +
		"are kept in `bench/results/latest/`, and decides from the figures whether each budget is " +
		"met. A budget is relative to the floor unless it says otherwise."
)

// Argon2id's memory (m=19456 KiB) held by each hashing worker, and the
// rest of the server that the login budget allows, in KiB.
const (
	hashWorkerKiB   = 19456
	loginBudgetBase = 100 << 10
)

// Verdicts of a budget.
const (
	metYes    = "yes"
	metNo     = "**no**"
	metNoData = "no data"
	none      = "—"
)

// row is one line of the table, formatted.
type row struct {
	Figure, Floor, Chatd, Ratio, Budget, Met string
}

// figure is a number measured on one server; ok is false when it is
// missing.
type figure struct {
	v  float64
	ok bool
}

func some(v float64) figure { return figure{v: v, ok: true} }

// format formats the figure with f, or none.
func (x figure) format(f func(float64) string) string {
	if !x.ok {
		return none
	}
	return f(x.v)
}

// ratio formats chatd's figure over the floor's.
func ratio(floor, chatd figure) string {
	if !floor.ok || !chatd.ok || floor.v <= 0 {
		return none
	}
	return fmt.Sprintf("%.2f×", chatd.v/floor.v)
}

// verdict formats whether a budget is met: no data when known is false.
func verdict(met, known bool) string {
	switch {
	case !known:
		return metNoData
	case met:
		return metYes
	}
	return metNo
}

// relative is the row of a figure whose budget is a multiple of the
// floor's: chatd ≤ limit × floor, or ≥ with atLeast.
func relative(name string, floor, chatd figure, f func(float64) string, limit float64, atLeast bool) row {
	op, met := "≤", chatd.v <= limit*floor.v
	if atLeast {
		op, met = "≥", chatd.v >= limit*floor.v
	}
	return row{Figure: name, Floor: floor.format(f), Chatd: chatd.format(f), Ratio: ratio(floor, chatd),
		Budget: fmt.Sprintf("%s %s× floor", op, trimFloat(limit)), Met: verdict(met, floor.ok && chatd.ok)}
}

// absolute is the row of a figure whose budget is chatd ≤ limit.
func absolute(name string, floor, chatd figure, f func(float64) string, limit float64) row {
	return row{Figure: name, Floor: floor.format(f), Chatd: chatd.format(f), Ratio: ratio(floor, chatd),
		Budget: fmt.Sprintf("≤ %s (chatd, absolute)", trimFloat(limit)), Met: verdict(chatd.v <= limit, chatd.ok)}
}

// zero is the row of a count whose budget is none on chatd.
func zero(name string, floor, chatd figure) row {
	return row{Figure: name, Floor: floor.format(count), Chatd: chatd.format(count), Ratio: none,
		Budget: "0", Met: verdict(chatd.v == 0, chatd.ok)}
}

// plain is the row of a figure without a budget.
func plain(name string, floor, chatd figure, f func(float64) string) row {
	return row{Figure: name, Floor: floor.format(f), Chatd: chatd.format(f), Ratio: ratio(floor, chatd),
		Budget: none, Met: none}
}

// buildRows computes the table's rows from the results. A figure of the
// loads run in rounds is that of the round whose ratio is the median
// (see median).
func buildRows(rs *results) []row {
	fc, cc := rs.load(serverFloor, loadChat), rs.load(serverChatd, loadChat)
	fs, cs := rs.load(serverFloor, loadSaturation), rs.load(serverChatd, loadSaturation)
	fi, ci := rs.load(serverFloor, loadIdle), rs.load(serverChatd, loadIdle)
	login := rs.load(serverChatd, loadLogin)
	chat, sat := rs.rounds[loadChat], rs.rounds[loadSaturation]
	q := func(f func(latency) float64) func(*loadResult) figure {
		return func(r *loadResult) figure { return quantile(r, f) }
	}
	cpu := func(redis bool) func(*loadResult) figure {
		return func(r *loadResult) figure { return cpuPerMessage(r, redis) }
	}
	floors, chatds := []*loadResult{fi}, []*loadResult{ci}
	for _, rd := range append(slices.Clone(chat), sat...) {
		floors, chatds = append(floors, rd.floor), append(chatds, rd.chatd)
	}

	chatLoad := describeChat(cmp.Or(cc, fc))
	var rows []row
	rows = append(rows,
		median(chat, redisReads).absolute("Redis round trips (reads) per user message, "+chatLoad, twoDecimals, 2),
		median(chat, q(p50)).plain("p50 send→reply, "+chatLoad, millis),
		median(chat, q(p90)).plain("p90 send→reply, "+chatLoad, millis),
		median(chat, q(p99)).relative("p99 send→reply, "+chatLoad, millis, 2, false),
		median(chat, q(top)).plain("max send→reply, "+chatLoad, millis),
		median(chat, rate).plain("messages per second, "+chatLoad, perSecond),
		median(chat, cpu(false)).relative("server CPU per message, "+chatLoad, cpuTime, 1.5, false),
		median(chat, cpu(true)).relative("Redis CPU per message, "+chatLoad, cpuTime, 1.5, false),
		median(sat, rate).relative("saturation: messages per second, "+describeSaturation(cmp.Or(cs, fs)), perSecond, 0.7, true),
		relative("server RSS per idle session, "+describeIdle(cmp.Or(ci, fi)), rssPerSession(fi), rssPerSession(ci), kibPerSession, 1, false),
		plain("Redis memory per idle session, "+describeIdle(cmp.Or(ci, fi)), redisMemPerSession(fi, rs.memory[serverFloor]),
			redisMemPerSession(ci, rs.memory[serverChatd]), kibPerSession),
		zero("errors (error frames, sessions lost or not opened), all loads", errorCount(floors...), errorCount(chatds...)),
		zero("seq gaps, all loads", gapCount(floors...), gapCount(chatds...)),
	)
	rows = append(rows, loginRows(login, rs.run)...)
	return rows
}

// picked is a figure of the loads run in rounds: the floor's and chatd's
// of the round whose ratio (chatd over floor) is the median, with the
// lowest and highest ratio of the rounds that had both figures.
type picked struct {
	floor, chatd figure
	lo, hi       float64
	n            int // rounds with both figures
}

// median picks the round of rounds whose ratio of f is the median (the
// lower of the two middle ones for an even count); without a round that
// has both figures, the first round's figures.
func median(rounds []round, f func(*loadResult) figure) picked {
	type pair struct {
		floor, chatd figure
		r            float64
	}
	var both []pair
	for _, rd := range rounds {
		a, b := f(rd.floor), f(rd.chatd)
		if a.ok && b.ok && a.v > 0 {
			both = append(both, pair{a, b, b.v / a.v})
		}
	}
	if len(both) == 0 {
		if len(rounds) == 0 {
			return picked{}
		}
		return picked{floor: f(rounds[0].floor), chatd: f(rounds[0].chatd)}
	}
	slices.SortStableFunc(both, func(x, y pair) int { return cmp.Compare(x.r, y.r) })
	m := both[(len(both)-1)/2]
	return picked{floor: m.floor, chatd: m.chatd, lo: both[0].r, hi: both[len(both)-1].r, n: len(both)}
}

// ratio formats the picked ratio, with the range of the rounds when there
// were several.
func (p picked) ratio() string {
	s := ratio(p.floor, p.chatd)
	if p.n > 1 && s != none {
		s += fmt.Sprintf(" (%.2f–%.2f×, %d rounds)", p.lo, p.hi, p.n)
	}
	return s
}

func (p picked) relative(name string, f func(float64) string, limit float64, atLeast bool) row {
	r := relative(name, p.floor, p.chatd, f, limit, atLeast)
	r.Ratio = p.ratio()
	return r
}

func (p picked) absolute(name string, f func(float64) string, limit float64) row {
	r := absolute(name, p.floor, p.chatd, f, limit)
	r.Ratio = p.ratio()
	return r
}

func (p picked) plain(name string, f func(float64) string) row {
	r := plain(name, p.floor, p.chatd, f)
	r.Ratio = p.ratio()
	return r
}

// loginRows are the rows of the login load, chatd's only.
func loginRows(login *loadResult, m runInfo) []row {
	name := "peak RSS (VmHWM) during " + describeLogins(login)
	workers := cmp.Or(m.HashWorkers, m.NProc)
	budgetKiB := float64(workers*hashWorkerKiB + loginBudgetBase)
	peak := figure{}
	if login != nil && login.Server != nil && login.Server.Error == "" && login.Server.PeakRSSKiB > 0 {
		peak = some(float64(login.Server.PeakRSSKiB))
	}
	peakRow := row{Figure: name, Floor: none, Chatd: peak.format(mib), Ratio: none,
		Budget: fmt.Sprintf("≤ %d workers × 19 MiB + 100 MiB = %s", workers, mib(budgetKiB)),
		Met:    verdict(peak.v <= budgetKiB, peak.ok && workers > 0)}
	if workers == 0 {
		peakRow.Budget = "≤ workers × 19 MiB + 100 MiB (workers unknown)"
	}

	retry := row{Figure: "503s with Retry-After, " + describeLogins(login), Floor: none, Chatd: none,
		Ratio: none, Budget: "all", Met: metNoData}
	statuses := row{Figure: "login answers, " + describeLogins(login), Floor: none, Chatd: none,
		Ratio: none, Budget: none, Met: none}
	if login != nil && login.Login != nil {
		n, with := login.Login.Statuses["503"], login.Login.RetryAfter["503"]
		retry.Chatd = fmt.Sprintf("%s of %s", thousands(with), thousands(n))
		retry.Met = verdict(with == n, true)
		statuses.Chatd = statusCounts(login.Login)
	}
	return []row{peakRow, retry, statuses}
}

// redisReads is Redis's total_reads_processed per message of a chat load.
func redisReads(r *loadResult) figure {
	if r == nil || r.RedisOps == nil || r.RedisOps.Error != "" || r.MessagesSent == 0 {
		return figure{}
	}
	return some(r.RedisOps.ReadsPerMessage)
}

// The latency figures of a chat load.
func p50(l latency) float64 { return l.P50 }
func p90(l latency) float64 { return l.P90 }
func p99(l latency) float64 { return l.P99 }
func top(l latency) float64 { return l.Max }

// quantile is a latency figure of a chat load, in milliseconds.
func quantile(r *loadResult, q func(latency) float64) figure {
	if r == nil || r.Latency.Count == 0 {
		return figure{}
	}
	return some(q(r.Latency))
}

// rate is the messages per second of a chat load.
func rate(r *loadResult) figure {
	if r == nil || r.MessagesSent == 0 {
		return figure{}
	}
	return some(r.MessagesPerSecond)
}

// cpuPerMessage is the CPU time per message of the server, or of Redis, in
// milliseconds.
func cpuPerMessage(r *loadResult, redis bool) figure {
	if r == nil || r.MessagesSent == 0 {
		return figure{}
	}
	p := r.Server
	if redis {
		p = r.Redis
	}
	if p == nil || p.Error != "" {
		return figure{}
	}
	return some(p.CPUPerMessageMs)
}

// rssPerSession is the server's RSS per session of an idle load, in KiB.
func rssPerSession(r *loadResult) figure {
	if r == nil || r.SessionsOpened == 0 || r.Server == nil || r.Server.Error != "" {
		return figure{}
	}
	return some(r.Server.RSSPerSessionKiB)
}

// redisMemPerSession is Redis's used_memory per session of an idle load,
// in KiB.
func redisMemPerSession(r *loadResult, m *redisMemory) figure {
	if r == nil || m == nil || r.SessionsOpened == 0 {
		return figure{}
	}
	return some(float64(m.UsedMemoryAfter-m.UsedMemoryBefore) / 1024 / float64(r.SessionsOpened))
}

// errorCount adds up the errors of loads: error frames and sessions that
// ended, and sessions that failed to open. It is missing when a load is.
func errorCount(loads ...*loadResult) figure {
	var n int64
	for _, r := range loads {
		if r == nil {
			return figure{}
		}
		for _, c := range r.Errors {
			n += c
		}
		n += int64(r.SessionsFailed)
	}
	return some(float64(n))
}

// gapCount adds up the seq gaps of loads. It is missing when a load is.
func gapCount(loads ...*loadResult) figure {
	var n int64
	for _, r := range loads {
		if r == nil {
			return figure{}
		}
		n += r.Gaps
	}
	return some(float64(n))
}

// describeChat names a chat load by its sessions and pause.
func describeChat(r *loadResult) string {
	if r == nil {
		return "chat load"
	}
	return fmt.Sprintf("%s sessions, pause %s", thousands(int64(r.Sessions)), seconds(r.PauseSeconds))
}

// describeSaturation names a saturation load by its sessions.
func describeSaturation(r *loadResult) string {
	if r == nil {
		return "saturation load"
	}
	return fmt.Sprintf("%s sessions, no pause", thousands(int64(r.Sessions)))
}

// describeIdle names an idle load by its sessions.
func describeIdle(r *loadResult) string {
	if r == nil {
		return "idle load"
	}
	return "at " + thousands(int64(r.Sessions)) + " sessions"
}

// describeLogins names a login load by its logins.
func describeLogins(r *loadResult) string {
	if r == nil {
		return "concurrent logins"
	}
	return thousands(int64(r.Sessions)) + " concurrent logins"
}

// statusCounts lists the answers of a login load by status.
func statusCounts(l *loginResult) string {
	var parts []string
	for _, st := range slices.Sorted(maps.Keys(l.Statuses)) {
		parts = append(parts, fmt.Sprintf("%s: %s", st, thousands(l.Statuses[st])))
	}
	if len(parts) == 0 {
		return none
	}
	return strings.Join(parts, ", ")
}

// renderSection writes the part of the document between the markers: the
// run, the loads, the table and notes on what failed or is missing. It
// ends with a newline.
func renderSection(rs *results) string {
	var b strings.Builder
	m := rs.run
	at := ""
	if m.Commit != "" {
		at = " at " + m.Commit
	}
	b.WriteString(wrap(fmt.Sprintf("`%s`%s — %s — %s; builds and loads took %s.",
		cmp.Or(m.Command, "bench/run.sh"), at, cmp.Or(m.Date, "date unknown"), describeMachine(m),
		duration(m.LoadSeconds))))
	b.WriteString("\n")
	b.WriteString(wrap(describeLoads(rs)))
	b.WriteString("\n")
	rows := buildRows(rs)
	b.WriteString("| figure | floor | chatd | ratio | budget | met? |\n")
	b.WriteString("| --- | --- | --- | --- | --- | --- |\n")
	budgets, met := 0, 0
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", r.Figure, r.Floor, r.Chatd, r.Ratio, r.Budget, r.Met)
		if r.Met != none {
			budgets++
			if r.Met == metYes {
				met++
			}
		}
	}
	b.WriteString("\n")
	b.WriteString(wrap(fmt.Sprintf("Budgets met: %d of %d.", met, budgets)))
	for _, n := range notes(rs) {
		b.WriteString("\n")
		b.WriteString(wrap(n))
	}
	return b.String()
}

// describeMachine names the machine of a run.
func describeMachine(m runInfo) string {
	var parts []string
	if m.NProc > 0 {
		cpu := fmt.Sprintf("%d CPUs", m.NProc)
		if m.CPUModel != "" {
			cpu += " (" + m.CPUModel + ")"
		}
		parts = append(parts, cpu)
	}
	if m.MemTotalKiB > 0 {
		parts = append(parts, fmt.Sprintf("%.1f GiB of memory", float64(m.MemTotalKiB)/(1<<20)))
	}
	if m.GoVersion != "" {
		parts = append(parts, m.GoVersion)
	}
	if m.RedisVersion != "" {
		parts = append(parts, "redis-server "+m.RedisVersion)
	}
	if len(parts) == 0 {
		return "machine unknown"
	}
	return strings.Join(parts, ", ")
}

// describeLoads is the paragraph on the loads of the run.
func describeLoads(rs *results) string {
	var loads []string
	if r := cmp.Or(rs.load(serverChatd, loadChat), rs.load(serverFloor, loadChat)); r != nil {
		loads = append(loads, fmt.Sprintf("**chat**: %s sessions%s, each sending a message, waiting for its "+
			"reply and pausing %s", thousands(int64(r.Sessions)), forSeconds(rs.run, loadChat), seconds(r.PauseSeconds)))
	}
	if r := cmp.Or(rs.load(serverChatd, loadSaturation), rs.load(serverFloor, loadSaturation)); r != nil {
		loads = append(loads, fmt.Sprintf("**saturation**: %s sessions%s, without pause",
			thousands(int64(r.Sessions)), forSeconds(rs.run, loadSaturation)))
	}
	if r := cmp.Or(rs.load(serverChatd, loadIdle), rs.load(serverFloor, loadIdle)); r != nil {
		loads = append(loads, fmt.Sprintf("**idle**: %s sessions opened, then held%s (RSS after opening "+
			"minus before, per session; Redis's used_memory likewise)", thousands(int64(r.Sessions)),
			forSeconds(rs.run, loadIdle)))
	}
	if r := rs.load(serverChatd, loadLogin); r != nil {
		expect := "200"
		if r.Login != nil && r.Login.Expect != "" {
			expect = r.Login.Expect
		}
		loads = append(loads, fmt.Sprintf("**login** (chatd only: the floor does not hash): %s logins at once "+
			"of distinct unknown identifiers, each hashed against a dummy hash and refused (%s expected)",
			thousands(int64(r.Sessions)), expect))
	}
	s := "Loads, each on a fresh server process: " + strings.Join(loads, "; ") + ". "
	if len(loads) == 0 {
		s = "No load result was found. "
	}
	return s + "chatd runs the demo as shipped (default profile) with " +
		"`CHAT_MAX_SESSIONS_PER_USER=0 CHAT_RATE_PER_S=0 CHAT_USER_RATE_PER_MIN=0`; the sessions of a " +
		"load share one user and one token. CPU per message is the process's CPU time over the " +
		"messages of the window; Redis round trips are `total_reads_processed` over the messages."
}

// forSeconds tells how long a load lasted (chatload's -duration), or
// nothing when the run did not say.
func forSeconds(run runInfo, load string) string {
	if d, ok := run.Durations[load]; ok && d > 0 {
		return " for " + seconds(d)
	}
	return ""
}

// notes are the remarks under the table: the loads chatload failed and
// the files that were missing.
func notes(rs *results) []string {
	var out []string
	for _, key := range slices.Sorted(maps.Keys(rs.loads)) {
		if r := rs.loads[key]; r.Failed {
			out = append(out, fmt.Sprintf("chatload failed the %s load: %s.", key, strings.Join(r.Failures, "; ")))
		}
	}
	if len(rs.missing) > 0 {
		out = append(out, "Missing results (their figures have no data): "+strings.Join(rs.missing, ", ")+".")
	}
	return out
}

// replaceSection returns doc with section between the markers. A document
// without markers gets them, under the heading and its introduction, before
// its first section (or inside the heading's section, when it has the
// heading already).
func replaceSection(doc, section string) (string, error) {
	nb, ne := strings.Count(doc, beginMarker), strings.Count(doc, endMarker)
	switch {
	case nb == 1 && ne == 1:
		i, j := strings.Index(doc, beginMarker), strings.Index(doc, endMarker)
		if j < i {
			return "", fmt.Errorf("%s comes before %s", endMarker, beginMarker)
		}
		return doc[:i+len(beginMarker)] + "\n" + section + doc[j:], nil
	case nb != 0 || ne != 0:
		return "", fmt.Errorf("want one %s and one %s, found %d and %d", beginMarker, endMarker, nb, ne)
	}
	block := beginMarker + "\n" + section + endMarker + "\n"
	if h := lineIndex(doc, heading, 0); h >= 0 {
		// The end of the heading's section: the next section or the end.
		at := lineIndex(doc, "## ", h+len(heading))
		if at < 0 {
			return strings.TrimRight(doc, "\n") + "\n\n" + block, nil
		}
		return doc[:at] + block + "\n" + doc[at:], nil
	}
	block = heading + "\n\n" + wrap(intro) + "\n" + block + "\n"
	at := lineIndex(doc, "## ", 0)
	if at < 0 {
		return strings.TrimRight(doc, "\n") + "\n\n" + block, nil
	}
	return doc[:at] + block + doc[at:], nil
}

// lineIndex returns the index of the first line of doc at or after from
// that starts with prefix, or -1.
func lineIndex(doc, prefix string, from int) int {
	for i := from; i < len(doc); {
		if (i == 0 || doc[i-1] == '\n') && strings.HasPrefix(doc[i:], prefix) {
			return i
		}
		j := strings.IndexByte(doc[i:], '\n')
		if j < 0 {
			return -1
		}
		i += j + 1
	}
	return -1
}

// wrap wraps a paragraph at 100 columns and ends it with a newline.
func wrap(s string) string {
	const width = 100
	var b strings.Builder
	n := 0
	for _, w := range strings.Fields(s) {
		switch {
		case n == 0:
		case n+1+len([]rune(w)) > width:
			b.WriteString("\n")
			n = 0
		default:
			b.WriteString(" ")
			n++
		}
		b.WriteString(w)
		n += len([]rune(w))
	}
	b.WriteString("\n")
	return b.String()
}

// The formats of the figures.

func twoDecimals(v float64) string { return fmt.Sprintf("%.2f", v) }

func millis(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f ms", v)
	case v >= 10:
		return fmt.Sprintf("%.1f ms", v)
	}
	return fmt.Sprintf("%.2f ms", v)
}

// cpuTime formats a CPU time given in milliseconds.
func cpuTime(ms float64) string {
	if ms >= 1 {
		return fmt.Sprintf("%.2f ms", ms)
	}
	return fmt.Sprintf("%.1f µs", ms*1000)
}

func perSecond(v float64) string { return thousands(int64(math.Round(v))) + "/s" }

func kibPerSession(v float64) string {
	if math.Abs(v) < 10 {
		return fmt.Sprintf("%.2f KiB", v)
	}
	return fmt.Sprintf("%.1f KiB", v)
}

// mib formats a size given in KiB.
func mib(kib float64) string { return fmt.Sprintf("%.1f MiB", kib/1024) }

func count(v float64) string { return thousands(int64(v)) }

// seconds formats a number of seconds: "1 s", "0.5 s".
func seconds(s float64) string { return trimFloat(s) + " s" }

// duration formats a run's length: "3 min 05 s".
func duration(s float64) string {
	if s <= 0 {
		return "an unknown time"
	}
	t := int64(math.Round(s))
	if t < 60 {
		return fmt.Sprintf("%d s", t)
	}
	return fmt.Sprintf("%d min %02d s", t/60, t%60)
}

// trimFloat formats v with no useless zeros: 2, 1.5, 0.7.
func trimFloat(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

// thousands formats n with commas between the thousands: 10,000.
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
