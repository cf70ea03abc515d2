package akclerk_test

import (
	"testing"

	"github.com/agentkey-go/agentkey/internal/pgtest"
)

// TestMain stops the PostgreSQL cluster after the tests and checks for
// leaked goroutines.
func TestMain(m *testing.M) { pgtest.Main(m) }
