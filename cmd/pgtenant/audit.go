package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"github.com/pgtenant/pgtenant/audit"
)

// auditDSNEnv is read when --dsn is not given; it is the environment
// variable of the audit.dsn key.
const auditDSNEnv = "PGTENANT_AUDIT_DSN"

// Following the table: how often it is polled, and the most events read per
// query (more are read at once by querying again).
const (
	followInterval = time.Second
	followPage     = 1000
)

// maxFingerprintWidth is how much of a fingerprint the table format shows;
// --json shows all of it.
const maxFingerprintWidth = 80

func newAuditCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Read the audit log of refused attempts",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newAuditTailCmd())
	return cmd
}

// tailOptions are the flags of audit tail.
type tailOptions struct {
	dsn    string
	filter audit.TailFilter
	since  time.Duration
	follow bool
	json   bool
}

func newAuditTailCmd() *cobra.Command {
	var o tailOptions
	cmd := &cobra.Command{
		Use:   "tail [--dsn DSN] [--org ORG] [--reason REASON] [--since 1h] [-n 50] [--follow] [--json]",
		Short: "Print recent audit events, newest first",
		Long: "Print the most recent events of " + audit.Table + " in the control database, newest first. " +
			"With --follow the list reads oldest first, like tail -f, and new events are printed as they are stored. " +
			"--json prints one JSON object per line, with every field.",
		Args: cobra.NoArgs,
	}
	f := cmd.Flags()
	f.StringVar(&o.dsn, "dsn", "", "control database DSN (default $"+auditDSNEnv+")")
	f.StringVar(&o.filter.Org, "org", "", "only events of this tenant")
	f.StringVar(&o.filter.Reason, "reason", "", "only events of this reason (blocked_statement, forged_context, rls_violation, auth_failed, tenant_refused)")
	f.DurationVar(&o.since, "since", 0, "only events of this recent period, e.g. 1h (default: all)")
	f.IntVarP(&o.filter.Limit, "lines", "n", audit.DefaultTailLimit, "how many events to print")
	f.BoolVarP(&o.follow, "follow", "f", false, "keep printing new events until interrupted")
	f.BoolVar(&o.json, "json", false, "print JSON lines instead of a table")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if o.dsn == "" {
			o.dsn = os.Getenv(auditDSNEnv)
		}
		if o.dsn == "" {
			return errors.New("--dsn or " + auditDSNEnv + " is required: the control database that holds " + audit.Table)
		}
		if o.filter.Limit < 1 {
			return errors.New("-n must be at least 1")
		}
		if o.since < 0 {
			return errors.New("--since must not be negative")
		}
		if o.since > 0 {
			o.filter.Since = time.Now().Add(-o.since)
		}
		ctx := cmd.Context()
		conn, err := pgx.Connect(ctx, o.dsn)
		if err != nil {
			return fmt.Errorf("connecting to the control database: %w", err)
		}
		defer conn.Close(context.WithoutCancel(ctx))
		return auditTail(ctx, conn, cmd.OutOrStdout(), o)
	}
	return cmd
}

// auditTail prints the events o selects; with o.follow it then polls for
// new ones until ctx ends, which is not an error.
func auditTail(ctx context.Context, conn *pgx.Conn, w io.Writer, o tailOptions) error {
	events, err := audit.Tail(ctx, conn, o.filter)
	if err != nil {
		return err
	}
	p := newEventPrinter(w, o.json)
	if !o.follow {
		return p.print(events)
	}
	slices.Reverse(events)
	if err := p.print(events); err != nil {
		return err
	}
	next := o.filter
	next.Limit, next.OldestFirst = followPage, true
	for _, e := range events {
		next.AfterID = max(next.AfterID, e.ID)
	}
	tick := time.NewTicker(followInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		for {
			page, err := audit.Tail(ctx, conn, next)
			if ctx.Err() != nil {
				return nil
			}
			if err != nil {
				return err
			}
			if err := p.print(page); err != nil {
				return err
			}
			if len(page) < next.Limit {
				break
			}
			next.AfterID = page[len(page)-1].ID
		}
	}
}

// eventPrinter writes events as a table (header once) or as JSON lines.
type eventPrinter struct {
	w      io.Writer
	json   bool
	header bool // printed
}

func newEventPrinter(w io.Writer, asJSON bool) *eventPrinter {
	return &eventPrinter{w: w, json: asJSON}
}

func (p *eventPrinter) print(events []audit.StoredEvent) error {
	if p.json {
		enc := json.NewEncoder(p.w)
		for _, e := range events {
			if err := enc.Encode(e); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(p.w, 0, 0, 2, ' ', 0)
	if !p.header {
		p.header = true
		fmt.Fprintln(tw, "TIME\tORG\tSUBJECT\tREASON\tRULE\tSQLSTATE\tFINGERPRINT")
	}
	for _, e := range events {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Time.Local().Format(time.RFC3339),
			cell(e.Org), cell(e.Subject), cell(e.Reason), cell(e.Rule), cell(e.SQLState),
			cell(shorten(strings.Join(strings.Fields(e.Fingerprint), " "), maxFingerprintWidth)))
	}
	return tw.Flush()
}

// cell makes a value safe to print on a terminal: the values come from
// clients, and control characters could move the cursor or forge lines.
func cell(s string) string {
	if s == "" {
		return "-"
	}
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == '\t' {
			return '?'
		}
		return r
	}, s)
}

// shorten cuts s to at most n runes, marking the cut.
func shorten(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
