package akcli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/agentkey-go/agentkey"
	"github.com/agentkey-go/agentkey/akserver"
)

func (c *cli) ledgerCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ledger",
		Short: "List ledger entries and audit budgets against the ledger",
	}
	group(cmd)
	cmd.AddCommand(c.ledgerListCommand(), c.ledgerAuditCommand())
	return cmd
}

func (c *cli) ledgerListCommand() *cobra.Command {
	var (
		f            agentkey.LedgerFilter
		subject      string
		since, until string
		kinds        string
		all          bool
		out          format
	)
	cmd := &cobra.Command{
		Use:   "list [flags]",
		Short: "List ledger entries, oldest first",
		Long: `List ledger entries, oldest first: charges, holds, releases, settlements,
overruns, period resets and adjustments, and the changes of accounts and
budgets (--kind money leaves those out). With --all, every page is listed;
with --csv, the output suits a spreadsheet.`,
		Example: `  agentkey ledger list --key key_0641... --since 2025-01-01
  agentkey ledger list --account acct_1 --all --csv > ledger.csv`,
		Args: args(),
	}
	fs := flagSet(cmd)
	fs.StringVar(&f.KeyID, "key", "", "only entries of this key or subject id")
	fs.StringVar(&subject, "subject", "",
		"only entries of this external subject (such as a Clerk user_ id)")
	fs.StringVar(&f.AccountID, "account", "", "only entries of this account")
	fs.StringVar(&f.BudgetID, "budget", "", "only entries of this budget")
	fs.StringVar(&kinds, "kind", "",
		`only entries of these kinds, comma-separated (charge, settle, ...), or "money"`)
	fs.StringVar(&since, "since", "", "only entries at or after this time (RFC 3339 or a date)")
	fs.StringVar(&until, "until", "", "only entries before this time (RFC 3339 or a date)")
	fs.Int64Var(&f.AfterID, "after", 0, "start after this entry id (the next page)")
	fs.IntVar(&f.Limit, "limit", 100, "most entries to list, up to 10000")
	fs.BoolVar(&all, "all", false, "list every page")
	out.register(fs, true)

	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := out.check(); err != nil {
			return err
		}
		if f.Limit < 1 || f.Limit > 10_000 {
			return usagef("--limit %d: want 1 to 10000", f.Limit)
		}
		if f.KeyID != "" && subject != "" {
			return usagef("give at most one of --key and --subject")
		}
		var err error
		if f.Kinds, err = agentkey.ParseEntryKinds(kinds); err != nil {
			return usagef("--kind: %v", err)
		}
		if f.Since, err = parseTime("since", since); err != nil {
			return err
		}
		if f.Until, err = parseTime("until", until); err != nil {
			return err
		}
		return c.withApp(cmd.Context(), func(a *app) error {
			if subject != "" {
				k, err := a.store.Key(cmd.Context(), agentkey.KeyQuery{Subject: subject})
				if err != nil {
					return fmt.Errorf("subject %s: %w", subject, err)
				}
				f.KeyID = k.ID
			}
			return c.listLedger(cmd.Context(), a, f, all, out)
		})
	}
	return cmd
}

// listLedger prints the entries f selects, page after page with all.
func (c *cli) listLedger(ctx context.Context, a *app, f agentkey.LedgerFilter, all bool,
	out format,
) error {
	p := newEntryPrinter(c.stdout, out)
	for {
		entries, err := a.svc.Ledger(ctx, f)
		if err != nil {
			return inputError(err)
		}
		for _, e := range entries {
			if err := p.print(e); err != nil {
				return err
			}
		}
		if err := p.flush(); err != nil {
			return err
		}
		if len(entries) < f.Limit || !all {
			if err := p.close(); err != nil {
				return err
			}
			if len(entries) > 0 && !all {
				pageHint(c.stderr, len(entries), f.Limit,
					strconv.FormatInt(entries[len(entries)-1].ID, 10))
			}
			return nil
		}
		f.AfterID = entries[len(entries)-1].ID
	}
}

// entryPrinter writes entries as a table, JSON (one array) or CSV, as they
// come, so that --all does not keep the whole ledger in memory (a table is
// aligned per page). The CSV is the admin API's export, byte for byte.
type entryPrinter struct {
	w     io.Writer
	out   format
	table *table
	csv   *akserver.LedgerCSV
	n     int
}

func newEntryPrinter(w io.Writer, out format) *entryPrinter {
	p := &entryPrinter{w: w, out: out}
	if out.csv {
		p.csv = akserver.NewLedgerCSV(w)
	}
	return p
}

func (p *entryPrinter) print(e agentkey.Entry) error {
	defer func() { p.n++ }()
	switch {
	case p.out.json:
		sep := ",\n"
		if p.n == 0 {
			sep = "[\n"
		}
		b, err := json.Marshal(e)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(p.w, "%s  %s", sep, b)
		return err
	case p.csv != nil:
		return p.csv.Write(e)
	}
	if p.table == nil {
		p.table = newTable(p.w, "ID", "TIME", "KIND", "AMOUNT", "BUDGET", "KEY", "ACCOUNT", "HOLD",
			"METADATA")
	}
	p.table.row(strconv.FormatInt(e.ID, 10), timeText(e.CreatedAt), string(e.Kind),
		e.Amount.String(), e.BudgetID, firstOf(e.KeyID, "-"), firstOf(e.AccountID, "-"),
		firstOf(e.HoldID, "-"), firstOf(metadataText(e.Metadata), "-"))
	return nil
}

// flush writes what is buffered, at the end of a page.
func (p *entryPrinter) flush() error {
	if p.csv != nil {
		return p.csv.Flush()
	}
	return nil
}

func (p *entryPrinter) close() error {
	switch {
	case p.out.json:
		if p.n == 0 {
			_, err := fmt.Fprintln(p.w, "[]")
			return err
		}
		_, err := fmt.Fprintln(p.w, "\n]")
		return err
	case p.csv != nil:
		return p.csv.Flush()
	case p.table != nil:
		return p.table.flush()
	}
	return nil
}

// metadataText writes metadata as compact JSON, or "" when there is none.
func metadataText(md map[string]string) string {
	if len(md) == 0 {
		return ""
	}
	b, _ := json.Marshal(md) // a map of strings always marshals
	return string(b)
}

func (c *cli) ledgerAuditCommand() *cobra.Command {
	var out format
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Check every budget's running totals against the ledger; exit 3 on drift",
		Long: `Recompute every budget's used amount in its current period, and its held
amount, from the ledger, and compare them with the running totals. The ledger
is the truth. Exits 0 when all match and 3 when a budget drifted.`,
		Args: args(),
	}
	out.register(flagSet(cmd), false)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		return c.withApp(cmd.Context(), func(a *app) error {
			report, err := a.svc.Audit(cmd.Context())
			if err != nil {
				return err
			}
			if out.json {
				err = printJSON(c.stdout, report)
			} else {
				err = printAudit(c.stdout, report)
			}
			if err != nil {
				return err
			}
			if !report.Clean() {
				fmt.Fprintf(c.stderr, "agentkey: %d of %d budgets drifted from the ledger\n",
					len(report.Drifts), report.Budgets)
				return errDrift
			}
			return nil
		})
	}
	return cmd
}

func printAudit(w io.Writer, r agentkey.AuditReport) error {
	if r.Clean() {
		_, err := fmt.Fprintf(w, "audit clean: %d budgets match the ledger\n", r.Budgets)
		return err
	}
	t := newTable(w, "BUDGET", "OWNER", "PERIOD", "USED", "LEDGER_USED", "HELD", "LEDGER_HELD")
	for _, d := range r.Drifts {
		b := d.Budget
		t.row(b.ID, string(b.OwnerKind)+" "+b.OwnerID, string(b.Period), b.Used.String(),
			d.LedgerUsed.String(), b.Held.String(), d.LedgerHeld.String())
	}
	return t.flush()
}
