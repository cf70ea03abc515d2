package akcli_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/agentkey-go/agentkey/akcli"
)

// Main runs a command as the binary would, with its environment given by a
// function: here a fresh SQLite file.
func ExampleMain() {
	dir, err := os.MkdirTemp("", "akcli-example-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	getenv := func(name string) string {
		if name == "AGENTKEY_DB" {
			return filepath.Join(dir, "agentkey.db")
		}
		return ""
	}

	ctx := context.Background()
	code := akcli.Main(ctx, []string{"ledger", "audit"}, os.Stdout, os.Stdout, getenv)
	fmt.Println("exit code", code)

	code = akcli.Main(ctx, []string{"keys", "create", "--account", "acct_1", "--budget", "ten"},
		os.Stdout, os.Stdout, getenv)
	fmt.Println("exit code", code)
	// Output:
	// audit clean: 0 budgets match the ledger
	// exit code 0
	// agentkey: invalid argument "ten" for "--budget" flag: parse amount "ten": malformed amount
	// Run 'agentkey keys create --help' for usage.
	// exit code 2
}
