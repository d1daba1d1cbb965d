// Package policies holds the database side of tenancy: the tenancy schema and
// its signed context, RLS tooling, and the statement guard.
package policies
