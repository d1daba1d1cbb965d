// Package auth verifies the JWT a client presents as its PostgreSQL password
// and mints tokens for the `pgtenant token` command.
//
// A [Verifier] holds the keys loaded from [JWTConfig] (an HMAC secret, PEM
// public keys, a JWKS file) and checks a token against the tenancy contract:
//
//   - Every key carries its own algorithm allow-list: an HMAC secret verifies
//     only HS256/384/512, an RSA key only RS256/384/512 and PS256/384/512, an
//     ECDSA key only the ES algorithm of its curve, an Ed25519 key only EdDSA.
//     `alg: none` is always refused, and so is a token that names a known
//     algorithm for a key of another type (algorithm confusion).
//   - A token with a `kid` header is checked only against the keys with that
//     kid; an unknown kid is refused, never retried against the other keys.
//     A token without kid is tried against every key whose type fits its alg.
//     Headers that point at keys (jku, jwk, x5u, x5c) are ignored, and a token
//     with a `crit` header is refused.
//   - `exp`, `nbf` and `iat` are checked with [JWTConfig.Leeway]. A token
//     without `exp` is accepted and never expires: whoever can sign tokens
//     decides their lifetime. [Mint] always writes `exp`.
//   - `iss` and `aud` are required to match when configured.
//   - The org claim (a dotted path is allowed) must be a JSON string that
//     matches the tenant-id pattern.
//
// Every failure is a FATAL *pgerr.Error: SQLSTATE 28P01 when the token itself
// is wrong, 28000 when a valid token does not name a usable organization. The
// Reason of each error is one of the Reason constants. Messages say what to
// fix; they never name the key that matched and never contain the token or a
// secret.
package auth
