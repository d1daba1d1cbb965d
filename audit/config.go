package audit

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5"
)

// Defaults applied by SetDefaults to zero-valued fields.
const (
	DefaultSpoolMaxBytes = 64 << 20
	DefaultQueueSize     = 10000
	DefaultBatchSize     = 500
	DefaultFlushInterval = 200 * time.Millisecond
	// DefaultSpoolDirName is the directory under os.TempDir() that holds the
	// spool when Config.SpoolDir is empty.
	DefaultSpoolDirName = "pgtenant-audit"
)

// Config configures a Log. It is the "audit" section of pgtenant's
// configuration; Validate reports errors with keys under "audit.".
type Config struct {
	// DSN is the control database that holds tenancy.audit_events. Empty
	// means no table: events are only logged and counted, and nothing is
	// spooled.
	DSN string `mapstructure:"dsn"`
	// SpoolDir holds the spool used while the control database is
	// unreachable. One process at a time may use it (Log takes a lock), so
	// instances on one host need one each. Default: os.TempDir() joined with
	// DefaultSpoolDirName; choose a directory that survives reboots to keep
	// spooled events across them.
	SpoolDir string `mapstructure:"spool_dir"`
	// SpoolMaxBytes bounds the size of all spool files together; events that
	// would exceed it are dropped and counted.
	SpoolMaxBytes int64 `mapstructure:"spool_max_bytes"`
	// QueueSize is how many events wait in memory for the writer; Record
	// drops (and counts) events beyond it rather than wait.
	QueueSize int `mapstructure:"queue_size"`
	// BatchSize is the most events written in one INSERT.
	BatchSize int `mapstructure:"batch_size"`
	// FlushInterval is the longest an event waits in memory before its batch
	// is written, and how often the writer retries the database.
	FlushInterval time.Duration `mapstructure:"flush_interval"`
	// Instance names this pgtenant instance in every event it writes.
	// Default: the host name.
	Instance string `mapstructure:"instance"`
}

// SetDefaults replaces zero values with the defaults.
func (c *Config) SetDefaults() {
	if c.SpoolDir == "" {
		c.SpoolDir = filepath.Join(os.TempDir(), DefaultSpoolDirName)
	}
	if c.SpoolMaxBytes == 0 {
		c.SpoolMaxBytes = DefaultSpoolMaxBytes
	}
	if c.QueueSize == 0 {
		c.QueueSize = DefaultQueueSize
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.FlushInterval == 0 {
		c.FlushInterval = DefaultFlushInterval
	}
	if c.Instance == "" {
		c.Instance, _ = os.Hostname()
	}
}

// Validate reports the first invalid value, naming its configuration key.
// Call it after SetDefaults. It touches neither the network nor the disk.
func (c Config) Validate() error {
	if c.DSN != "" {
		if _, err := pgx.ParseConfig(c.DSN); err != nil {
			return fmt.Errorf("audit.dsn: not a valid PostgreSQL URL or keyword/value string%s", dsnErrorCause(err))
		}
	}
	if c.SpoolDir == "" {
		return errors.New("audit.spool_dir must not be empty")
	}
	if c.SpoolMaxBytes < 1 {
		return errors.New("audit.spool_max_bytes must be positive")
	}
	if c.QueueSize < 1 {
		return errors.New("audit.queue_size must be at least 1")
	}
	if c.BatchSize < 1 {
		return errors.New("audit.batch_size must be at least 1")
	}
	if c.FlushInterval <= 0 {
		return errors.New("audit.flush_interval must be positive")
	}
	return nil
}

// dsnErrorCause describes why a DSN did not parse without quoting the DSN,
// which may hold a password: the text of pgx's error and of a URL error both
// contain it.
func dsnErrorCause(err error) string {
	cause := errors.Unwrap(err)
	var ue *url.Error
	if errors.As(cause, &ue) {
		cause = ue.Err
	}
	if cause == nil {
		return ""
	}
	return " (" + cause.Error() + ")"
}
