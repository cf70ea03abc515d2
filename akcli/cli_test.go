package akcli

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"
	"github.com/stretchr/testify/require"
)

func TestExitCodes(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name   string
		env    map[string]string
		args   []string
		code   int
		stderr string // a part of stderr
	}{
		{name: "Help", args: []string{"--help"}, code: ExitOK},
		{name: "SubcommandHelp", args: []string{"keys", "create", "--help"}, code: ExitOK},
		{name: "Version", args: []string{"version"}, code: ExitOK},
		{name: "NoCommand", args: nil, code: ExitUsage, stderr: "needs a command"},
		{name: "GroupWithoutCommand", args: []string{"keys"}, code: ExitUsage,
			stderr: "agentkey keys needs a command: create, list"},
		{name: "UnknownCommand", args: []string{"kyes"}, code: ExitUsage,
			stderr: `unknown command "kyes" for "agentkey"; did you mean keys?`},
		{name: "UnknownSubcommand", args: []string{"keys", "destroy"}, code: ExitUsage,
			stderr: `unknown command "destroy" for "agentkey keys"`},
		{name: "UnknownFlag", args: []string{"keys", "list", "--colour"}, code: ExitUsage,
			stderr: "unknown flag: --colour"},
		{name: "MalformedAmount", args: []string{"keys", "create", "--account", "a", "--budget", "1.2.3"},
			code: ExitUsage, stderr: `invalid argument "1.2.3" for "--budget" flag`},
		{name: "TooExactAmount", args: []string{"keys", "create", "--account", "a", "--budget", "0.0000001"},
			code: ExitUsage, stderr: "more than 6 decimals"},
		{name: "UnknownPeriod", args: []string{"keys", "create", "--account", "a", "--budget", "5/year"},
			code: ExitUsage, stderr: "unknown budget period"},
		{name: "UnknownDefaultPeriod", args: []string{"keys", "create", "--account", "a", "--budget", "5",
			"--period", "fortnight"}, code: ExitUsage, stderr: "--period"},
		{name: "MalformedDuration", args: []string{"keys", "create", "--account", "a", "--expires", "7 days"},
			code: ExitUsage, stderr: `invalid argument "7 days" for "--expires" flag`},
		{name: "MissingRequiredFlag", args: []string{"keys", "create"}, code: ExitUsage,
			stderr: "--account is required"},
		{name: "MissingArgument", args: []string{"keys", "show"}, code: ExitUsage,
			stderr: "agentkey keys show needs KEY_ID"},
		{name: "ExtraArgument", args: []string{"keys", "show", "a", "b"}, code: ExitUsage,
			stderr: `unexpected argument "b"`},
		{name: "MalformedScope", args: []string{"keys", "create", "--account", "a", "--scopes", "a b"},
			code: ExitUsage, stderr: "scope"},
		{name: "BothOwners", args: []string{"budgets", "show", "--key", "k", "--account", "a"},
			code: ExitUsage, stderr: "exactly one of --key and --account"},
		{name: "JSONAndCSV", args: []string{"usage", "--json", "--csv"}, code: ExitUsage,
			stderr: "exclude each other"},
		{name: "BadLogFormat", env: map[string]string{"AGENTKEY_LOG_FORMAT": "xml"},
			args: []string{"keys", "list"}, code: ExitUsage, stderr: `--log-format "xml"`},
		{name: "BadEnvValue", env: map[string]string{"AGENTKEY_SIGNUP_RATE": "many"},
			args: []string{"serve"}, code: ExitUsage, stderr: "invalid value of AGENTKEY_SIGNUP_RATE"},
		{name: "SchemaWithoutPostgres", args: []string{"keys", "list", "--pg-schema", "x"},
			code: ExitUsage, stderr: "--pg-schema needs --database-url"},
		{name: "BadTableprefix", args: []string{"keys", "list", "--table-prefix", "a-b"},
			code: ExitUsage, stderr: "--table-prefix"},
		{name: "MalformedDatabaseURL", args: []string{"keys", "list", "--database-url", "postgres://a:secret@[x"},
			code: ExitUsage, stderr: "--database-url"},
		{name: "UnknownKey", args: []string{"keys", "show", "key_nope"}, code: ExitError,
			stderr: "key_nope: get key: not found"},
		{name: "ReleaseUnknownHold", args: []string{"holds", "release", "hold_nope"}, code: ExitError,
			stderr: "not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := sqliteEnv(t)
			for k, v := range tt.env {
				e.vars[k] = v
			}
			r := e.run(tt.args...)
			require.Equal(t, tt.code, r.code, "stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
			require.Contains(t, r.stderr, tt.stderr)
			require.NotContains(t, r.stderr, "secret@", "the password of a URL is never shown")
			if tt.code == ExitUsage {
				require.Contains(t, r.stderr, "--help' for usage")
			}
		})
	}
}

// TestHelpListsEveryEnvVar walks every flag of serve, its own and those
// of every command: each is a setting with an environment variable, which
// --help names, and whose default --help states unless it is empty.
func TestHelpListsEveryEnvVar(t *testing.T) {
	t.Parallel()
	e := sqliteEnv(t)
	help := e.ok("serve", "--help")

	root := (&cli{getenv: e.getenv}).rootCommand()
	serve, _, err := root.Find([]string{"serve"})
	require.NoError(t, err)
	seen := map[string]string{}
	check := func(f *pflag.Flag) {
		if f.Name == "help" {
			return
		}
		env := f.Annotations[envAnnotation]
		require.Len(t, env, 1, "--%s has no environment variable", f.Name)
		require.NotContains(t, seen, env[0], "--%s and --%s share %s", f.Name, seen[env[0]],
			env[0])
		seen[env[0]] = f.Name

		line := helpLine(t, help, "--"+f.Name+" ")
		require.Contains(t, line, "(env "+env[0]+")", "--%s", f.Name)
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "[]" {
			require.Contains(t, line, "(default ", "--%s states its default", f.Name)
		}
	}
	serve.LocalFlags().VisitAll(check)
	serve.InheritedFlags().VisitAll(check)
	require.Greater(t, len(seen), 30)
}

// helpLine returns the line of help that starts with flag, after spaces.
func helpLine(t *testing.T, help, flag string) string {
	t.Helper()
	for line := range strings.SplitSeq(help, "\n") {
		if strings.HasPrefix(strings.TrimLeft(line, " "), flag) {
			return line
		}
	}
	t.Fatalf("--help does not list %s", flag)
	return ""
}

func TestSettingsFromEnvironment(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	fromEnv, fromFlag := filepath.Join(dir, "env.db"), filepath.Join(dir, "flag.db")
	e := &env{t: t, vars: map[string]string{"AGENTKEY_DB": fromEnv, "AGENTKEY_KEY_PREFIX": "sk_"}}

	secret := strings.TrimSpace(e.ok("keys", "create", "--account", "acct_env", "-q"))
	require.True(t, strings.HasPrefix(secret, "sk_"), secret)
	require.Contains(t, e.ok("keys", "list"), "acct_env")

	// The flag wins over the environment.
	require.NotContains(t, e.ok("keys", "list", "--db", fromFlag), "acct_env")
	require.Contains(t, e.ok("keys", "list", "--db", fromEnv), "acct_env")
}

func TestVersion(t *testing.T) {
	t.Parallel()
	out := sqliteEnv(t).ok("version")
	require.True(t, strings.HasPrefix(out, "agentkey "), out)
	require.NotEmpty(t, version())
}
