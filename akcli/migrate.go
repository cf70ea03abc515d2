package akcli

import (
	"fmt"

	"github.com/spf13/cobra"
)

func (c *cli) migrateCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "migrate",
		Short: "Apply the database migrations that are not applied yet",
		Long: `Apply the database migrations that are not applied yet, then exit. Every
command migrates before it starts, so this is only needed to migrate ahead of
a deployment. It is safe to run while servers run, and from several processes
at once.`,
		Args: args(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.withApp(cmd.Context(), func(*app) error {
				_, err := fmt.Fprintln(c.stdout, "database is up to date")
				return err
			})
		},
	}
}
