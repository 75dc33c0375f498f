// Command report writes the whole-system figures of a run of bench/run.sh
// into docs/benchmarks.md: it reads the JSON results of chatload and of the
// script in a folder, builds the table of the figures of chatd against the
// floor with their budgets, decides from the figures whether each budget is
// met, and replaces the part of the document between the markers
// <!-- bench:begin --> and <!-- bench:end --> with it. A document without
// the markers gets them, under a heading "## Whole system against the
// floor", before its first section. The new part is also printed.
//
// Usage:
//
//	go run ./bench/report -results bench/results/latest -doc docs/benchmarks.md
//
// The folder holds, as bench/run.sh writes them:
//
//   - run.json: the date, the machine and the versions of the run, and
//     the durations of its loads;
//   - <server>-<load>.json, the -json of chatload, for the servers floor
//     and chatd and the loads chat, saturation, idle and (chatd only)
//     login;
//   - <server>-idle-redis-memory.json: Redis's used_memory before the idle
//     sessions were opened and while they were held.
//
// A missing file leaves its figures out ("no data"), which fails their
// budgets.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

// realMain runs the command with args and returns its exit code: 0 when
// the document was written, 2 otherwise.
func realMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("results", "bench/results/latest", "folder of the results of bench/run.sh")
	doc := fs.String("doc", "docs/benchmarks.md", "document whose whole-system section is rewritten")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "report: unexpected arguments %q\n", fs.Args())
		return 2
	}
	if err := writeDoc(*dir, *doc, stdout); err != nil {
		fmt.Fprintln(stderr, "report:", err)
		return 2
	}
	return 0
}

// writeDoc reads the results in dir, rewrites the section of the document
// at path and prints the section to out.
func writeDoc(dir, path string, out io.Writer) error {
	rs, err := loadResults(dir)
	if err != nil {
		return err
	}
	old, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	section := renderSection(rs)
	doc, err := replaceSection(string(old), section)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		return err
	}
	_, err = io.WriteString(out, section)
	return err
}
