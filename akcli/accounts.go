package akcli

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/agentkey-go/agentkey"
	"github.com/agentkey-go/agentkey/akserver"
)

func (c *cli) accountsCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "accounts",
		Short: "Create, list, show, draw and move the accounts of the budget tree",
		Long: `Accounts are the nodes of the budget tree: an organisation, its teams, a
customer. Every charge must fit the budgets of the key and of each account from
its own up to the root.`,
	}
	group(cmd)
	cmd.AddCommand(c.accountsCreateCommand(), c.accountsListCommand(), c.accountsShowCommand(),
		c.accountsTreeCommand(), c.accountsMoveCommand())
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

func (c *cli) accountsTreeCommand() *cobra.Command {
	var out format
	cmd := &cobra.Command{
		Use:   "tree [ACCOUNT_ID]",
		Short: "Draw an account's path and subtree, or every tree",
		Long: `Draw the budget tree: with an account id, the accounts above it (its path
to the root) and every account under it; without one, every root with its
subtree. Each line shows an account's budgets as used/limit period. At most
10000 accounts are drawn.`,
		Example: `  agentkey accounts tree
  agentkey accounts tree team_search --json`,
		Args: func(cmd *cobra.Command, argv []string) error {
			if len(argv) > 1 {
				return usagef("%s: unexpected argument %q", cmd.CommandPath(), argv[1])
			}
			return nil
		},
	}
	out.register(flagSet(cmd), false)
	cmd.RunE = func(cmd *cobra.Command, argv []string) error {
		return c.withApp(cmd.Context(), func(a *app) error {
			if len(argv) == 0 {
				forest, truncated, err := akserver.ReadAccountForest(cmd.Context(), a.svc)
				if err != nil {
					return err
				}
				if out.json {
					return printJSON(c.stdout, forest)
				}
				return c.printForest(forest, truncated)
			}
			tree, err := akserver.ReadAccountTree(cmd.Context(), a.svc, argv[0])
			if err != nil {
				return inputError(err)
			}
			if out.json {
				return printJSON(c.stdout, tree)
			}
			return c.printTree(tree)
		})
	}
	return cmd
}

// printTree draws an account's path above it and its subtree below it,
// the account itself marked with an asterisk.
func (c *cli) printTree(t akserver.AccountTree) error {
	for depth, a := range t.Path {
		if _, err := fmt.Fprintln(c.stdout, treeLine(depth, a, false)); err != nil {
			return err
		}
	}
	self := []akserver.AccountNode{t.Account}
	if err := drawNodes(c.stdout, len(t.Path), self, t.Account.ID); err != nil {
		return err
	}
	if t.Truncated {
		fmt.Fprintf(c.stderr, "(truncated: only %d accounts are drawn)\n", akserver.MaxTreeAccounts)
	}
	return nil
}

// printForest draws every tree.
func (c *cli) printForest(roots []akserver.AccountNode, truncated bool) error {
	if len(roots) == 0 {
		_, err := fmt.Fprintln(c.stdout, "no accounts")
		return err
	}
	if err := drawNodes(c.stdout, 0, roots, ""); err != nil {
		return err
	}
	if truncated {
		fmt.Fprintf(c.stderr, "(truncated: only %d accounts are drawn)\n", akserver.MaxTreeAccounts)
	}
	return nil
}

// drawNodes writes nodes and their subtrees, indented by depth.
func drawNodes(w io.Writer, depth int, nodes []akserver.AccountNode, mark string) error {
	for _, n := range nodes {
		if _, err := fmt.Fprintln(w, treeLine(depth, n.Account, n.ID == mark)); err != nil {
			return err
		}
		if err := drawNodes(w, depth+1, n.Children, mark); err != nil {
			return err
		}
	}
	return nil
}

// treeLine is an account's line in a tree: "  team_ml (ML)  5/50 day".
func treeLine(depth int, a agentkey.Account, marked bool) string {
	line := strings.Repeat("  ", depth) + a.ID
	if marked {
		line += " *"
	}
	if a.Name != "" {
		line += " (" + a.Name + ")"
	}
	return line + "  " + budgetSummary(a.Budgets)
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
