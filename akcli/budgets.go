package akcli

import (
	"fmt"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/agentkey-go/agentkey"
)

func (c *cli) budgetsCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "budgets",
		Short: "Set, show, remove and adjust the budgets of keys and accounts",
		Long: `A key or an account carries at most one budget per period: for example $10 a
day and $200 a month. Amounts are decimal strings ("12.50").`,
	}
	group(cmd)
	cmd.AddCommand(c.budgetsSetCommand(), c.budgetsShowCommand(), c.budgetsRemoveCommand(),
		c.budgetsAdjustCommand())
	return cmd
}

// ownerFlags are --key and --account, which name the node of a budget.
type ownerFlags struct {
	key, account string
}

func (o *ownerFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&o.key, "key", "", "the key or subject id whose budgets to use")
	fs.StringVar(&o.account, "account", "", "the account whose budgets to use")
}

func (o *ownerFlags) owner() (agentkey.Owner, error) {
	switch {
	case (o.key == "") == (o.account == ""):
		return agentkey.Owner{}, usagef("give exactly one of --key and --account")
	case o.key != "":
		return agentkey.KeyOwner(o.key), nil
	}
	return agentkey.AccountOwner(o.account), nil
}

func (c *cli) budgetsSetCommand() *cobra.Command {
	var (
		owner          ownerFlags
		limit          agentkey.Money
		limitSet       bool
		period, anchor string
		out            format
	)
	cmd := &cobra.Command{
		Use:   "set (--key ID | --account ID) --limit AMOUNT [--period PERIOD] [flags]",
		Short: "Put a budget on a key or an account, or replace the limit of its budget of that period",
		Long: `Put a budget on a key or an account. If the node already has a budget with
that period, its limit is replaced and what it used and holds in the current
period is kept.`,
		Example: `  agentkey budgets set --key key_0641... --limit 50 --period month
  agentkey budgets set --account org_acme --limit 1000 --period month --anchor 2025-01-15`,
		Args: args(),
	}
	fs := flagSet(cmd)
	owner.register(fs)
	fs.Var(moneyValue{&limit, &limitSet}, "limit", "most that may be used in one period (required)")
	fs.StringVar(&period, "period", "none", "none (a lifetime cap), day, week or month")
	fs.StringVar(&anchor, "anchor", "", "day a monthly budget resets on, as a date or RFC 3339 time "+
		"(default: now)")
	out.register(fs, false)

	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		o, err := owner.owner()
		if err != nil {
			return err
		}
		if !limitSet {
			return usagef("--limit is required")
		}
		if limit < 0 {
			return usagef("--limit %s: must not be negative", limit)
		}
		spec := agentkey.BudgetSpec{Limit: limit}
		if spec.Period, err = parsePeriod(period); err != nil {
			return err
		}
		if spec.Anchor, err = parseTime("anchor", anchor); err != nil {
			return err
		}
		return c.withApp(cmd.Context(), func(a *app) error {
			b, err := a.svc.SetBudget(cmd.Context(), o, spec)
			if err != nil {
				return inputError(err)
			}
			if out.json {
				return printJSON(c.stdout, b)
			}
			return printBudgets(c.stdout, []agentkey.Budget{b})
		})
	}
	return cmd
}

func (c *cli) budgetsShowCommand() *cobra.Command {
	var (
		owner ownerFlags
		out   format
	)
	cmd := &cobra.Command{
		Use:   "show (--key ID | --account ID)",
		Short: "Show a key's or an account's budgets in the current period",
		Args:  args(),
	}
	fs := flagSet(cmd)
	owner.register(fs)
	out.register(fs, false)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		o, err := owner.owner()
		if err != nil {
			return err
		}
		return c.withApp(cmd.Context(), func(a *app) error {
			bs, err := a.svc.Budgets(cmd.Context(), o)
			if err != nil {
				return inputError(err)
			}
			if out.json {
				return printJSON(c.stdout, bs)
			}
			return printBudgets(c.stdout, bs)
		})
	}
	return cmd
}

func (c *cli) budgetsRemoveCommand() *cobra.Command {
	var (
		owner  ownerFlags
		period string
	)
	cmd := &cobra.Command{
		Use:   "remove (--key ID | --account ID) --period PERIOD",
		Short: "Remove a key's or an account's budget of a period",
		Long: `Remove a key's or an account's budget of a period. A key left without a
budget is unlimited, and its usage is still metered.`,
		Args: args(),
	}
	fs := flagSet(cmd)
	owner.register(fs)
	fs.StringVar(&period, "period", "", "period of the budget to remove: none, day, week or month "+
		"(required)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		o, err := owner.owner()
		if err != nil {
			return err
		}
		if period == "" {
			return usagef("--period is required")
		}
		p, err := parsePeriod(period)
		if err != nil {
			return err
		}
		return c.withApp(cmd.Context(), func(a *app) error {
			if err := a.svc.RemoveBudget(cmd.Context(), o, p); err != nil {
				return inputError(err)
			}
			_, err := fmt.Fprintf(c.stdout, "removed the %s budget of %s %s\n", p, o.Kind, o.ID)
			return err
		})
	}
	return cmd
}

func (c *cli) budgetsAdjustCommand() *cobra.Command {
	var (
		amount    agentkey.Money
		amountSet bool
		reason    string
		out       format
	)
	cmd := &cobra.Command{
		Use:   "adjust BUDGET_ID --amount AMOUNT --reason TEXT",
		Short: "Debit (positive) or credit (negative) a budget by hand, with a reason",
		Long: `Debit (a positive amount) or credit (a negative amount) a budget's used
amount in its current period. The adjustment is a ledger entry that keeps the
reason. A debit must fit the limit; a credit cannot exceed what is used.`,
		Example: `  agentkey budgets adjust bud_0641... --amount -5 --reason "refund for ticket 42"`,
		Args:    args("budget_id"),
	}
	fs := flagSet(cmd)
	fs.Var(moneyValue{&amount, &amountSet}, "amount", "signed amount: positive debits, negative "+
		"credits (required)")
	fs.StringVar(&reason, "reason", "", "why, kept in the ledger (required)")
	out.register(fs, false)
	cmd.RunE = func(cmd *cobra.Command, argv []string) error {
		switch {
		case !amountSet:
			return usagef("--amount is required")
		case amount == 0:
			return usagef("--amount must not be zero")
		case reason == "":
			return usagef("--reason is required")
		}
		return c.withApp(cmd.Context(), func(a *app) error {
			b, err := a.svc.Adjust(cmd.Context(), argv[0], amount, reason)
			if err != nil {
				return inputError(err)
			}
			if out.json {
				return printJSON(c.stdout, b)
			}
			return printBudgets(c.stdout, []agentkey.Budget{b})
		})
	}
	return cmd
}
