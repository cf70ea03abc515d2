package akcli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/agentkey-go/agentkey"
)

func (c *cli) holdsCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "holds",
		Short: "List, show and release holds",
		Long: `A hold sets an estimate aside before the work, on every budget of the key's
path; it is settled at the real cost or released after. Unsettled holds are
released when they expire.`,
	}
	group(cmd)
	cmd.AddCommand(c.holdsListCommand(), c.holdsShowCommand(), c.holdsReleaseCommand())
	return cmd
}

func (c *cli) holdsListCommand() *cobra.Command {
	var (
		f     agentkey.HoldFilter
		state string
		out   format
	)
	cmd := &cobra.Command{
		Use:   "list [flags]",
		Short: "List holds in id order",
		Args:  args(),
	}
	fs := flagSet(cmd)
	fs.StringVar(&f.KeyID, "key", "", "only holds of this key")
	fs.StringVar(&f.AccountID, "account", "", "only holds of this account")
	fs.StringVar(&state, "state", "", "only holds in this state: open, settled, released or expired")
	fs.StringVar(&f.After, "after", "", "start after this hold id (the next page)")
	fs.IntVar(&f.Limit, "limit", 100, "most holds to list, up to 1000")
	out.register(fs, false)

	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		switch s := agentkey.HoldState(state); s {
		case "", agentkey.HoldOpen, agentkey.HoldSettled, agentkey.HoldReleased, agentkey.HoldExpired:
			f.State = s
		default:
			return usagef("--state %q: want open, settled, released or expired", state)
		}
		if f.Limit < 1 || f.Limit > 1000 {
			return usagef("--limit %d: want 1 to 1000", f.Limit)
		}
		return c.withApp(cmd.Context(), func(a *app) error {
			hs, err := a.svc.Holds(cmd.Context(), f)
			if err != nil {
				return inputError(err)
			}
			if out.json {
				return printJSON(c.stdout, hs)
			}
			t := newTable(c.stdout, "ID", "KEY", "ACCOUNT", "AMOUNT", "STATE", "EXPIRES", "CHARGED",
				"OVERRUN")
			for _, h := range hs {
				t.row(h.ID, h.KeyID, firstOf(h.AccountID, "-"), h.Amount.String(), string(h.State),
					timeText(h.ExpiresAt), h.Charged.String(), h.Overrun.String())
			}
			if err := t.flush(); err != nil {
				return err
			}
			if len(hs) > 0 {
				pageHint(c.stderr, len(hs), f.Limit, hs[len(hs)-1].ID)
			}
			return nil
		})
	}
	return cmd
}

func (c *cli) holdsShowCommand() *cobra.Command {
	var out format
	cmd := &cobra.Command{
		Use:   "show HOLD_ID",
		Short: "Show a hold",
		Args:  args("hold_id"),
	}
	out.register(flagSet(cmd), false)
	cmd.RunE = func(cmd *cobra.Command, argv []string) error {
		return c.withApp(cmd.Context(), func(a *app) error {
			h, err := a.svc.Hold(cmd.Context(), argv[0])
			if err != nil {
				return inputError(err)
			}
			if out.json {
				return printJSON(c.stdout, h)
			}
			return printHold(c, h)
		})
	}
	return cmd
}

func (c *cli) holdsReleaseCommand() *cobra.Command {
	var out format
	cmd := &cobra.Command{
		Use:   "release HOLD_ID",
		Short: "Give a hold's whole amount back; releasing a released hold changes nothing",
		Args:  args("hold_id"),
	}
	out.register(flagSet(cmd), false)
	cmd.RunE = func(cmd *cobra.Command, argv []string) error {
		return c.withApp(cmd.Context(), func(a *app) error {
			res, err := a.svc.Release(cmd.Context(), argv[0])
			if err != nil {
				return inputError(err)
			}
			if out.json {
				return printJSON(c.stdout, res)
			}
			verb := "released"
			if res.Replayed {
				verb = "was already released:"
			}
			_, err = fmt.Fprintf(c.stdout, "%s %s (%s)\n", verb, res.Hold.ID, res.Released)
			return err
		})
	}
	return cmd
}

func printHold(c *cli, h agentkey.Hold) error {
	return fields(c.stdout,
		"id", h.ID,
		"key", h.KeyID,
		"account", h.AccountID,
		"amount", h.Amount.String(),
		"state", string(h.State),
		"budgets", strings.Join(h.BudgetIDs, ", "),
		"expires", optionalTime(h.ExpiresAt),
		"created", optionalTime(h.CreatedAt),
		"closed", optionalTime(h.ClosedAt),
		"charged", h.Charged.String(),
		"overrun", h.Overrun.String(),
		"idempotency key", h.IdempotencyKey,
		"metadata", metadataText(h.Metadata),
	)
}
