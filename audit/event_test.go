package audit

import (
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestNormalizedEventsAreValidBoundedText(t *testing.T) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	long := strings.Repeat("é", maxFingerprintBytes) // 2 bytes a rune
	ev := Event{
		Time:        time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		Org:         "ac\x00me",
		Detail:      "bad \xff utf-8",
		Fingerprint: long,
	}.normalized(now)
	if !ev.Time.Equal(now) {
		t.Errorf("a time PostgreSQL cannot store was kept: %v", ev.Time)
	}
	if ev.Org != "acme" {
		t.Errorf("NUL bytes kept: %q", ev.Org)
	}
	if ev.Detail != "bad \uFFFD utf-8" {
		t.Errorf("invalid UTF-8 kept: %q", ev.Detail)
	}
	if len(ev.Fingerprint) > maxFingerprintBytes || !utf8.ValidString(ev.Fingerprint) || len(ev.Fingerprint) < maxFingerprintBytes-1 {
		t.Errorf("fingerprint cut to %d bytes, valid %v", len(ev.Fingerprint), utf8.ValidString(ev.Fingerprint))
	}
	if ev.Reason != ReasonOther {
		t.Errorf("an empty reason became %q", ev.Reason)
	}
	if zero := (Event{Reason: ReasonAuthFailed}).normalized(now); !zero.Time.Equal(now) {
		t.Errorf("a zero time became %v", zero.Time)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func ftoa(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }
