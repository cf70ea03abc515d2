package akserver_test

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/agentkey-go/agentkey/internal/pgtest"
)

// TestMain runs the tests, stops the PostgreSQL cluster and then checks for
// leaked goroutines. The cluster is stopped first because pgtest keeps a
// goroutine waiting on the server process for as long as it runs.
func TestMain(m *testing.M) {
	code := m.Run()
	pgtest.Stop()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}
