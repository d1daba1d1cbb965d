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
	"runtime/pprof"
	"syscall"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if path := os.Getenv("PGTENANT_CPUPROFILE"); path != "" {
		// For benchmarking the proxy itself: a CPU profile of the whole run.
		if f, err := os.Create(path); err == nil {
			_ = pprof.StartCPUProfile(f)
			defer pprof.StopCPUProfile()
		}
	}
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
	root.AddCommand(newServeCmd(), newTokenCmd(), newDemoCmd(), newAuditCmd(), newPoliciesCmd(), newTenantsCmd())
	return root
}
