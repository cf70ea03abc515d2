package akcli

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/agentkey-go/agentkey"
)

func (c *cli) accountsCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "accounts",
		Short: "Create, list, show and move the accounts of the budget tree",
		Long: `Accounts are the nodes of the budget tree: an organisation, its teams, a
customer. Every charge must fit the budgets of the key and of each account from
its own up to the root.`,
	}
	group(cmd)
	cmd.AddCommand(c.accountsCreateCommand(), c.accountsListCommand(), c.accountsShowCommand(),
		c.accountsMoveCommand())
	return cmd
}

func (c *cli) accountsCreateCommand() *cobra.Command {
	var (
		p   agentkey.AccountParams
		out format
	)
	cmd := &cobra.Command{
		Use:   "create [ACCOUNT_ID] [flags]",
		Short: "Create an account, under a parent if given",
		Example: `  agentkey accounts create org_acme --budget 1000/month
  agentkey accounts create team_search --parent org_acme --budget 200/month --name Search`,
		Args: func(cmd *cobra.Command, argv []string) error {
			if len(argv) > 1 {
				return usagef("%s: unexpected argument %q", cmd.CommandPath(), argv[1])
			}
			return nil
		},
	}
	fs := flagSet(cmd)
	fs.StringVar(&p.ParentID, "parent", "", "the account above this one (default: a root)")
	fs.StringVar(&p.Name, "name", "", "label for people")
	budgets := budgetFlags(fs, "account")
	out.register(fs, false)

	cmd.RunE = func(cmd *cobra.Command, argv []string) error {
		if len(argv) == 1 {
			p.ID = argv[0]
		}
		var err error
		if p.Budgets, err = budgets(); err != nil {
			return err
		}
		return c.withApp(cmd.Context(), func(a *app) error {
			acct, err := a.svc.CreateAccount(cmd.Context(), p)
			if err != nil {
				return inputError(err)
			}
			if out.json {
				return printJSON(c.stdout, acct)
			}
			return printAccount(c.stdout, acct)
		})
	}
	return cmd
}

func (c *cli) accountsListCommand() *cobra.Command {
	var (
		parent, after string
		limit         int
		out           format
	)
	cmd := &cobra.Command{
		Use:   "list [flags]",
		Short: "List accounts in id order",
		Args:  args(),
	}
	fs := flagSet(cmd)
	fs.StringVar(&parent, "parent", "", "only the children of this account")
	fs.StringVar(&after, "after", "", "start after this account id (the next page)")
	fs.IntVar(&limit, "limit", 100, "most accounts to list, up to 1000")
	out.register(fs, false)

	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if limit < 1 || limit > 1000 {
			return usagef("--limit %d: want 1 to 1000", limit)
		}
		return c.withApp(cmd.Context(), func(a *app) error {
			accts, err := a.svc.Accounts(cmd.Context(), parent, after, limit)
			if err != nil {
				return inputError(err)
			}
			if out.json {
				return printJSON(c.stdout, accts)
			}
			t := newTable(c.stdout, "ID", "PARENT", "NAME", "BUDGETS (USED/LIMIT)")
			for _, acct := range accts {
				t.row(acct.ID, firstOf(acct.ParentID, "-"), firstOf(acct.Name, "-"),
					budgetSummary(acct.Budgets))
			}
			if err := t.flush(); err != nil {
				return err
			}
			if len(accts) > 0 {
				pageHint(c.stderr, len(accts), limit, accts[len(accts)-1].ID)
			}
			return nil
		})
	}
	return cmd
}

func (c *cli) accountsShowCommand() *cobra.Command {
	var out format
	cmd := &cobra.Command{
		Use:   "show ACCOUNT_ID",
		Short: "Show an account and its budgets",
		Args:  args("account_id"),
	}
	out.register(flagSet(cmd), false)
	cmd.RunE = func(cmd *cobra.Command, argv []string) error {
		return c.withApp(cmd.Context(), func(a *app) error {
			acct, err := a.svc.Account(cmd.Context(), argv[0])
			if err != nil {
				return inputError(err)
			}
			if out.json {
				return printJSON(c.stdout, acct)
			}
			return printAccount(c.stdout, acct)
		})
	}
	return cmd
}

func (c *cli) accountsMoveCommand() *cobra.Command {
	var (
		parent string
		root   bool
		out    format
	)
	cmd := &cobra.Command{
		Use:   "move ACCOUNT_ID (--parent ID | --root)",
		Short: "Put an account under another, or make it a root",
		Long: `Put an account under another, or make it a root. A move that would make a
cycle or a tree deeper than 8 levels is refused. Open holds stay on the budgets
they were made against.`,
		Args: args("account_id"),
	}
	fs := flagSet(cmd)
	fs.StringVar(&parent, "parent", "", "the account's new parent")
	fs.BoolVar(&root, "root", false, "make the account a root")
	out.register(fs, false)
	cmd.RunE = func(cmd *cobra.Command, argv []string) error {
		if (parent == "") == !root {
			return usagef("give exactly one of --parent and --root")
		}
		return c.withApp(cmd.Context(), func(a *app) error {
			acct, err := a.svc.MoveAccount(cmd.Context(), argv[0], parent)
			if err != nil {
				return inputError(err)
			}
			if out.json {
				return printJSON(c.stdout, acct)
			}
			if acct.ParentID == "" {
				_, err = fmt.Fprintf(c.stdout, "%s is now a root\n", acct.ID)
			} else {
				_, err = fmt.Fprintf(c.stdout, "moved %s under %s\n", acct.ID, acct.ParentID)
			}
			return err
		})
	}
	return cmd
}

// printAccount writes an account's fields and budgets.
func printAccount(w io.Writer, a agentkey.Account) error {
	err := fields(w,
		"id", a.ID,
		"parent", a.ParentID,
		"name", a.Name,
		"created", optionalTime(a.CreatedAt),
	)
	if err != nil {
		return err
	}
	if len(a.Budgets) == 0 {
		_, err = fmt.Fprintln(w, "no budgets")
		return err
	}
	fmt.Fprintln(w)
	return printBudgets(w, a.Budgets)
}
