// Command agentkey serves agentkey's admin API, decision API and self-serve
// routes, and manages keys, accounts, budgets and the ledger from the shell.
// Run "agentkey --help" for its commands; package akcli implements them.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/agentkey-go/agentkey/akcli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// After the first signal starts a graceful shutdown, a second one
		// kills the process the default way.
		<-ctx.Done()
		stop()
	}()

	code := akcli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}
