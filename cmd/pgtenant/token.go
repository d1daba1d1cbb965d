package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/pgtenant/pgtenant/auth"
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
	file := addConfigFlags(cmd, false)
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
		cfg, err := loadConfig(cmd, *file, false)
		if err != nil {
			return err
		}
		jwtCfg := cfg.Auth.JWT
		if err := jwtCfg.Validate(); err != nil {
			return err
		}
		orgRe, err := cfg.OrgRegexp()
		if err != nil {
			return err
		}
		if !orgRe.MatchString(org) {
			return fmt.Errorf("--org %q does not match tenancy.org_pattern %s", org, orgRe)
		}
		secret, err := jwtCfg.HMACSecret()
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
