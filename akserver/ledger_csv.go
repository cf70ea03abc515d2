package akserver

import (
	"encoding/csv"
	"encoding/json"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/agentkey-go/agentkey"
)

// LedgerColumns are the columns of the ledger's CSV export, in order.
var LedgerColumns = []string{"id", "created_at", "op_id", "kind", "budget_id", "key_id",
	"account_id", "hold_id", "amount", "period_start", "idempotency_key", "metadata"}

// LedgerCSV writes ledger entries as CSV, as GET /admin/v1/ledger?format=csv
// and "agentkey ledger list --csv" do: a header of LedgerColumns, then a row
// per entry, with times in UTC in RFC 3339 at their full precision, metadata
// as compact JSON, and any text that a spreadsheet would run as a formula
// quoted with a leading apostrophe (OWASP, "CSV Injection"). Amounts are
// decimal strings, and a negative one (a credit) is left as it is.
type LedgerCSV struct {
	cw  *csv.Writer
	row []string
}

// NewLedgerCSV returns a LedgerCSV that writes to w, starting with the
// header. Rows are buffered until Flush.
func NewLedgerCSV(w io.Writer) *LedgerCSV {
	c := &LedgerCSV{cw: csv.NewWriter(w), row: make([]string, len(LedgerColumns))}
	_ = c.cw.Write(LedgerColumns) // an error is kept for Flush
	return c
}

// Write adds an entry's row.
func (c *LedgerCSV) Write(e agentkey.Entry) error {
	md := ""
	if len(e.Metadata) > 0 {
		b, _ := json.Marshal(e.Metadata) // a map of strings always marshals
		md = string(b)
	}
	c.row[0] = strconv.FormatInt(e.ID, 10)
	c.row[1] = csvTime(e.CreatedAt)
	c.row[2] = SafeCSVCell(e.OpID)
	c.row[3] = SafeCSVCell(string(e.Kind))
	c.row[4] = SafeCSVCell(e.BudgetID)
	c.row[5] = SafeCSVCell(e.KeyID)
	c.row[6] = SafeCSVCell(e.AccountID)
	c.row[7] = SafeCSVCell(e.HoldID)
	c.row[8] = e.Amount.String()
	c.row[9] = csvTime(e.PeriodStart)
	c.row[10] = SafeCSVCell(e.IdempotencyKey)
	c.row[11] = SafeCSVCell(md)
	return c.cw.Write(c.row)
}

// Flush writes the buffered rows and returns the first error of any write.
func (c *LedgerCSV) Flush() error {
	c.cw.Flush()
	return c.cw.Error()
}

// csvTime writes t in UTC, RFC 3339 with its fractional seconds, or "" when
// it is zero.
func csvTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// SafeCSVCell returns s as a CSV cell that a spreadsheet will not run as a
// formula: a value that starts like one (=, +, -, @, a tab or a carriage
// return) gets a leading apostrophe (OWASP, "CSV Injection"). Use it for
// text, not for amounts, whose minus sign it would quote.
func SafeCSVCell(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}
