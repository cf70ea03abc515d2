package akserver_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentkey-go/agentkey"
	"github.com/agentkey-go/agentkey/akserver"
)

// TestLedgerCSV checks the export's bytes: a header line, then a line per
// entry with no blank line between, times at full precision, text that
// could start a formula quoted, and a credit's minus sign kept.
func TestLedgerCSV(t *testing.T) {
	t.Parallel()
	at := time.Date(2030, 1, 2, 3, 4, 5, 123456000, time.FixedZone("CET", 3600))
	var buf bytes.Buffer
	w := akserver.NewLedgerCSV(&buf)
	require.NoError(t, w.Write(agentkey.Entry{ID: 7, CreatedAt: at, OpID: "op_1",
		Kind: agentkey.EntryCharge, BudgetID: "bud_1", KeyID: "key_1", AccountID: "=acct",
		Amount: 4 * agentkey.Cent / 100, PeriodStart: at.Truncate(time.Hour),
		IdempotencyKey: "=HYPERLINK(\"x\")", Metadata: map[string]string{"a": "b,c"}}))
	require.NoError(t, w.Write(agentkey.Entry{ID: 8, CreatedAt: at, OpID: "op_2",
		Kind: agentkey.EntryAdjust, BudgetID: "bud_1", Amount: -agentkey.Dollar,
		IdempotencyKey: "@sum", Metadata: map[string]string{}}))
	require.NoError(t, w.Flush())

	require.Equal(t, strings.Join([]string{
		"id,created_at,op_id,kind,budget_id,key_id,account_id,hold_id,amount,period_start," +
			"idempotency_key,metadata",
		`7,2030-01-02T02:04:05.123456Z,op_1,charge,bud_1,key_1,'=acct,,0.0004,` +
			`2030-01-02T02:00:00Z,"'=HYPERLINK(""x"")","{""a"":""b,c""}"`,
		`8,2030-01-02T02:04:05.123456Z,op_2,adjust,bud_1,,,,-1,,'@sum,`,
		"",
	}, "\n"), buf.String())
}
