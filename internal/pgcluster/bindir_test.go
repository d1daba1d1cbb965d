package pgcluster

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBinDirFindsInitdbAndPostgres(t *testing.T) {
	dir, err := BinDir()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"initdb", "postgres"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("BinDir() = %s, which has no %s: %v", dir, name, err)
		}
	}
}

func TestBinDirEnvIsUsedAloneAndNamesTheInstallCommand(t *testing.T) {
	empty := t.TempDir()
	t.Setenv(BinDirEnv, empty)

	_, err := BinDir()
	if !errors.Is(err, ErrNoBinaries) {
		t.Fatalf("BinDir() with %s=%s: err = %v, want ErrNoBinaries", BinDirEnv, empty, err)
	}
	for _, want := range []string{BinDirEnv, empty, "apt-get install postgresql"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}

	_, err = Start(t.Context(), Options{})
	if !errors.Is(err, ErrNoBinaries) {
		t.Fatalf("Start with no binaries: err = %v, want ErrNoBinaries", err)
	}
}

func TestBinDirEnvAcceptsADirectoryWithTheBinaries(t *testing.T) {
	dir := t.TempDir()
	for _, name := range requiredBinaries {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv(BinDirEnv, dir)
	got, err := BinDir()
	if err != nil || got != dir {
		t.Fatalf("BinDir() = %q, %v; want %q", got, err, dir)
	}
}

func TestVersionDirectoriesOrderNumerically(t *testing.T) {
	tests := []struct {
		a, b string
		less bool
	}{
		{"9.6", "10", true},
		{"10", "9.6", false},
		{"15", "16", true},
		{"16", "15", false},
		{"15", "15", false},
		{"9.5", "9.6", true},
	}
	for _, tt := range tests {
		a, okA := parseVersion(tt.a)
		b, okB := parseVersion(tt.b)
		if !okA || !okB {
			t.Fatalf("parseVersion(%q, %q) failed", tt.a, tt.b)
		}
		if got := versionLess(a, b); got != tt.less {
			t.Errorf("versionLess(%s, %s) = %v, want %v", tt.a, tt.b, got, tt.less)
		}
	}
	if _, ok := parseVersion("15beta"); ok {
		t.Error(`parseVersion("15beta") succeeded; non-numeric directories must be ignored`)
	}
}
