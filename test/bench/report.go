package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
)

// printReport prints the median tps of every mode and target, pgtenant's
// ratios to direct PostgreSQL and to PgBouncer, and every sample. A mode and
// target whose run failed shows "failed", one the target does not support
// "unsupported" (with pgbench's reason below the table), one that never ran
// "-"; a ratio with either side missing is "-".
func printReport(out io.Writer, res *results, targets []target) {
	names := make([]string, len(targets))
	for i, t := range targets {
		names[i] = t.name
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "mode\tdirect tps\tpgtenant tps\tpgbouncer tps\tpgtenant/direct\tpgtenant/pgbouncer\t")
	for _, mode := range modes {
		med := map[string]float64{}
		row := []string{mode}
		for _, name := range []string{"direct", "pgtenant", "pgbouncer"} {
			samples := res.tps[mode][name]
			switch {
			case len(samples) == 0 && res.unsupported[mode][name] != "":
				row = append(row, "unsupported")
				continue
			case len(samples) == 0 && res.failed[mode][name] != nil:
				row = append(row, "failed")
				continue
			case len(samples) == 0: // interrupted before it ran
				row = append(row, "-")
				continue
			}
			med[name] = median(samples)
			row = append(row, fmt.Sprintf("%.0f", med[name]))
		}
		row = append(row, ratio(med["pgtenant"], med["direct"]), ratio(med["pgtenant"], med["pgbouncer"]))
		fmt.Fprintln(tw, strings.Join(row, "\t")+"\t")
	}
	_ = tw.Flush()
	for _, mode := range modes {
		for _, name := range names {
			if reason := res.unsupported[mode][name]; reason != "" {
				fmt.Fprintf(out, "%s cannot run -M %s: %s\n", name, mode, reason)
			}
		}
	}

	fmt.Fprintln(out, "\nproxy CPU time per transaction (median µs; lower is leaner):")
	for _, mode := range modes {
		var s []string
		for _, name := range []string{"pgtenant", "pgbouncer"} {
			if c := res.cpu[mode][name]; len(c) > 0 {
				s = append(s, fmt.Sprintf("%s %.1f", name, median(c)))
			} else if res.unsupported[mode][name] != "" {
				s = append(s, name+" unsupported")
			}
		}
		fmt.Fprintf(out, "  %-8s  %s\n", mode, strings.Join(s, "   "))
	}

	fmt.Fprintln(out, "\nsamples (tps without connection time, in run order):")
	for _, mode := range modes {
		for _, name := range names {
			var s []string
			for _, v := range res.tps[mode][name] {
				s = append(s, fmt.Sprintf("%.0f", v))
			}
			if res.failed[mode][name] != nil {
				s = append(s, "failed")
			}
			if res.unsupported[mode][name] != "" {
				s = append(s, "unsupported")
			}
			if len(s) == 0 {
				s = append(s, "(not run)")
			}
			fmt.Fprintf(out, "  %-8s  %-9s  %s\n", mode, name, strings.Join(s, " "))
		}
	}
}

// median returns the middle value of samples (the mean of the two middle
// ones for an even count); samples must not be empty. It does not reorder
// samples.
func median(samples []float64) float64 {
	s := slices.Clone(samples)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// ratio formats a/b as "0.87x", or "-" when either is missing.
func ratio(a, b float64) string {
	if a == 0 || b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", a/b)
}
