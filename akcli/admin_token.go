package akcli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/agentkey-go/agentkey/akserver"
)

func (c *cli) adminTokenCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "admin-token",
		Short: "Rotate the admin API's token",
	}
	group(cmd)

	rotate := &cobra.Command{
		Use:   "rotate",
		Short: "Replace the admin token and print the new one, once",
		Long: `Replace the admin token and print the new one. It is shown this once: only
its SHA-256 hash is stored. The old token stops working at once. This is also
the way back in when the token printed on first start is lost.`,
		Args: args(),
	}
	rotate.RunE = func(cmd *cobra.Command, _ []string) error {
		return c.withApp(cmd.Context(), func(a *app) error {
			token, err := akserver.RotateAdminToken(cmd.Context(), a.store)
			if err != nil {
				return fmt.Errorf("rotate admin token: %w", err)
			}
			_, err = fmt.Fprintf(c.stdout, "admin token: %s\n", token)
			return err
		})
	}
	cmd.AddCommand(rotate)
	return cmd
}
