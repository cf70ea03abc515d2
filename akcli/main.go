package akcli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/agentkey-go/agentkey"
)

// The exit codes of Main.
const (
	// ExitOK is a command that did what it was asked.
	ExitOK = 0
	// ExitError is a command that failed: the database is unreachable, a key
	// or account does not exist, the server could not start.
	ExitError = 1
	// ExitUsage is a command line that cannot be run: an unknown command or
	// flag, a missing argument, a malformed amount, duration or period.
	ExitUsage = 2
	// ExitDrift is "agentkey ledger audit" finding a budget whose running
	// totals differ from its ledger.
	ExitDrift = 3
)

// Main runs the agentkey command line with args (without the program name),
// writing results to stdout and messages to stderr, and reading environment
// variables through getenv (os.Getenv in the binary). It returns the process's
// exit code. Canceling ctx stops "agentkey serve" gracefully and interrupts
// other commands.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer,
	getenv func(string) string,
) int {
	c := &cli{stdout: stdout, stderr: stderr, getenv: getenv}
	root := c.rootCommand()
	if args == nil {
		args = []string{} // nil makes cobra read os.Args
	}
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)

	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return ExitOK
	}
	if errors.Is(err, errDrift) {
		return ExitDrift // the report is printed already
	}

	fmt.Fprintf(stderr, "agentkey: %v\n", err)
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
		return ExitUsage
	}
	return ExitError
}

// cli holds what every command shares: the streams, the environment and the
// settings common to all commands.
type cli struct {
	stdout, stderr io.Writer
	getenv         func(string) string
	global         globalSettings
}

func (c *cli) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "agentkey",
		Short: "Dollar spend caps, scopes and expiry for API keys",
		Long: `agentkey caps what each API key may spend: a dollar budget, scopes and an
expiry per key, enforced before the work runs and charged exactly after it.

"agentkey serve" runs the HTTP server: the admin API, the decision API for
services in any language, and the self-serve routes. The other commands work
on the database directly, with the same database flags as serve.

Every setting is a flag and an environment variable; the flag wins.
Amounts are decimal strings in the currency's units ("12.50", "0.0004").

Exit codes: 0 ok, 1 error, 2 bad command line, 3 audit found drift.`,
		SilenceErrors: true,
		SilenceUsage:  true,
		Version:       version(),
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return applyEnv(cmd.Flags(), c.getenv)
		},
	}
	root.SetVersionTemplate("agentkey {{.Version}}\n")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return usageError{err}
	})
	c.global.register(root.PersistentFlags())
	group(root)

	root.AddCommand(
		c.serveCommand(),
		c.keysCommand(),
		c.accountsCommand(),
		c.budgetsCommand(),
		c.usageCommand(),
		c.ledgerCommand(),
		c.holdsCommand(),
		c.adminTokenCommand(),
		c.serviceTokensCommand(),
		c.migrateCommand(),
		c.versionCommand(),
	)
	return root
}

// group makes cmd a command that only holds others: run alone or with an
// unknown subcommand, it prints its help to stderr and fails with a usage
// error, rather than cobra's default of printing help and succeeding.
func group(cmd *cobra.Command) {
	cmd.Args = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return nil
		}
		msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
		if cmd.SuggestionsMinimumDistance <= 0 {
			cmd.SuggestionsMinimumDistance = 2 // cobra's default, set only on its own path
		}
		if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
			msg += "; did you mean " + strings.Join(s, " or ") + "?"
		}
		return usageError{errors.New(msg)}
	}
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		var names []string
		for _, sub := range cmd.Commands() {
			if sub.IsAvailableCommand() {
				names = append(names, sub.Name())
			}
		}
		return usagef("%s needs a command: %s", cmd.CommandPath(), strings.Join(names, ", "))
	}
}

// usageError is an error in the command line, as opposed to a failure of
// the command; Main exits with ExitUsage for it.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// errDrift is returned by the audit after printing drifts.
var errDrift = errors.New("the ledger audit found drift")

// args returns a cobra.PositionalArgs that wants exactly the named arguments
// and fails with a usage error naming what is missing or extra.
func args(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, got []string) error {
		switch {
		case len(got) < len(names):
			return usagef("%s needs %s", cmd.CommandPath(),
				strings.ToUpper(strings.Join(names[len(got):], " and ")))
		case len(got) > len(names):
			return usagef("%s: unexpected argument %q", cmd.CommandPath(), got[len(names)])
		}
		return nil
	}
}

// flagSet returns the command's local flags, sorted as declared.
func flagSet(cmd *cobra.Command) *pflag.FlagSet {
	fs := cmd.Flags()
	fs.SortFlags = false
	return fs
}

// inputError makes err a usage error when the service refused the input as
// invalid (ErrInvalidArgument), such as a malformed scope or id; other errors
// stay failures.
func inputError(err error) error {
	if errors.Is(err, agentkey.ErrInvalidArgument) {
		return usageError{err}
	}
	return err
}
