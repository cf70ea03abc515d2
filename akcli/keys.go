package akcli

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/agentkey-go/agentkey"
)

func (c *cli) keysCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Create, list, show, revoke and move API keys",
	}
	group(cmd)
	cmd.AddCommand(c.keysCreateCommand(), c.keysListCommand(), c.keysShowCommand(),
		c.keysRevokeCommand(), c.keysMoveCommand())
	return cmd
}

func (c *cli) keysCreateCommand() *cobra.Command {
	var (
		p       agentkey.CreateKeyParams
		scopes  []string
		expires time.Duration
		quiet   bool
		out     format
	)
	cmd := &cobra.Command{
		Use:   "create --account ID [flags]",
		Short: "Mint a key and print its secret, once",
		Long: `Mint a key and print its secret. The secret is shown this once: only its
SHA-256 hash is stored.`,
		Example: `  agentkey keys create --account acct_1 --budget 50 --period month --scopes proxy.chat --expires 7d
  agentkey keys create --account acct_1 --budget 10/day --budget 200/month -q`,
		Args: args(),
	}
	fs := flagSet(cmd)
	fs.StringVar(&p.AccountID, "account", "", "account that owns the key (required)")
	fs.StringVar(&p.Name, "name", "", "label for people")
	fs.StringVar(&p.UserID, "user", "", "user the key belongs to")
	fs.StringVar(&p.DelegatedBy, "delegated-by", "", "who authorised the key, for an agent's key")
	fs.StringSliceVar(&scopes, "scopes", nil, "comma-separated scopes (default: unlimited)")
	budgets := budgetFlags(fs, "key")
	fs.Var(durationValue{d: &expires}, "expires", "expire after this long, such as 30m, 7d or 1mo "+
		"(default: never)")
	fs.BoolVarP(&quiet, "quiet", "q", false, "print only the secret")
	out.register(fs, false)

	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if p.AccountID == "" {
			return usagef("--account is required")
		}
		var err error
		if p.Budgets, err = budgets(); err != nil {
			return err
		}
		if fs.Changed("scopes") {
			p.Scopes = append([]string{}, scopes...) // given but empty: no scope at all
		}
		p.ExpiresIn = expires

		return c.withApp(cmd.Context(), func(a *app) error {
			ck, err := a.svc.CreateKey(cmd.Context(), p)
			if err != nil {
				return inputError(err)
			}
			switch {
			case quiet:
				_, err = fmt.Fprintln(c.stdout, ck.Secret)
				return err
			case out.json:
				return printJSON(c.stdout, ck)
			}
			if err := printKey(c.stdout, ck.Key, "secret", ck.Secret); err != nil {
				return err
			}
			_, err = fmt.Fprintln(c.stderr, "The secret is shown this once; only its hash is stored.")
			return err
		})
	}
	return cmd
}

func (c *cli) keysListCommand() *cobra.Command {
	var (
		f   agentkey.KeyFilter
		out format
	)
	cmd := &cobra.Command{
		Use:   "list [flags]",
		Short: "List keys and subjects in id order",
		Args:  args(),
	}
	fs := flagSet(cmd)
	fs.StringVar(&f.AccountID, "account", "", "only the keys of this account")
	fs.StringVar(&f.Kind, "kind", "", "only own keys (key) or external subjects (subject)")
	fs.BoolVar(&f.IncludeRevoked, "include-revoked", false, "list revoked keys too")
	fs.StringVar(&f.After, "after", "", "start after this key id (the next page)")
	fs.IntVar(&f.Limit, "limit", 100, "most keys to list, up to 1000")
	out.register(fs, false)

	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if f.Kind != "" && f.Kind != "key" && f.Kind != "subject" {
			return usagef("--kind %q: want key or subject", f.Kind)
		}
		if f.Limit < 1 || f.Limit > 1000 {
			return usagef("--limit %d: want 1 to 1000", f.Limit)
		}
		return c.withApp(cmd.Context(), func(a *app) error {
			keys, err := a.svc.Keys(cmd.Context(), f)
			if err != nil {
				return inputError(err)
			}
			if out.json {
				return printJSON(c.stdout, keys)
			}
			t := newTable(c.stdout, "ID", "PREFIX/SUBJECT", "ACCOUNT", "NAME", "SCOPES", "STATUS",
				"BUDGETS (USED/LIMIT)")
			now := time.Now()
			for _, k := range keys {
				t.row(k.ID, firstOf(k.Prefix, k.Subject), k.AccountID, firstOf(k.Name, "-"),
					scopesText(k.Scopes), keyStatus(k, now), budgetSummary(k.Budgets))
			}
			if err := t.flush(); err != nil {
				return err
			}
			if len(keys) > 0 {
				pageHint(c.stderr, len(keys), f.Limit, keys[len(keys)-1].ID)
			}
			return nil
		})
	}
	return cmd
}

func (c *cli) keysShowCommand() *cobra.Command {
	var out format
	cmd := &cobra.Command{
		Use:   "show KEY_ID",
		Short: "Show a key: its owner, scopes, expiry and budgets",
		Args:  args("key_id"),
	}
	out.register(flagSet(cmd), false)
	cmd.RunE = func(cmd *cobra.Command, argv []string) error {
		return c.withApp(cmd.Context(), func(a *app) error {
			k, err := showKey(cmd.Context(), a, argv[0])
			if err != nil {
				return err
			}
			if out.json {
				return printJSON(c.stdout, k)
			}
			return printKey(c.stdout, k)
		})
	}
	return cmd
}

// showKey returns a key with its own budgets in the period in force now.
// It reads the store rather than validating the key, so that looking at a
// key does not count as using it.
func showKey(ctx context.Context, a *app, id string) (agentkey.Key, error) {
	k, err := a.store.Key(ctx, agentkey.KeyQuery{ID: id})
	if err != nil {
		return agentkey.Key{}, fmt.Errorf("show %s: %w", id, err)
	}
	if k.Budgets, err = a.svc.Budgets(ctx, agentkey.KeyOwner(id)); err != nil {
		return agentkey.Key{}, err
	}
	return k, nil
}

func (c *cli) keysRevokeCommand() *cobra.Command {
	var out format
	cmd := &cobra.Command{
		Use:   "revoke KEY_ID",
		Short: "Revoke a key; revoking a revoked key changes nothing",
		Args:  args("key_id"),
	}
	out.register(flagSet(cmd), false)
	cmd.RunE = func(cmd *cobra.Command, argv []string) error {
		return c.withApp(cmd.Context(), func(a *app) error {
			k, err := a.svc.Revoke(cmd.Context(), argv[0], "")
			if err != nil {
				return inputError(err)
			}
			if out.json {
				return printJSON(c.stdout, k)
			}
			_, err = fmt.Fprintf(c.stdout, "revoked %s at %s\n", k.ID, timeText(k.RevokedAt))
			return err
		})
	}
	return cmd
}

func (c *cli) keysMoveCommand() *cobra.Command {
	var (
		account string
		out     format
	)
	cmd := &cobra.Command{
		Use:   "move KEY_ID --account ID",
		Short: "Move a key to another account; its open holds stay where they are",
		Args:  args("key_id"),
	}
	fs := flagSet(cmd)
	fs.StringVar(&account, "account", "", "the key's new account (required)")
	out.register(fs, false)
	cmd.RunE = func(cmd *cobra.Command, argv []string) error {
		if account == "" {
			return usagef("--account is required")
		}
		return c.withApp(cmd.Context(), func(a *app) error {
			k, err := a.svc.MoveKey(cmd.Context(), argv[0], account)
			if err != nil {
				return inputError(err)
			}
			if out.json {
				return printJSON(c.stdout, k)
			}
			_, err = fmt.Fprintf(c.stdout, "moved %s to account %s\n", k.ID, k.AccountID)
			return err
		})
	}
	return cmd
}

// printKey writes a key's fields, after the pairs of first, and its budgets.
func printKey(w io.Writer, k agentkey.Key, first ...string) error {
	err := fields(w, append(first,
		"id", k.ID,
		"prefix", k.Prefix,
		"subject", k.Subject,
		"account", k.AccountID,
		"user", k.UserID,
		"delegated by", k.DelegatedBy,
		"name", k.Name,
		"scopes", scopesText(k.Scopes),
		"status", keyStatus(k, time.Now()),
		"expires", optionalTime(k.ExpiresAt),
		"revoked", optionalTime(k.RevokedAt),
		"created", optionalTime(k.CreatedAt),
		"last used", optionalTime(k.LastUsedAt),
	)...)
	if err != nil {
		return err
	}
	fmt.Fprintln(w)
	return printBudgets(w, k.Budgets)
}

// keyStatus says whether a key can be used: active, expired or revoked.
func keyStatus(k agentkey.Key, now time.Time) string {
	switch {
	case k.Revoked():
		return "revoked"
	case k.Expired(now):
		return "expired"
	}
	return "active"
}

// firstOf returns the first of its arguments that is not empty.
func firstOf(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
