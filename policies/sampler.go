package policies

import (
	"context"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"
)

// Sampler explains, in the background, a sample of the slow statements the
// proxy saw, as the tenant that ran them, and reports the plans that read a
// tenant table without a tenant-leading index: the same judgment as Plans,
// on real traffic. It never delays a client: Offer drops what it cannot
// take.
type Sampler struct {
	o     SamplerOptions
	queue chan sample

	mu     sync.Mutex
	seen   map[string]time.Time // fingerprint -> when explained
	budget int                  // explains left in this minute
	minute time.Time

	cancel context.CancelFunc
	done   chan struct{}
}

// SamplerOptions configure a Sampler.
type SamplerOptions struct {
	// Connect opens a connection to database as the application role.
	Connect func(ctx context.Context, database string) (*pgx.Conn, error)
	// Selection says which tables are tenant tables; AppRole is the role
	// Connect connects as.
	Selection TableSelection
	AppRole   string
	// Signer signs the tenant context the statements are explained in.
	Signer *Signer
	// Fingerprint normalizes a statement: one of each fingerprint is
	// explained per Every.
	Fingerprint func(sql string) string
	// PerMinute bounds the statements explained per minute (default 6);
	// Every is how long an explained fingerprint is not explained again
	// (default 10 minutes).
	PerMinute int
	Every     time.Duration
	// OnFinding receives each finding, from the Sampler's goroutine.
	OnFinding func(database, org string, f PlanFinding)
	Log       zerolog.Logger
}

type sample struct{ database, org, sql, fingerprint string }

// maxSeen bounds the fingerprints remembered; beyond it those older than
// Every are forgotten. At PerMinute explains a minute it is never reached
// with the defaults.
const maxSeen = 10000

// tablesTTL is how long a database's tenant tables and indexes are trusted
// before they are read again.
const tablesTTL = 5 * time.Minute

// NewSampler starts a Sampler; Close stops it.
func NewSampler(o SamplerOptions) *Sampler {
	if o.PerMinute <= 0 {
		o.PerMinute = 6
	}
	if o.Every <= 0 {
		o.Every = 10 * time.Minute
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Sampler{o: o, queue: make(chan sample, o.PerMinute), seen: map[string]time.Time{}, cancel: cancel, done: make(chan struct{})}
	go s.run(ctx)
	return s
}

// Offer hands a slow statement of org in database to the Sampler. It
// returns at once; the statement is explained unless its fingerprint was
// explained recently, this minute's explains are used up, or the queue is
// full. sql is copied.
func (s *Sampler) Offer(database, org, sql string) {
	fp := s.o.Fingerprint(sql)
	now := time.Now()
	s.mu.Lock()
	if now.Sub(s.minute) >= time.Minute {
		s.minute, s.budget = now, s.o.PerMinute
	}
	if at, ok := s.seen[fp]; s.budget == 0 || ok && now.Sub(at) < s.o.Every {
		s.mu.Unlock()
		return
	}
	s.budget--
	s.seen[fp] = now
	if len(s.seen) > maxSeen {
		for k, at := range s.seen {
			if now.Sub(at) >= s.o.Every {
				delete(s.seen, k)
			}
		}
	}
	s.mu.Unlock()
	select {
	case s.queue <- sample{database: database, org: org, sql: string([]byte(sql)), fingerprint: fp}:
	default:
	}
}

// Close stops the Sampler and closes its connections.
func (s *Sampler) Close() {
	s.cancel()
	<-s.done
}

// dbPlanner is the Sampler's connection to one database and what it knows
// of its tenant tables.
type dbPlanner struct {
	conn   *pgx.Conn
	tables map[string]*planTable
	read   time.Time
}

func (s *Sampler) run(ctx context.Context) {
	defer close(s.done)
	dbs := map[string]*dbPlanner{}
	defer func() {
		for _, p := range dbs {
			p.conn.Close(context.Background())
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case smp := <-s.queue:
			findings, err := s.explain(ctx, dbs, smp)
			if err != nil {
				if ctx.Err() == nil {
					s.o.Log.Debug().Err(err).Str("database", smp.database).Str("fingerprint", smp.fingerprint).Msg("slow query sample: EXPLAIN failed")
				}
				continue
			}
			for _, f := range findings {
				s.o.OnFinding(smp.database, smp.org, f)
			}
		}
	}
}

// explain plans one sample in its tenant's context, in a transaction that
// is rolled back, and judges the plan.
func (s *Sampler) explain(ctx context.Context, dbs map[string]*dbPlanner, smp sample) ([]PlanFinding, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	p := dbs[smp.database]
	if p != nil && p.conn.IsClosed() {
		delete(dbs, smp.database)
		p = nil
	}
	if p == nil {
		conn, err := s.o.Connect(ctx, smp.database)
		if err != nil {
			return nil, err
		}
		p = &dbPlanner{conn: conn}
		dbs[smp.database] = p
	}
	if time.Since(p.read) > tablesTTL {
		_, pts, err := loadPlanTables(ctx, p.conn, s.o.Selection)
		if err != nil {
			return nil, err
		}
		p.tables = map[string]*planTable{}
		for _, pt := range pts {
			p.tables[pt.Schema+"."+pt.Name] = pt
		}
		p.read = time.Now()
	}
	tx, err := p.conn.Begin(ctx)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if err := enterTenant(ctx, tx, s.o.Signer, smp.org, s.o.AppRole); err != nil {
		return nil, err
	}
	plan, err := explainGeneric(ctx, tx, smp.sql)
	if err != nil {
		return nil, err
	}
	return judgePlan(smp.fingerprint, plan, p.tables, s.o.Selection.orgColumn()), nil
}
