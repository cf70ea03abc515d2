package agentkey_test

import (
	"testing"

	"github.com/agentkey-go/agentkey/internal/pgtest"
)

// TestMain stops the PostgreSQL cluster that the self-serve tests start, and
// checks for leaked goroutines.
func TestMain(m *testing.M) { pgtest.Main(m) }
