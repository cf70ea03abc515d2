package akcli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/agentkey-go/agentkey/akserver"
)

func (c *cli) serviceTokensCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "service-tokens",
		Short: "Create, list and revoke the tokens that services use for the decision API",
		Long: `A service token authenticates a service calling the decision API (/v1/...).
Each has a name; create one per calling service, so that one can be revoked
alone.`,
	}
	group(cmd)

	var quiet bool
	create := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a service token and print it, once",
		Args:  args("name"),
	}
	create.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only the token")
	create.RunE = func(cmd *cobra.Command, argv []string) error {
		return c.withApp(cmd.Context(), func(a *app) error {
			token, err := akserver.CreateServiceToken(cmd.Context(), a.store, argv[0])
			if err != nil {
				return inputError(fmt.Errorf("create service token %s: %w", argv[0], err))
			}
			if quiet {
				_, err = fmt.Fprintln(c.stdout, token)
			} else {
				_, err = fmt.Fprintf(c.stdout, "service token %s: %s\n", argv[0], token)
			}
			return err
		})
	}

	revoke := &cobra.Command{
		Use:   "revoke NAME",
		Short: "Revoke a service token",
		Long: `Revoke a service token. Running servers keep accepting it for up to their
--service-token-cache-ttl (30 seconds by default), the time they trust a
verified token.`,
		Args: args("name"),
	}
	revoke.RunE = func(cmd *cobra.Command, argv []string) error {
		return c.withApp(cmd.Context(), func(a *app) error {
			if err := akserver.RevokeServiceToken(cmd.Context(), a.store, argv[0]); err != nil {
				return inputError(fmt.Errorf("revoke service token %s: %w", argv[0], err))
			}
			_, err := fmt.Fprintf(c.stdout, "revoked service token %s\n", argv[0])
			return err
		})
	}

	var out format
	list := &cobra.Command{
		Use:   "list",
		Short: "List the live service tokens by name, with when each was made",
		Long: `List the live service tokens by name, with when each was made. A token is
shown once, when it is made, and only its hash is kept: neither is listed.`,
		Args: args(),
	}
	out.register(flagSet(list), false)
	list.RunE = func(cmd *cobra.Command, _ []string) error {
		return c.withApp(cmd.Context(), func(a *app) error {
			tokens, err := akserver.ServiceTokens(cmd.Context(), a.store)
			if err != nil {
				return err
			}
			if out.json {
				return printJSON(c.stdout, tokens)
			}
			t := newTable(c.stdout, "NAME", "CREATED")
			for _, tok := range tokens {
				t.row(tok.Name, timeText(tok.CreatedAt))
			}
			return t.flush()
		})
	}

	cmd.AddCommand(create, list, revoke)
	return cmd
}
