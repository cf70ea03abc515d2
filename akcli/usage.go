package akcli

import (
	"context"
	"time"

	"github.com/spf13/cobra"

	"github.com/agentkey-go/agentkey"
)

// usageRow is one budget in the usage report, in the period in force now.
type usageRow struct {
	OwnerKind agentkey.OwnerKind `json:"owner_kind"`
	OwnerID   string             `json:"owner_id"`
	// AccountID is the key's account, or the account's parent.
	AccountID string          `json:"account_id,omitempty"`
	Name      string          `json:"name,omitempty"`
	BudgetID  string          `json:"budget_id"`
	Period    agentkey.Period `json:"period"`
	// Limit and Remaining are null for an unlimited key's meter.
	Limit       *agentkey.Money `json:"limit"`
	Used        agentkey.Money  `json:"used"`
	Held        agentkey.Money  `json:"held"`
	Remaining   *agentkey.Money `json:"remaining"`
	PeriodStart time.Time       `json:"period_start"`
	ResetAt     time.Time       `json:"reset_at,omitzero"`
}

func newUsageRow(b agentkey.Budget, account, name string) usageRow {
	r := usageRow{
		OwnerKind: b.OwnerKind, OwnerID: b.OwnerID, AccountID: account, Name: name,
		BudgetID: b.ID, Period: b.Period, Used: b.Used, Held: b.Held,
		PeriodStart: b.PeriodStart, ResetAt: b.ResetAt,
	}
	if !b.Unlimited {
		limit, remaining := b.Limit, b.Remaining()
		r.Limit, r.Remaining = &limit, &remaining
	}
	return r
}

func (c *cli) usageCommand() *cobra.Command {
	var (
		key, account   string
		includeRevoked bool
		out            format
	)
	cmd := &cobra.Command{
		Use:   "usage [flags]",
		Short: "Show what each key and account used in its current period",
		Long: `Show every budget of every key and account in its current period: the limit,
what is used and held, what remains and when it resets. Keys come first, then
accounts. A key without a limit shows its meter, with an empty limit.`,
		Args: args(),
	}
	fs := flagSet(cmd)
	fs.StringVar(&key, "key", "", "only this key")
	fs.StringVar(&account, "account", "", "only this account and its keys")
	fs.BoolVar(&includeRevoked, "include-revoked", false, "include revoked keys")
	out.register(fs, true)

	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := out.check(); err != nil {
			return err
		}
		return c.withApp(cmd.Context(), func(a *app) error {
			rows, err := usageRows(cmd.Context(), a, key, account, includeRevoked)
			if err != nil {
				return inputError(err)
			}
			return c.printUsage(rows, out)
		})
	}
	return cmd
}

// usageRows collects the budgets of the keys and accounts selected.
func usageRows(ctx context.Context, a *app, keyID, accountID string, includeRevoked bool,
) ([]usageRow, error) {
	rows := []usageRow{}
	if keyID != "" {
		k, err := showKey(ctx, a, keyID)
		if err != nil {
			return nil, err
		}
		for _, b := range k.Budgets {
			rows = append(rows, newUsageRow(b, k.AccountID, k.Name))
		}
		return rows, nil
	}

	const page = 1000
	f := agentkey.KeyFilter{AccountID: accountID, IncludeRevoked: includeRevoked, Limit: page}
	for {
		keys, err := a.svc.Keys(ctx, f)
		if err != nil {
			return nil, err
		}
		for _, k := range keys {
			for _, b := range k.Budgets {
				rows = append(rows, newUsageRow(b, k.AccountID, k.Name))
			}
		}
		if len(keys) < page {
			break
		}
		f.After = keys[len(keys)-1].ID
	}

	if accountID != "" {
		acct, err := a.svc.Account(ctx, accountID)
		if err != nil {
			return nil, err
		}
		for _, b := range acct.Budgets {
			rows = append(rows, newUsageRow(b, acct.ParentID, acct.Name))
		}
		return rows, nil
	}
	after := ""
	for {
		accts, err := a.svc.Accounts(ctx, "", after, page)
		if err != nil {
			return nil, err
		}
		for _, acct := range accts {
			for _, b := range acct.Budgets {
				rows = append(rows, newUsageRow(b, acct.ParentID, acct.Name))
			}
		}
		if len(accts) < page {
			break
		}
		after = accts[len(accts)-1].ID
	}
	return rows, nil
}

func (c *cli) printUsage(rows []usageRow, out format) error {
	if out.json {
		return printJSON(c.stdout, rows)
	}

	header := []string{"OWNER_KIND", "OWNER_ID", "ACCOUNT", "NAME", "BUDGET_ID", "PERIOD", "LIMIT",
		"USED", "HELD", "REMAINING", "PERIOD_START", "RESET_AT"}
	cells := make([][]string, 0, len(rows))
	for _, r := range rows {
		limit, remaining := "", ""
		if r.Limit != nil {
			limit, remaining = r.Limit.String(), r.Remaining.String()
		}
		cells = append(cells, []string{string(r.OwnerKind), r.OwnerID, r.AccountID, r.Name,
			r.BudgetID, string(r.Period), limit, r.Used.String(), r.Held.String(), remaining,
			optionalTime(r.PeriodStart), optionalTime(r.ResetAt)})
	}
	if out.csv {
		return writeCSV(c.stdout, header, cells, 1, 2, 3, 4)
	}

	t := newTable(c.stdout, "OWNER", "ACCOUNT", "NAME", "PERIOD", "LIMIT", "USED", "HELD",
		"REMAINING", "RESETS")
	for _, r := range cells {
		t.row(r[0]+" "+r[1], firstOf(r[2], "-"), firstOf(r[3], "-"), r[5],
			firstOf(r[6], "unlimited"), r[7], r[8], firstOf(r[9], "unlimited"), firstOf(r[11], "-"))
	}
	return t.flush()
}
