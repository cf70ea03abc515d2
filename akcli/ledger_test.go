package akcli

import (
	"encoding/csv"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentkey-go/agentkey"
	"github.com/agentkey-go/agentkey/akserver"
	"github.com/agentkey-go/agentkey/aksqlite"
)

func TestUsageLedgerAndHolds(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		e.ok("accounts", "create", "acct_1", "--budget", "100/month")
		var ck agentkey.CreatedKey
		e.json(&ck, "keys", "create", "--account", "acct_1", "--budget", "10/day", "--name", "bot")
		var meter agentkey.CreatedKey
		e.json(&meter, "keys", "create", "--account", "acct_2")

		svc := e.service()
		for i := range 5 {
			res, err := svc.TrackUsage(ctx, ck.Secret, 25*agentkey.Cent,
				agentkey.WithIdempotencyKey(fmt.Sprint("req-", i)),
				agentkey.WithMetadata(map[string]string{"model": "small"}))
			require.NoError(t, err)
			require.True(t, res.OK(), res.Reason)
		}
		_, err := svc.TrackUsage(ctx, meter.Secret, 3*agentkey.Dollar)
		require.NoError(t, err)
		hold, err := svc.Reserve(ctx, ck.Key.ID, 2*agentkey.Dollar)
		require.NoError(t, err)
		require.True(t, hold.OK(), hold.Reason)

		// usage: one row per budget, keys then accounts.
		var rows []usageRow
		e.json(&rows, "usage")
		require.Len(t, rows, 3)
		byOwner := map[string]usageRow{}
		for _, r := range rows {
			byOwner[r.OwnerID] = r
		}
		key := byOwner[ck.Key.ID]
		require.Equal(t, "1.25", key.Used.String())
		require.Equal(t, "2", key.Held.String())
		require.Equal(t, "6.75", key.Remaining.String())
		require.Equal(t, "bot", key.Name)
		require.Nil(t, byOwner[meter.Key.ID].Limit, "an unlimited meter has no limit")
		require.Equal(t, "3", byOwner[meter.Key.ID].Used.String())
		require.Equal(t, "1.25", byOwner["acct_1"].Used.String(), "the account pays for its keys")
		require.Equal(t, agentkey.OwnerAccount, byOwner["acct_1"].OwnerKind)

		e.json(&rows, "usage", "--account", "acct_1")
		require.Len(t, rows, 2)
		e.json(&rows, "usage", "--key", meter.Key.ID)
		require.Len(t, rows, 1)

		table := e.ok("usage")
		require.Contains(t, table, "unlimited")
		require.Contains(t, table, "6.75")
		records, err := csv.NewReader(strings.NewReader(e.ok("usage", "--csv"))).ReadAll()
		require.NoError(t, err)
		require.Len(t, records, 4)
		require.Equal(t, "OWNER_KIND", records[0][0])

		// ledger list: filters, pages, formats.
		var entries []agentkey.Entry
		e.json(&entries, "ledger", "list", "--key", ck.Key.ID)
		require.Len(t, entries, 13, "the key's budget set, then 5 charges and a hold, "+
			"each on the key's and the account's budget")
		e.json(&entries, "ledger", "list", "--key", ck.Key.ID, "--limit", "5")
		require.Len(t, entries, 5)
		e.json(&entries, "ledger", "list", "--key", ck.Key.ID, "--limit", "5", "--all")
		require.Len(t, entries, 13)
		e.json(&entries, "ledger", "list", "--account", "acct_2")
		require.Len(t, entries, 2, "the key's budget set, and its charge")
		e.json(&entries, "ledger", "list", "--account", "acct_2", "--kind", "money")
		require.Len(t, entries, 1)
		require.Equal(t, agentkey.EntryCharge, entries[0].Kind)
		e.json(&entries, "ledger", "list", "--kind", "account_created,budget_set")
		require.Len(t, entries, 4, "the account, and the budgets of the account and two keys")
		r := e.run("ledger", "list", "--kind", "charges")
		require.Equal(t, ExitUsage, r.code)
		require.Contains(t, r.stderr, `unknown ledger entry kind "charges"`)
		e.json(&entries, "ledger", "list", "--since", "2000-01-01", "--until", "2001-01-01")
		require.Empty(t, entries)

		r = e.run("ledger", "list", "--key", ck.Key.ID, "--limit", "5")
		require.Equal(t, ExitOK, r.code)
		require.Contains(t, r.stderr, "--after ")
		require.Contains(t, r.stdout, `{"model":"small"}`)

		// The CSV, read as lines: a header, then a line per entry, none blank
		// (csv.Reader would skip blank lines), across pages with --all.
		e.json(&entries, "ledger", "list", "--all")
		out := e.ok("ledger", "list", "--csv", "--all", "--limit", "4")
		lines := strings.Split(out, "\n")
		require.Len(t, lines, 1+17+1, "%q", out)
		require.Equal(t, strings.Join(akserver.LedgerColumns, ","), lines[0])
		require.Empty(t, lines[len(lines)-1], "the output ends with a newline")
		for i, line := range lines[1 : len(lines)-1] {
			require.NotEmpty(t, line, "line %d", i+2)
			cells, err := csv.NewReader(strings.NewReader(line)).Read()
			require.NoError(t, err, line)
			require.Equal(t, strconv.FormatInt(entries[i].ID, 10), cells[0])
			at, err := time.Parse(time.RFC3339Nano, cells[1])
			require.NoError(t, err)
			require.True(t, entries[i].CreatedAt.Equal(at), "full precision: %s", cells[1])
		}
		require.Equal(t, "id,created_at,op_id,kind,budget_id,key_id,account_id,hold_id,amount,"+
			"period_start,idempotency_key,metadata\n",
			e.ok("ledger", "list", "--csv", "--budget", "bud_none"),
			"an empty CSV still has its header")

		// holds: list, show, release, release again.
		var holds []agentkey.Hold
		e.json(&holds, "holds", "list", "--state", "open")
		require.Len(t, holds, 1)
		require.Equal(t, hold.Hold.ID, holds[0].ID)
		require.Contains(t, e.ok("holds", "show", hold.Hold.ID), "open")
		require.Contains(t, e.ok("holds", "release", hold.Hold.ID), "released "+hold.Hold.ID)
		require.Contains(t, e.ok("holds", "release", hold.Hold.ID), "already released")
		e.json(&holds, "holds", "list", "--state", "open")
		require.Empty(t, holds)
		require.Equal(t, ExitUsage, e.run("holds", "list", "--state", "stuck").code)

		// audit: clean.
		require.Contains(t, e.ok("ledger", "audit"), "audit clean")
		var report agentkey.AuditReport
		e.json(&report, "ledger", "audit")
		require.True(t, report.Clean())
		require.Equal(t, 3, report.Budgets)
	})
}

// TestLedgerCSVDefusesFormulas quotes a caller's text that a spreadsheet
// would run as a formula, as the admin API's export does.
func TestLedgerCSVDefusesFormulas(t *testing.T) {
	t.Parallel()
	e := sqliteEnv(t)
	var ck agentkey.CreatedKey
	e.json(&ck, "keys", "create", "--account", "=acct", "--budget", "10")
	_, err := e.service().TrackUsage(t.Context(), ck.Secret, agentkey.Cent,
		agentkey.WithIdempotencyKey("=cmd|' /C calc'!A0"))
	require.NoError(t, err)

	lines := strings.Split(strings.TrimSuffix(e.ok("ledger", "list", "--csv", "--kind", "charge"),
		"\n"), "\n")
	require.Len(t, lines, 2)
	require.Contains(t, lines[1], ",'=acct,")
	require.Contains(t, lines[1], `,'=cmd|' /C calc'!A0,`)
	require.Contains(t, lines[1], ",0.01,", "amounts are left as they are")

	usage := e.ok("usage", "--csv")
	require.Contains(t, usage, ",'=acct,")
}

func TestAuditDrift(t *testing.T) {
	t.Parallel()
	e := sqliteEnv(t)
	var ck agentkey.CreatedKey
	e.json(&ck, "keys", "create", "--account", "acct_1", "--budget", "10")

	// Tamper with the running total behind the ledger's back.
	store, err := aksqlite.Open(e.vars["AGENTKEY_DB"], aksqlite.Config{})
	require.NoError(t, err)
	defer store.Close()
	_, err = store.DB().ExecContext(t.Context(),
		"UPDATE agentkey_budgets SET used = used + 7 WHERE id = ?", ck.Key.Budgets[0].ID)
	require.NoError(t, err)

	r := e.run("ledger", "audit")
	require.Equal(t, ExitDrift, r.code, "stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
	require.Contains(t, r.stdout, ck.Key.Budgets[0].ID)
	require.Contains(t, r.stdout, "0.000007")
	require.Contains(t, r.stderr, "1 of 1 budgets drifted")

	r = e.run("ledger", "audit", "--json")
	require.Equal(t, ExitDrift, r.code)
	require.Contains(t, r.stdout, `"ledger_used": "0"`)
}
