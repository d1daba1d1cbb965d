package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pgtenant/pgtenant/auth"
	"github.com/pgtenant/pgtenant/config"
)

func newTokenCmd() *cobra.Command {
	var org, sub string
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "token --org ORG [--sub SUBJECT] [--ttl 1h]",
		Short: "Mint a token for local use, signed with the configured HS256 secret",
		Long: "Mint a JWT for a tenant, signed with auth.jwt.secret or auth.jwt.secret_file, " +
			"and print it alone on stdout. Use it as the password when connecting through pgtenant.",
		Args: cobra.NoArgs,
	}
	file := addConfigFlags(cmd)
	cmd.Flags().StringVar(&org, "org", "", "tenant organization id (required)")
	cmd.Flags().StringVar(&sub, "sub", "", "subject (user id) of the token")
	cmd.Flags().DurationVar(&ttl, "ttl", time.Hour, "how long the token is valid")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if org == "" {
			return errors.New("--org is required")
		}
		if ttl <= 0 {
			return errors.New("--ttl must be positive")
		}
		jwtCfg, orgRe, err := tokenConfig(cmd, *file)
		if err != nil {
			return err
		}
		if !orgRe.MatchString(org) {
			return fmt.Errorf("--org %q does not match tenancy.org_pattern %s", org, orgRe)
		}
		secret, err := hmacSecret(jwtCfg)
		if err != nil {
			return err
		}
		tok, err := auth.Mint(secret, auth.MintClaims{
			Org: org, Subject: sub, TTL: ttl,
			Issuer: jwtCfg.Issuer, Audience: jwtCfg.Audience, OrgClaim: jwtCfg.OrgClaim,
		})
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(cmd.OutOrStdout(), tok)
		return err
	}
	return cmd
}

// tokenConfig loads the parts of the configuration minting needs. The token
// command works without a backend.dsn, so it does not require a valid proxy
// configuration.
func tokenConfig(cmd *cobra.Command, file string) (auth.JWTConfig, interface{ MatchString(string) bool }, error) {
	cfg, err := loadConfig(cmd, file)
	if err == nil {
		re, err := cfg.OrgRegexp()
		return cfg.Auth.JWT, re, err
	}
	if !strings.Contains(err.Error(), "backend.dsn is required") {
		return auth.JWTConfig{}, nil, err
	}
	// Without a backend the full validation fails; reload with a placeholder.
	os.Setenv(config.EnvPrefix+"_BACKEND_DSN", "postgres://localhost/placeholder")
	defer os.Unsetenv(config.EnvPrefix + "_BACKEND_DSN")
	cfg, err = loadConfig(cmd, file)
	if err != nil {
		return auth.JWTConfig{}, nil, err
	}
	re, err := cfg.OrgRegexp()
	return cfg.Auth.JWT, re, err
}

func hmacSecret(c auth.JWTConfig) ([]byte, error) {
	switch {
	case c.Secret != "":
		return []byte(c.Secret), nil
	case c.SecretFile != "":
		b, err := os.ReadFile(c.SecretFile)
		if err != nil {
			return nil, fmt.Errorf("auth.jwt.secret_file: %w", err)
		}
		return []byte(strings.TrimRight(string(b), "\r\n")), nil
	}
	return nil, errors.New("pgtenant token signs with HS256: set auth.jwt.secret_file or PGTENANT_AUTH_JWT_SECRET")
}
