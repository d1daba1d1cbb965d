// Command pgtenant is a PostgreSQL proxy that enforces multi-tenant
// isolation: clients log in with a JWT, and every transaction runs with the
// token's organization as the tenant context that Row-Level Security
// enforces.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRootCmd().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "pgtenant:", err)
		os.Exit(1)
	}
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "pgtenant",
		Short:         "PostgreSQL proxy that enforces multi-tenant isolation",
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newServeCmd(), newTokenCmd(), newDemoCmd())
	return root
}
