package akcli

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/agentkey-go/agentkey"
	"github.com/agentkey-go/agentkey/akserver"
)

// envAnnotation marks a flag with the environment variable that sets it.
const envAnnotation = "agentkey_env"

// The settings' defaults.
const (
	defaultDB          = "./agentkey.db"
	defaultTablePrefix = "agentkey_"
)

// globalSettings are the settings of every command: where the database is,
// how to log, and how the service mints keys and budgets.
type globalSettings struct {
	databaseURL string
	db          string
	tablePrefix string
	pgSchema    string

	logFormat string
	logLevel  string

	keyPrefix   string
	timeZone    string
	validScopes []string
}

func (g *globalSettings) register(fs *pflag.FlagSet) {
	fs.SortFlags = false
	fs.StringVar(&g.databaseURL, "database-url", "",
		"PostgreSQL connection URL; when set, PostgreSQL is used instead of SQLite")
	setting(fs, "database-url", "DATABASE_URL")
	fs.StringVar(&g.db, "db", defaultDB, "SQLite database file, used when no database URL is set")
	setting(fs, "db", "AGENTKEY_DB")
	fs.StringVar(&g.tablePrefix, "table-prefix", defaultTablePrefix, "prefix of every table name")
	setting(fs, "table-prefix", "AGENTKEY_TABLE_PREFIX")
	fs.StringVar(&g.pgSchema, "pg-schema", "",
		"PostgreSQL schema of the tables, created if missing (default: the first of the search_path)")
	setting(fs, "pg-schema", "AGENTKEY_PG_SCHEMA")

	fs.StringVar(&g.logFormat, "log-format", "text", "log format: text or json (logs go to stderr)")
	setting(fs, "log-format", "AGENTKEY_LOG_FORMAT")
	fs.StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	setting(fs, "log-level", "AGENTKEY_LOG_LEVEL")

	fs.StringVar(&g.keyPrefix, "key-prefix", "ak_", "prefix of the keys minted")
	setting(fs, "key-prefix", "AGENTKEY_KEY_PREFIX")
	fs.StringVar(&g.timeZone, "time-zone", "UTC",
		"IANA time zone in which new budgets' days, weeks and months start")
	setting(fs, "time-zone", "AGENTKEY_TIME_ZONE")
	fs.StringSliceVar(&g.validScopes, "valid-scopes", nil,
		"comma-separated scopes keys may be given (default: any scope)")
	setting(fs, "valid-scopes", "AGENTKEY_VALID_SCOPES")
}

// setting marks the flag name as a setting that the environment variable env
// also sets, and says so in its help.
func setting(fs *pflag.FlagSet, name, env string) {
	f := fs.Lookup(name)
	f.Usage += " (env " + env + ")"
	if err := fs.SetAnnotation(name, envAnnotation, []string{env}); err != nil {
		panic(err) // the flag was just defined
	}
}

// applyEnv sets every setting of fs that is not given as a flag from its
// environment variable, when that is set and not empty.
func applyEnv(fs *pflag.FlagSet, getenv func(string) string) error {
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		env := f.Annotations[envAnnotation]
		if err != nil || f.Changed || len(env) == 0 {
			return
		}
		if v := getenv(env[0]); v != "" {
			if e := fs.Set(f.Name, v); e != nil {
				err = usagef("invalid value of %s for --%s: %w", env[0], f.Name, e)
			}
		}
	})
	return err
}

// logger returns the logger the settings ask for, writing to w.
func (g *globalSettings) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(g.logLevel)); err != nil {
		return nil, usagef("--log-level %q: want debug, info, warn or error", g.logLevel)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch g.logFormat {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, usagef("--log-format %q: want text or json", g.logFormat)
}

// serviceConfig returns the agentkey.Config the settings ask for.
func (g *globalSettings) serviceConfig(log *slog.Logger) (agentkey.Config, error) {
	loc, err := time.LoadLocation(g.timeZone)
	if err != nil {
		return agentkey.Config{}, usagef("--time-zone %q: %w", g.timeZone, err)
	}
	cfg := agentkey.Config{KeyPrefix: g.keyPrefix, Location: loc, Logger: log}
	if len(g.validScopes) > 0 {
		cfg.ValidScopes = g.validScopes
	}
	return cfg, nil
}

// moneyValue is a flag holding an amount such as "12.50".
type moneyValue struct {
	m   *agentkey.Money
	set *bool
}

func (v moneyValue) String() string {
	if v.m == nil || (v.set != nil && !*v.set) {
		return ""
	}
	return v.m.String()
}

func (v moneyValue) Set(s string) error {
	m, err := agentkey.ParseSignedMoney(s)
	if err != nil {
		return err
	}
	*v.m = m
	if v.set != nil {
		*v.set = true
	}
	return nil
}

func (moneyValue) Type() string { return "amount" }

// durationValue is a flag holding a positive duration, in agentkey's units
// ("30m", "7d", "1mo") or Go's ("90s", "1h30m"), as akserver.ParseDuration
// reads them; with zero set, "0" is allowed too.
type durationValue struct {
	d    *time.Duration
	zero bool
}

func (v durationValue) String() string {
	if v.d == nil {
		return ""
	}
	if *v.d == 0 {
		if v.zero {
			return "0"
		}
		return ""
	}
	return agentkey.FormatDuration(*v.d)
}

func (v durationValue) Set(s string) error {
	if v.zero && strings.TrimSpace(s) == "0" {
		*v.d = 0
		return nil
	}
	d, err := parseDuration(s)
	if err != nil {
		return err
	}
	*v.d = d
	return nil
}

func (durationValue) Type() string { return "duration" }

// parseDuration parses a duration as the admin and decision APIs do.
func parseDuration(s string) (time.Duration, error) {
	d, err := akserver.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("duration %q: want a positive number and a unit "+
			"(s, m, h, d, w or mo), such as 90s, 30m or 7d", s)
	}
	return d, nil
}

// budgetsValue is a repeatable flag of budgets, each "AMOUNT" or
// "AMOUNT/PERIOD": "50", "10/day", "200/month". An amount without a period
// takes the one of the --period flag.
type budgetsValue struct{ specs *[]budgetFlag }

type budgetFlag struct {
	limit  agentkey.Money
	period agentkey.Period // empty: the --period flag's
}

func (v budgetsValue) String() string {
	var parts []string
	for _, b := range *v.specs {
		s := b.limit.String()
		if b.period != "" {
			s += "/" + string(b.period)
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ",")
}

func (v budgetsValue) Set(s string) error {
	for part := range strings.SplitSeq(s, ",") {
		amount, period, hasPeriod := strings.Cut(strings.TrimSpace(part), "/")
		m, err := agentkey.ParseMoney(amount)
		if err != nil {
			return err
		}
		b := budgetFlag{limit: m}
		if hasPeriod {
			if b.period, err = agentkey.ParsePeriod(period); err != nil {
				return err
			}
		}
		*v.specs = append(*v.specs, b)
	}
	return nil
}

func (budgetsValue) Type() string { return "amount[/period]" }

// budgetFlags registers --budget and --period on fs and returns a function
// that gives the budget specs they describe.
func budgetFlags(fs *pflag.FlagSet, what string) func() ([]agentkey.BudgetSpec, error) {
	var flags []budgetFlag
	var period string
	fs.Var(budgetsValue{&flags}, "budget",
		"a limit of the "+what+", as AMOUNT or AMOUNT/PERIOD (\"50\", \"10/day\"); repeatable")
	fs.StringVar(&period, "period", "none",
		"period of the --budget limits that name none: none (a lifetime cap), day, week or month")
	return func() ([]agentkey.BudgetSpec, error) {
		p, err := parsePeriod(period)
		if err != nil {
			return nil, err
		}
		specs := make([]agentkey.BudgetSpec, 0, len(flags))
		for _, b := range flags {
			if b.period == "" {
				b.period = p
			}
			specs = append(specs, agentkey.BudgetSpec{Limit: b.limit, Period: b.period})
		}
		return specs, nil
	}
}

// parsePeriod parses the value of a --period flag.
func parsePeriod(s string) (agentkey.Period, error) {
	p, err := agentkey.ParsePeriod(s)
	if err != nil {
		return "", usagef("--period: %w", err)
	}
	return p, nil
}

// parseTime parses a time flag: RFC 3339, or a date (midnight UTC).
func parseTime(flag, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	return time.Time{}, usagef("--%s %q: want an RFC 3339 time (2025-01-31T12:00:00Z) or a date "+
		"(2025-01-31)", flag, s)
}
