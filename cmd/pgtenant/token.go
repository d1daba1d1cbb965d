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
	var roles []string
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "token --org ORG [--sub SUBJECT] [--ttl 1h] | token --role ROLE --sub SUBJECT [--org ORG]",
		Short: "Mint a token for local use, signed with the configured HS256 secret",
		Long: "Mint a JWT for a tenant, signed with auth.jwt.secret or auth.jwt.secret_file, " +
			"and print it alone on stdout. Use it as the password when connecting through pgtenant. " +
			"With --role it mints an admin API token instead, signed with admin.jwt (or auth.jwt) and carrying the roles " +
			"in admin.roles_claim: platform_admin for everything, admin with --org for one organization.",
		Args: cobra.NoArgs,
	}
	file := addConfigFlags(cmd, false)
	cmd.Flags().StringVar(&org, "org", "", "tenant organization id (required)")
	cmd.Flags().StringVar(&sub, "sub", "", "subject (user id) of the token")
	cmd.Flags().StringArrayVar(&roles, "role", nil, "admin API role (platform_admin or admin; repeat for several): mint an admin token")
	cmd.Flags().DurationVar(&ttl, "ttl", time.Hour, "how long the token is valid")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if org == "" && len(roles) == 0 {
			return errors.New("--org is required")
		}
		if len(roles) > 0 && sub == "" {
			return errors.New("--sub is required for an admin token: every change is recorded with it")
		}
		if ttl <= 0 {
			return errors.New("--ttl must be positive")
		}
		cfg, err := loadConfig(cmd, *file, false)
		if err != nil {
			return err
		}
		jwtCfg := cfg.Auth.JWT
		if len(roles) > 0 {
			jwtCfg = cfg.AdminJWT()
		}
		if err := jwtCfg.Validate(); err != nil {
			return err
		}
		orgRe, err := cfg.OrgRegexp()
		if err != nil {
			return err
		}
		if org != "" && !orgRe.MatchString(org) {
			return fmt.Errorf("--org %q does not match tenancy.org_pattern %s", org, orgRe)
		}
		secret, err := jwtCfg.HMACSecret()
		if err != nil {
			return err
		}
		tok, err := auth.Mint(secret, auth.MintClaims{
			Org: org, Subject: sub, TTL: ttl,
			Issuer: jwtCfg.Issuer, Audience: jwtCfg.Audience, OrgClaim: jwtCfg.OrgClaim,
			Roles: roles, RolesClaim: cfg.Admin.RolesClaim,
		})
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(cmd.OutOrStdout(), tok)
		return err
	}
	return cmd
}
