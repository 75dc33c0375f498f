package main

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// fixture is a run's results: chatd misses some budgets, its saturation
// load failed in chatload, and the floor's Redis memory is missing.
const fixture = "testdata/results"

func loadFixture(t *testing.T) *results {
	t.Helper()
	rs, err := loadResults(fixture)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// rowByPrefix returns the one row whose figure starts with prefix.
func rowByPrefix(t *testing.T, rows []row, prefix string) row {
	t.Helper()
	var found []row
	for _, r := range rows {
		if strings.HasPrefix(r.Figure, prefix) {
			found = append(found, r)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d rows start with %q, want 1", len(found), prefix)
	}
	return found[0]
}

func TestTableOfTheFixture(t *testing.T) {
	rows := buildRows(loadFixture(t))
	want := []row{
		{"Redis round trips (reads) per user message, 1,000 sessions, pause 1 s", "1.00", "3.00", "3.00×", "≤ 2 (chatd, absolute)", metNo},
		{"p50 send→reply, 1,000 sessions, pause 1 s", "1.00 ms", "2.00 ms", "2.00×", none, none},
		{"p90 send→reply, 1,000 sessions, pause 1 s", "2.50 ms", "5.00 ms", "2.00×", none, none},
		{"p99 send→reply, 1,000 sessions, pause 1 s", "10.0 ms", "15.0 ms", "1.50×", "≤ 2× floor", metYes},
		{"max send→reply, 1,000 sessions, pause 1 s", "40.0 ms", "120 ms", "3.00×", none, none},
		{"messages per second, 1,000 sessions, pause 1 s", "987/s", "915/s", "0.93×", none, none},
		{"server CPU per message, 1,000 sessions, pause 1 s", "100.0 µs", "200.0 µs", "2.00×", "≤ 1.5× floor", metNo},
		{"Redis CPU per message, 1,000 sessions, pause 1 s", "50.0 µs", "60.0 µs", "1.20×", "≤ 1.5× floor", metYes},
		{"saturation: messages per second, 200 sessions, no pause", "1,000/s", "650/s", "0.65×", "≥ 0.7× floor", metNo},
		{"server RSS per idle session, at 10,000 sessions", "20.0 KiB", "20.0 KiB", "1.00×", "≤ 1× floor", metYes},
		{"Redis memory per idle session, at 10,000 sessions", none, "2.00 KiB", none, none, none},
		{"errors (error frames, sessions lost or not opened), all loads", "0", "1", none, "0", metNo},
		{"seq gaps, all loads", "0", "0", none, "0", metYes},
		{"peak RSS (VmHWM) during 1,000 concurrent logins", none, "130.0 MiB", none,
			"≤ 2 workers × 19 MiB + 100 MiB = 138.0 MiB", metYes},
		{"503s with Retry-After, 1,000 concurrent logins", none, "40 of 50", none, "all", metNo},
		{"login answers, 1,000 concurrent logins", none, "401: 950, 503: 50", none, none, none},
	}
	if len(rows) != len(want) {
		t.Fatalf("%d rows, want %d: %+v", len(rows), len(want), rows)
	}
	for i := range want {
		if rows[i] != want[i] {
			t.Errorf("row %d:\n got  %+v\n want %+v", i, rows[i], want[i])
		}
	}
}

// TestVerdictsFollowTheFigures changes figures of the fixture and sees
// the verdicts change with them.
func TestVerdictsFollowTheFigures(t *testing.T) {
	rs := loadFixture(t)
	rs.load(serverChatd, loadSaturation).MessagesPerSecond = 700  // 0.7× the floor: met
	rs.load(serverChatd, loadChat).RedisOps.ReadsPerMessage = 2   // at the budget: met
	rs.load(serverChatd, loadChat).Latency.P99 = 20.5             // past 2× the floor
	rs.load(serverChatd, loadIdle).Server.RSSPerSessionKiB = 20.1 // past 1× the floor
	rs.load(serverChatd, loadLogin).Server.PeakRSSKiB = 138*1024 + 1
	rs.load(serverChatd, loadLogin).Login.RetryAfter["503"] = 50
	rows := buildRows(rs)
	for prefix, want := range map[string]string{
		"saturation":                  metYes,
		"Redis round trips":           metYes,
		"p99 send":                    metNo,
		"server RSS per idle session": metNo,
		"peak RSS":                    metNo,
		"503s with Retry-After":       metYes,
	} {
		if got := rowByPrefix(t, rows, prefix).Met; got != want {
			t.Errorf("%s: met %q, want %q", prefix, got, want)
		}
	}

	// Without the floor's figures, the relative budgets have no data.
	delete(rs.loads, "floor-chat")
	rs.rounds[loadChat][0].floor = nil
	rows = buildRows(rs)
	if r := rowByPrefix(t, rows, "p99 send"); r.Met != metNoData || r.Floor != none || r.Ratio != none {
		t.Errorf("p99 without the floor: %+v", r)
	}
	if r := rowByPrefix(t, rows, "Redis round trips"); r.Met != metYes {
		t.Errorf("an absolute budget without the floor: %+v", r)
	}
	if r := rowByPrefix(t, rows, "errors"); r.Floor != none || r.Chatd != "1" || r.Met != metNo {
		t.Errorf("errors without a floor load: %+v", r)
	}
}

func TestSectionOfTheFixture(t *testing.T) {
	s := renderSection(loadFixture(t))
	for _, want := range []string{
		"`bench/run.sh` at abc1234 — 2026-12-01 — 2 CPUs (Test CPU), 24.0 GiB of memory, go1.26.0, redis-server 7.0.15;",
		"builds and loads took 3 min 05 s.",
		"**chat**: 1,000 sessions for 15 s,",
		"**idle**: 10,000 sessions opened, then held for 5 s",
		"| figure | floor | chatd | ratio | budget | met? |\n| --- | --- | --- | --- | --- | --- |\n",
		"| p99 send→reply, 1,000 sessions, pause 1 s | 10.0 ms | 15.0 ms | 1.50× | ≤ 2× floor | yes |\n",
		"Budgets met: 5 of 10.",
		"chatload failed the chatd-saturation load: 1 errors; 1 messages without a reply.",
		"Missing results (their figures have no data): floor-idle-redis-memory.json.",
	} {
		// Prose is wrapped: compare with the spaces folded.
		if !strings.Contains(fold(s), fold(want)) {
			t.Errorf("section lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, beginMarker) || strings.Contains(s, endMarker) || !strings.HasSuffix(s, "\n") {
		t.Errorf("section with a marker or without a final newline:\n%s", s)
	}
	for _, line := range strings.Split(s, "\n") {
		if !strings.HasPrefix(line, "|") && len([]rune(line)) > 100 {
			t.Errorf("line of %d characters: %q", len([]rune(line)), line)
		}
	}
}

// fold folds every run of white space of s into one space.
func fold(s string) string { return strings.Join(strings.Fields(s), " ") }

func TestReplaceSection(t *testing.T) {
	const (
		top   = "# Benchmarks\n\nIntro paragraph.\n\n"
		rest  = "## Password hashing\n\nText.\n\n## Frame codec\n\nMore.\n"
		first = "first table\n"
		again = "second table\n"
	)
	// A document without markers gets the heading, the introduction and
	// the markers before its first section.
	doc, err := replaceSection(top+rest, first)
	if err != nil {
		t.Fatal(err)
	}
	want := top + heading + "\n\n" + wrap(intro) + "\n" + beginMarker + "\n" + first + endMarker + "\n\n" + rest
	if doc != want {
		t.Fatalf("inserted:\n%s\nwant:\n%s", doc, want)
	}
	// With markers, only what is between them changes.
	doc2, err := replaceSection(doc, again)
	if err != nil {
		t.Fatal(err)
	}
	if doc2 != strings.Replace(want, first, again, 1) {
		t.Fatalf("replaced:\n%s", doc2)
	}
	if doc3, _ := replaceSection(doc2, again); doc3 != doc2 {
		t.Fatalf("replacing with the same section changed the document:\n%s", doc3)
	}

	// A document with the heading but no markers gets them at the end of
	// the heading's section.
	withHeading := top + heading + "\n\nOur own words.\n\n" + rest
	doc, err = replaceSection(withHeading, first)
	if err != nil {
		t.Fatal(err)
	}
	want = top + heading + "\n\nOur own words.\n\n" + beginMarker + "\n" + first + endMarker + "\n\n" + rest
	if doc != want {
		t.Fatalf("inserted under the heading:\n%s\nwant:\n%s", doc, want)
	}

	// A document without sections gets the section at its end.
	if doc, err := replaceSection("# Title\n", first); err != nil || !strings.HasSuffix(doc, beginMarker+"\n"+first+endMarker+"\n\n") {
		t.Fatalf("no sections: %q, %v", doc, err)
	}

	for name, bad := range map[string]string{
		"reversed": top + endMarker + "\n" + beginMarker + "\n" + rest,
		"no end":   top + beginMarker + "\n" + rest,
		"twice":    top + beginMarker + endMarker + beginMarker + endMarker + rest,
	} {
		if _, err := replaceSection(bad, first); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// TestRealMain rewrites a document from the fixture, twice, and prints
// the section each time.
func TestRealMain(t *testing.T) {
	const (
		top  = "# Benchmarks\n\nIntro paragraph.\n\n"
		rest = "## Password hashing\n\nText.\n"
	)
	path := filepath.Join(t.TempDir(), "benchmarks.md")
	if err := os.WriteFile(path, []byte(top+rest), 0o644); err != nil {
		t.Fatal(err)
	}
	var printed []string
	for range 2 {
		var stdout, stderr bytes.Buffer
		if code := realMain([]string{"-results", fixture, "-doc", path}, &stdout, &stderr); code != 0 {
			t.Fatalf("exit %d: %s", code, stderr.String())
		}
		printed = append(printed, stdout.String())
	}
	if printed[0] != printed[1] || !strings.Contains(printed[0], "| seq gaps, all loads | 0 | 0 | — | 0 | yes |\n") {
		t.Fatalf("printed:\n%s\nthen:\n%s", printed[0], printed[1])
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := top + heading + "\n\n" + wrap(intro) + "\n" + beginMarker + "\n" + printed[0] + endMarker + "\n\n" + rest
	if string(b) != want {
		t.Fatalf("document:\n%s\nwant:\n%s", b, want)
	}

	var stderr bytes.Buffer
	if code := realMain([]string{"-results", fixture, "-doc", filepath.Join(t.TempDir(), "none.md")}, &bytes.Buffer{}, &stderr); code != 2 {
		t.Fatalf("a missing document: exit %d", code)
	}
	if code := realMain([]string{"-results", fixture, "-doc", path, "extra"}, &bytes.Buffer{}, &stderr); code != 2 {
		t.Fatalf("an extra argument: exit %d", code)
	}
}

// TestRounds: a figure of loads run in rounds is the round whose ratio
// is the median, with the range of the ratios beside it, and the budget's
// verdict follows that round; errors add up over every round.
func TestRounds(t *testing.T) {
	rs := loadFixture(t)
	first := rs.rounds[loadChat][0]
	if first.floor == nil || first.chatd == nil {
		t.Fatal("the fixture has no chat load on both servers")
	}
	withCPU := func(r *loadResult, ms float64, errs int64) *loadResult {
		c, p := *r, *r.Server
		p.CPUPerMessageMs = ms
		c.Server, c.Errors = &p, map[string]int64{"internal": errs}
		return &c
	}
	// Server CPU ratios 3.0, 1.2 and 1.4: the median is 1.4, met.
	rs.rounds[loadChat] = []round{
		{withCPU(first.floor, 0.1, 0), withCPU(first.chatd, 0.3, 1)},
		{withCPU(first.floor, 0.2, 0), withCPU(first.chatd, 0.24, 2)},
		{withCPU(first.floor, 0.1, 0), withCPU(first.chatd, 0.14, 0)},
	}
	rows := buildRows(rs)
	r := rowByPrefix(t, rows, "server CPU")
	if r.Floor != "100.0 µs" || r.Chatd != "140.0 µs" || r.Ratio != "1.40× (1.20–3.00×, 3 rounds)" || r.Met != metYes {
		t.Errorf("server CPU over three rounds: %+v", r)
	}
	// The errors of the chat rounds (3), the saturation load (1) and the
	// idle load (0).
	if r := rowByPrefix(t, rows, "errors"); r.Chatd != "4" || r.Met != metNo {
		t.Errorf("errors over the rounds: %+v", r)
	}
	// With the third round at 2.0, the median is 2.0: not met.
	rs.rounds[loadChat][2].chatd = withCPU(first.chatd, 0.2, 0)
	if r := rowByPrefix(t, buildRows(rs), "server CPU"); r.Chatd != "200.0 µs" || r.Met != metNo {
		t.Errorf("server CPU with a median of 2.0: %+v", r)
	}
}

// TestRoundFiles: the results of loads run in rounds are read from
// <server>-<load>-<round>.json, in the order of the rounds.
func TestRoundFiles(t *testing.T) {
	dir := copyFixture(t, func(name string, b []byte) ([]string, []byte) {
		if base, ok := strings.CutSuffix(name, "-chat.json"); ok {
			return []string{base + "-chat-1.json", base + "-chat-2.json"}, b
		}
		return []string{name}, b
	})
	rs, err := loadResults(dir)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(rs.rounds[loadChat]); n != 2 {
		t.Fatalf("%d chat rounds, want 2", n)
	}
	if n := len(rs.rounds[loadSaturation]); n != 1 {
		t.Fatalf("%d saturation rounds (from the file without a round), want 1", n)
	}
	for _, rd := range rs.rounds[loadChat] {
		if rd.floor == nil || rd.chatd == nil {
			t.Fatalf("a chat round without both results: %+v", rd)
		}
	}
	if r := rowByPrefix(t, buildRows(rs), "server CPU"); !strings.HasSuffix(r.Ratio, ", 2 rounds)") {
		t.Errorf("server CPU over two rounds: %+v", r)
	}
	if slices.Contains(rs.missing, "floor-chat.json") {
		t.Errorf("missing %v", rs.missing)
	}
}

// TestRoundMissing: with run.json naming three rounds, a round missing on
// both servers is noted, and the later round is still read.
func TestRoundMissing(t *testing.T) {
	dir := copyFixture(t, func(name string, b []byte) ([]string, []byte) {
		if name == "run.json" {
			b = bytes.Replace(b, []byte("{"), []byte(`{"rounds": 3,`), 1)
		}
		if base, ok := strings.CutSuffix(name, ".json"); ok && (strings.HasSuffix(base, "-chat") || strings.HasSuffix(base, "-saturation")) {
			return []string{base + "-1.json", base + "-3.json"}, b
		}
		return []string{name}, b
	})
	rs, err := loadResults(dir)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(rs.rounds[loadChat]); n != 3 || rs.rounds[loadChat][2].chatd == nil || rs.rounds[loadChat][1].chatd != nil {
		t.Fatalf("chat rounds %+v, want three, the second empty", rs.rounds[loadChat])
	}
	for _, want := range []string{"floor-chat-2.json", "chatd-chat-2.json", "floor-saturation-2.json"} {
		if !slices.Contains(rs.missing, want) {
			t.Errorf("missing %v, want %s among them", rs.missing, want)
		}
	}
}

// copyFixture copies the fixture into a new folder, each file under the
// names (and with the content) rename gives it, and returns the folder.
func copyFixture(t *testing.T, rename func(name string, b []byte) ([]string, []byte)) string {
	t.Helper()
	dir := t.TempDir()
	entries, err := os.ReadDir(fixture)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(fixture, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		names, b := rename(e.Name(), b)
		for _, n := range names {
			if err := os.WriteFile(filepath.Join(dir, n), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return dir
}
