package main

import (
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/pgtenant/pgtenant/config"
)

// configFlags are the flags every command that reads the configuration has,
// with the config keys they set. Flags win over environment and file.
var configFlags = map[string]string{
	"listen":          "listen",
	"admin-listen":    "admin.listen",
	"backend-dsn":     "backend.dsn",
	"jwt-secret-file": "auth.jwt.secret_file",
	"log-level":       "log.level",
	"log-format":      "log.format",
}

// addConfigFlags adds --config and --jwt-secret-file, and with serve the
// flags of the proxy's own keys.
func addConfigFlags(cmd *cobra.Command, serve bool) *string {
	f := cmd.Flags()
	file := f.String("config", "", "config file (YAML, TOML or JSON)")
	f.String("jwt-secret-file", "", "file with the HMAC secret for HS256/384/512 tokens (auth.jwt.secret_file)")
	if !serve {
		return file
	}
	f.String("listen", "", "client listen address (listen)")
	f.String("admin-listen", "", "admin HTTP listen address (admin.listen)")
	f.String("backend-dsn", "", "PostgreSQL DSN for the application role (backend.dsn)")
	f.String("log-level", "", "log level: trace, debug, info, warn, error (log.level)")
	f.String("log-format", "", "log format: json or console (log.format)")
	return file
}

// loadConfig reads the configuration; validate=false skips the checks a
// command that does not serve does not need.
func loadConfig(cmd *cobra.Command, file string, validate bool) (config.Config, error) {
	// Only flags the user set override; unset ones must not shadow env or file.
	set := map[string]string{}
	cmd.Flags().Visit(func(f *pflag.Flag) {
		if key, ok := configFlags[f.Name]; ok {
			set[f.Name] = key
		}
	})
	if validate {
		return config.Load(file, cmd.Flags(), set)
	}
	return config.Read(file, cmd.Flags(), set)
}
