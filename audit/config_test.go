package audit

import (
	"strings"
	"testing"
	"time"
)

func TestDefaultsFillEveryZeroField(t *testing.T) {
	var c Config
	c.SetDefaults()
	if c.SpoolDir == "" || c.SpoolMaxBytes != DefaultSpoolMaxBytes || c.QueueSize != DefaultQueueSize ||
		c.BatchSize != DefaultBatchSize || c.FlushInterval != DefaultFlushInterval {
		t.Fatalf("defaults: %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestValidateNamesTheKeyAndNeverTheDSNPassword(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*Config)
		key    string
	}{
		{"unparsable URL", func(c *Config) { c.DSN = "postgres://u:hunter2@host:notaport/db" }, "audit.dsn"},
		{"bad keyword/value", func(c *Config) { c.DSN = "host=x password=hunter2 sslmode=sometimes" }, "audit.dsn"},
		{"negative spool bound", func(c *Config) { c.SpoolMaxBytes = -1 }, "audit.spool_max_bytes"},
		{"negative queue", func(c *Config) { c.QueueSize = -1 }, "audit.queue_size"},
		{"negative batch", func(c *Config) { c.BatchSize = -5 }, "audit.batch_size"},
		{"negative interval", func(c *Config) { c.FlushInterval = -time.Second }, "audit.flush_interval"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Config{}
			c.SetDefaults()
			tc.mutate(&c)
			err := c.Validate()
			if err == nil || !strings.HasPrefix(err.Error(), tc.key) {
				t.Fatalf("got %v, want an error naming %s", err, tc.key)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("the error shows the password: %v", err)
			}
		})
	}
}
