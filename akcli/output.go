package akcli

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"

	"github.com/agentkey-go/agentkey"
	"github.com/agentkey-go/agentkey/akserver"
)

// format is how a command prints what it lists: a table for people, JSON or
// CSV for programs.
type format struct {
	json, csv bool
}

// register adds --json (and --csv when withCSV) to fs.
func (f *format) register(fs *pflag.FlagSet, withCSV bool) {
	fs.BoolVar(&f.json, "json", false, "print JSON")
	if withCSV {
		fs.BoolVar(&f.csv, "csv", false, "print CSV")
	}
}

func (f *format) check() error {
	if f.json && f.csv {
		return usagef("--json and --csv exclude each other")
	}
	return nil
}

// printJSON writes v as indented JSON.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// table writes aligned columns.
type table struct {
	tw *tabwriter.Writer
}

func newTable(w io.Writer, header ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
	t.row(header...)
	return t
}

func (t *table) row(cells ...string) {
	fmt.Fprintln(t.tw, strings.Join(cells, "\t"))
}

func (t *table) flush() error { return t.tw.Flush() }

// writeCSV writes a header and rows as CSV. The columns numbered in text
// hold text of the users' (names, ids), which is quoted where a spreadsheet
// would run it as a formula, as the ledger's export does.
func writeCSV(w io.Writer, header []string, rows [][]string, text ...int) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(header); err != nil {
		return err
	}
	for _, row := range rows {
		for _, i := range text {
			row[i] = akserver.SafeCSVCell(row[i])
		}
		if err := cw.Write(row); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// fields prints label: value lines, aligned.
func fields(w io.Writer, pairs ...string) error {
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	for i := 0; i+1 < len(pairs); i += 2 {
		if pairs[i+1] != "" {
			fmt.Fprintf(tw, "%s:\t%s\n", pairs[i], pairs[i+1])
		}
	}
	return tw.Flush()
}

// timeText writes t for a table: RFC 3339 in UTC, or "-" when zero.
func timeText(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// optionalTime is timeText with the empty string for zero, for fields.
func optionalTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return timeText(t)
}

// limitText writes a budget's limit, or "unlimited".
func limitText(b agentkey.Budget) string {
	if b.Unlimited {
		return "unlimited"
	}
	return b.Limit.String()
}

// remainingText writes what a budget has left, or "unlimited".
func remainingText(b agentkey.Budget) string {
	if b.Unlimited {
		return "unlimited"
	}
	return b.Remaining().String()
}

// scopesText writes a key's scopes: "*" for unlimited, "-" for none.
func scopesText(scopes []string) string {
	switch {
	case scopes == nil:
		return "*"
	case len(scopes) == 0:
		return "-"
	}
	return strings.Join(scopes, ",")
}

// budgetSummary writes a key's or account's budgets on one line:
// "2.5/10 day, 40/200 month" (used/limit period).
func budgetSummary(bs []agentkey.Budget) string {
	var parts []string
	for _, b := range bs {
		parts = append(parts, fmt.Sprintf("%s/%s %s", b.Used, limitText(b), b.Period))
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ", ")
}

// printBudgets writes budgets as a table.
func printBudgets(w io.Writer, bs []agentkey.Budget) error {
	t := newTable(w, "BUDGET", "OWNER", "PERIOD", "LIMIT", "USED", "HELD", "REMAINING", "RESETS")
	for _, b := range bs {
		t.row(b.ID, string(b.OwnerKind)+" "+b.OwnerID, string(b.Period), limitText(b),
			b.Used.String(), b.Held.String(), remainingText(b), timeText(b.ResetAt))
	}
	return t.flush()
}

// pageHint tells on stderr how to get the next page when a page is full.
func pageHint(w io.Writer, n, limit int, next string) {
	if n == limit && next != "" {
		fmt.Fprintf(w, "(more: add --after %s)\n", next)
	}
}
