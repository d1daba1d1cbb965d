package tenants

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/rs/zerolog"
)

// NotifyChannel is the channel the triggers of tenancy.orgs and
// tenancy.org_members notify on every change, with the org id as payload.
// A notification without payload makes every Registry reload all orgs.
const NotifyChannel = "pgtenant_registry"

// DefaultReloadInterval is how often a Registry reloads every org when
// RegistryOptions.ReloadInterval is 0.
const DefaultReloadInterval = 30 * time.Second

// Tuning of the Registry's connection to the control database.
const (
	// minReconnectDelay and maxReconnectDelay bound the backoff between
	// attempts to reconnect the listening connection.
	minReconnectDelay = 100 * time.Millisecond
	maxReconnectDelay = 10 * time.Second
	// notifyBatchWait is how long the Registry waits for more
	// notifications after one, to reload the orgs of a burst together.
	notifyBatchWait = 10 * time.Millisecond
	// maxPartialReload is the most orgs reloaded one by one; a burst that
	// changes more gets a full reload.
	maxPartialReload = 500
	// loadTimeout bounds one load, full or partial.
	loadTimeout = 30 * time.Second
	// registryApplicationName is the application_name of the Registry's
	// connection, unless the DSN sets one.
	registryApplicationName = "pgtenant registry"
)

// RegistryOptions configure OpenRegistry.
type RegistryOptions struct {
	// DSN is the control database, as a role that can read tenancy.orgs
	// and tenancy.org_members.
	DSN string
	// ReloadInterval is how often every org is reloaded, a safety net for
	// lost notifications; DefaultReloadInterval when 0.
	ReloadInterval time.Duration
	// Log receives the Registry's events; the zero Logger writes nothing.
	Log zerolog.Logger
	// OnChange, when set, is called for every org whose record changed,
	// was added (old nil) or was removed (new nil), whether a notification
	// or a reload found it; not for the orgs of the first load. Calls come
	// from one goroutine, in order; a slow OnChange delays the next
	// changes, and OnChange must not call Close.
	OnChange func(old, new *Org)
}

// RegistryStats are the Registry's cumulative counters, for metrics.
type RegistryStats struct {
	// Reloads counts the successful loads, full or of some orgs.
	Reloads int64
	// ReloadErrors counts the loads that failed.
	ReloadErrors int64
	// NotifyErrors counts the losses of the listening connection and the
	// failed attempts to reconnect it.
	NotifyErrors int64
}

// Registry is the proxy's in-memory copy of the tenant registry: every org,
// and the active members of the orgs that require membership. It is kept
// current through LISTEN/NOTIFY on NotifyChannel and reloaded in full every
// ReloadInterval and after the listening connection is lost.
//
// A Registry owns one connection to the control database and one goroutine;
// Close stops both. Its methods are safe for concurrent use. The Orgs it
// returns share their Flags map and Pool pointers with the Registry's copy:
// read them, never modify them.
type Registry struct {
	log      zerolog.Logger
	config   *pgx.ConnConfig
	interval time.Duration
	onChange func(old, new *Org)

	cancel    context.CancelFunc
	done      chan struct{}
	closeOnce sync.Once

	lastLoad                            atomic.Pointer[time.Time]
	reloads, reloadErrors, notifyErrors atomic.Int64

	mu struct {
		sync.RWMutex
		orgs map[string]Org
		// members maps an org that requires membership to its active
		// members' subjects and their roles.
		members map[string]map[string]string
	}
}

// OpenRegistry connects to the control database, loads every org and the
// members of the orgs that require membership, and starts keeping the copy
// current: on a notification it reloads that org and its members; when the
// listening connection drops it reconnects with backoff and reloads
// everything (logging once per outage); every ReloadInterval it reloads
// everything. ctx bounds the opening only. It returns an error only when
// the first load fails. The caller must Close the Registry.
func OpenRegistry(ctx context.Context, o RegistryOptions) (*Registry, error) {
	r, err := newRegistry(o)
	if err != nil {
		return nil, err
	}
	conn, err := r.listen(ctx)
	if err != nil {
		return nil, fmt.Errorf("tenant registry: %w", err)
	}
	if _, err := r.reload(ctx, conn, nil); err != nil {
		conn.Close(context.WithoutCancel(ctx))
		if pe := pgError(err); pe != nil && pe.Code == "42501" {
			return nil, fmt.Errorf("tenant registry: the first load failed: %w; connect as the owner of the tenancy schema "+
				"or GRANT SELECT ON tenancy.orgs, tenancy.org_members and USAGE ON SCHEMA tenancy to the DSN's role", err)
		}
		return nil, fmt.Errorf("tenant registry: the first load failed: %w", err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go r.run(runCtx, conn)
	return r, nil
}

// newRegistry checks o and returns a Registry with an empty copy, not
// connected.
func newRegistry(o RegistryOptions) (*Registry, error) {
	config, err := pgx.ParseConfig(o.DSN)
	if err != nil {
		return nil, fmt.Errorf("tenant registry: the control database DSN does not parse: %w", err)
	}
	if _, ok := config.RuntimeParams["application_name"]; !ok {
		config.RuntimeParams["application_name"] = registryApplicationName
	}
	if o.ReloadInterval < 0 {
		return nil, fmt.Errorf("tenant registry: the reload interval is %s: use a positive duration (0 for %s)", o.ReloadInterval, DefaultReloadInterval)
	}
	r := &Registry{
		log:      o.Log,
		config:   config,
		interval: o.ReloadInterval,
		onChange: o.OnChange,
		done:     make(chan struct{}),
	}
	if r.interval == 0 {
		r.interval = DefaultReloadInterval
	}
	r.mu.orgs = map[string]Org{}
	r.mu.members = map[string]map[string]string{}
	return r, nil
}

// Lookup returns the org with that id.
func (r *Registry) Lookup(id string) (Org, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	o, ok := r.mu.orgs[id]
	return o, ok
}

// Member reports whether subject is an active member of the org, and its
// role. The Registry holds the members of the orgs that require membership
// only: for the others it reports false.
func (r *Registry) Member(orgID, subject string) (role string, ok bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	role, ok = r.mu.members[orgID][subject]
	return role, ok
}

// Counts returns how many orgs have each status, every status present.
func (r *Registry) Counts() map[Status]int {
	counts := map[Status]int{StatusActive: 0, StatusSuspended: 0, StatusDeprovisioned: 0}
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, o := range r.mu.orgs {
		counts[o.Status]++
	}
	return counts
}

// LastLoad returns the time of the last successful load, full or partial.
func (r *Registry) LastLoad() time.Time {
	if t := r.lastLoad.Load(); t != nil {
		return *t
	}
	return time.Time{}
}

// Stats returns the cumulative counters.
func (r *Registry) Stats() RegistryStats {
	return RegistryStats{
		Reloads:      r.reloads.Load(),
		ReloadErrors: r.reloadErrors.Load(),
		NotifyErrors: r.notifyErrors.Load(),
	}
}

// Close stops the Registry's goroutine and closes its connection, and
// returns once both are done. Lookups keep answering from the last copy.
// Close is idempotent.
func (r *Registry) Close() {
	r.closeOnce.Do(func() {
		r.cancel()
		<-r.done
	})
}

// run keeps the copy current on conn until ctx ends, reconnecting when
// the connection is lost. It owns conn and closes it.
func (r *Registry) run(ctx context.Context, conn *pgx.Conn) {
	defer close(r.done)
	for {
		err := r.follow(ctx, conn)
		conn.Close(context.Background())
		if ctx.Err() != nil {
			return
		}
		lost := time.Now()
		r.log.Warn().Err(err).Msg("tenant registry: lost the connection to the control database; serving the last copy while reconnecting")
		if conn = r.reconnect(ctx); conn == nil {
			return
		}
		r.log.Info().Dur("outage", time.Since(lost)).Msg("tenant registry: reconnected to the control database and reloaded every org")
	}
}

// follow applies the notifications that arrive on conn and reloads every
// org each interval, even when notifications never stop. It returns when
// ctx ends, the connection fails or a load fails.
func (r *Registry) follow(ctx context.Context, conn *pgx.Conn) error {
	next := time.Now().Add(r.interval)
	for {
		if !time.Now().Before(next) {
			if err := r.reloadAndNotify(ctx, conn, nil); err != nil {
				return err
			}
			next = time.Now().Add(r.interval)
		}
		waitCtx, cancel := context.WithDeadline(ctx, next)
		n, err := conn.WaitForNotification(waitCtx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err == nil:
			if err := r.reloadNotified(ctx, conn, n.Payload); err != nil {
				return err
			}
		case !pgconn.Timeout(err) || conn.IsClosed():
			r.notifyErrors.Add(1)
			return fmt.Errorf("waiting for notifications: %w", err)
		}
	}
}

// reloadNotified reloads the org first names, with those of the
// notifications that follow it within notifyBatchWait. A burst of more than
// maxPartialReload orgs, or a notification without payload (an operator's
// NOTIFY pgtenant_registry), gets a full reload.
func (r *Registry) reloadNotified(ctx context.Context, conn *pgx.Conn, first string) error {
	ids := map[string]struct{}{first: {}}
	for len(ids) <= maxPartialReload {
		waitCtx, cancel := context.WithTimeout(ctx, notifyBatchWait)
		n, err := conn.WaitForNotification(waitCtx)
		cancel()
		if err != nil {
			if ctx.Err() == nil && pgconn.Timeout(err) && !conn.IsClosed() {
				break
			}
			r.notifyErrors.Add(1)
			return fmt.Errorf("waiting for notifications: %w", err)
		}
		ids[n.Payload] = struct{}{}
	}
	var some []string
	if _, all := ids[""]; !all && len(ids) <= maxPartialReload {
		some = make([]string, 0, len(ids))
		for id := range ids {
			some = append(some, id)
		}
	}
	return r.reloadAndNotify(ctx, conn, some)
}

// reconnect opens a new listening connection and reloads every org,
// retrying with backoff until it succeeds (returning the connection) or ctx
// ends (returning nil).
func (r *Registry) reconnect(ctx context.Context) *pgx.Conn {
	delay := minReconnectDelay
	for {
		conn, err := r.listen(ctx)
		if err == nil {
			if err = r.reloadAndNotify(ctx, conn, nil); err == nil {
				return conn
			}
			conn.Close(context.Background())
		} else {
			r.notifyErrors.Add(1)
		}
		if ctx.Err() != nil {
			return nil
		}
		r.log.Debug().Err(err).Dur("retry_in", delay).Msg("tenant registry: reconnecting failed")
		// Up to half the delay again, so proxies do not reconnect in step.
		timer := time.NewTimer(delay + rand.N(delay/2+1))
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-timer.C:
		}
		delay = min(2*delay, maxReconnectDelay)
	}
}

// listen connects to the control database and listens on NotifyChannel.
func (r *Registry) listen(ctx context.Context) (*pgx.Conn, error) {
	conn, err := pgx.ConnectConfig(ctx, r.config)
	if err != nil {
		return nil, fmt.Errorf("connecting to the control database: %w", err)
	}
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{NotifyChannel}.Sanitize()); err != nil {
		conn.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("listening on %s: %w", NotifyChannel, err)
	}
	return conn, nil
}

// reloadAndNotify is reload followed by OnChange for each change.
func (r *Registry) reloadAndNotify(ctx context.Context, conn *pgx.Conn, ids []string) error {
	changes, err := r.reload(ctx, conn, ids)
	if err != nil {
		return err
	}
	for _, c := range changes {
		r.log.Debug().Str("tenant", c.id).Msg("tenant registry: org changed")
		if r.onChange != nil {
			r.onChange(c.old, c.new)
		}
	}
	return nil
}

// reload loads the orgs ids names (every org when ids is nil) with their
// members, replaces them in the copy and returns what changed.
func (r *Registry) reload(ctx context.Context, conn *pgx.Conn, ids []string) ([]orgChange, error) {
	ctx, cancel := context.WithTimeout(ctx, loadTimeout)
	defer cancel()
	orgs, members, err := loadOrgs(ctx, conn, ids)
	if err != nil {
		r.reloadErrors.Add(1)
		return nil, fmt.Errorf("loading the orgs: %w", err)
	}
	r.reloads.Add(1)
	now := time.Now()
	r.lastLoad.Store(&now)
	return r.replace(orgs, members, ids), nil
}

// orgChange is one org's record before and after a load; nil when absent.
type orgChange struct {
	id       string
	old, new *Org
}

// replace puts the loaded orgs and members in place of those of ids (all
// when ids is nil) and returns the orgs whose record changed.
func (r *Registry) replace(orgs map[string]Org, members map[string]map[string]string, ids []string) []orgChange {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ids == nil {
		ids = make([]string, 0, len(orgs)+len(r.mu.orgs))
		for id := range r.mu.orgs {
			ids = append(ids, id)
		}
		for id := range orgs {
			if _, ok := r.mu.orgs[id]; !ok {
				ids = append(ids, id)
			}
		}
	}
	var changes []orgChange
	for _, id := range ids {
		old, hadOld := r.mu.orgs[id]
		o, hasNew := orgs[id]
		if hasNew {
			r.mu.orgs[id] = o
		} else {
			delete(r.mu.orgs, id)
		}
		if m, ok := members[id]; ok {
			r.mu.members[id] = m
		} else {
			delete(r.mu.members, id)
		}
		if hadOld == hasNew && (!hasNew || reflect.DeepEqual(old, o)) {
			continue
		}
		c := orgChange{id: id}
		if hadOld {
			c.old = &old
		}
		if hasNew {
			c.new = &o
		}
		changes = append(changes, c)
	}
	return changes
}

// Queries of loadOrgs: every org, or those of an id list.
const (
	loadOrgsSQL    = "SELECT " + orgColumns + " FROM tenancy.orgs"
	loadMembersSQL = `
		SELECT m.org_id, m.subject, m.role
		FROM tenancy.org_members m JOIN tenancy.orgs o ON o.id = m.org_id
		WHERE m.status = 'active' AND o.settings @> '{"require_membership": true}'`
)

// loadOrgs reads the orgs ids names (all when nil) and the active members
// of those that require membership, in one snapshot.
func loadOrgs(ctx context.Context, conn *pgx.Conn, ids []string) (map[string]Org, map[string]map[string]string, error) {
	orgsSQL, membersSQL, args := loadOrgsSQL, loadMembersSQL, []any(nil)
	if ids != nil {
		orgsSQL += " WHERE id = ANY($1)"
		membersSQL += " AND m.org_id = ANY($1)"
		args = []any{ids}
	}
	orgs := map[string]Org{}
	members := map[string]map[string]string{}
	err := pgx.BeginTxFunc(ctx, conn, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, orgsSQL, args...)
		if err != nil {
			return err
		}
		list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Org, error) { return scanOrg(r) })
		if err != nil {
			return err
		}
		for _, o := range list {
			orgs[o.ID] = o
		}
		rows, err = tx.Query(ctx, membersSQL, args...)
		if err != nil {
			return err
		}
		var org, subject, role string
		_, err = pgx.ForEachRow(rows, []any{&org, &subject, &role}, func() error {
			if members[org] == nil {
				members[org] = map[string]string{}
			}
			members[org][subject] = role
			return nil
		})
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	// An org that requires membership and has no active member admits
	// nobody: keep an empty set so the distinction is visible.
	for id, o := range orgs {
		if o.Settings.RequireMembership && members[id] == nil {
			members[id] = map[string]string{}
		}
	}
	return orgs, members, nil
}

// Each calls fn with every org, in no particular order, under the
// Registry's read lock: fn must not call the Registry.
func (r *Registry) Each(fn func(Org)) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, o := range r.mu.orgs {
		fn(o)
	}
}
