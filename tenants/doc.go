// Package tenants is pgtenant's tenant registry: the orgs pgtenant serves,
// their status (active, suspended, deprovisioned), per-tenant settings,
// feature flags and pool overrides, their members, and the history of every
// change, all kept in the tenancy schema of the control database
// (policies/registry.sql, installed by policies.Install).
//
// Three parts, for three users:
//
//   - Store reads and writes the registry for the admin API. Every change
//     runs in one transaction that also writes its row of tenancy.org_history
//     naming the actor, so the history is the record of who changed what.
//   - Registry is the proxy's in-memory copy, read on every login without
//     touching the database and kept current through LISTEN/NOTIFY on
//     NotifyChannel, with a periodic full reload as a safety net.
//   - Purge deletes a deprovisioned tenant's rows from the tenant tables of
//     the data database, in small transactions.
//
// Errors that callers act on wrap ErrNotFound, ErrExists,
// ErrVersionConflict, ErrInvalidTransition or ErrInvalid (test with
// errors.Is); their messages say what was wrong.
package tenants
