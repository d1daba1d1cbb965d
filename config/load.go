package config

import (
	"fmt"
	"reflect"
	"strings"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
)

// EnvPrefix prefixes environment variables: auth.jwt.secret is read from
// PGTENANT_AUTH_JWT_SECRET.
const EnvPrefix = "PGTENANT"

// Load builds the Config from, in order of precedence, the flags that were
// set, PGTENANT_* environment variables, the config file (YAML, TOML or
// JSON; none when file is empty) and the defaults. flagKeys maps flag names
// in flags to config keys. The result is defaulted and validated.
func Load(file string, flags *pflag.FlagSet, flagKeys map[string]string) (Config, error) {
	c, err := Read(file, flags, flagKeys)
	if err != nil {
		return Config{}, err
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// Read is Load without Validate, for commands that need only part of the
// configuration (pgtenant token needs no backend).
func Read(file string, flags *pflag.FlagSet, flagKeys map[string]string) (Config, error) {
	v := viper.New()
	v.SetEnvPrefix(EnvPrefix)
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()
	// Register every key so that environment variables are seen by Unmarshal.
	for _, k := range Keys() {
		v.SetDefault(k, nil)
	}
	if file != "" {
		v.SetConfigFile(file)
		if err := v.ReadInConfig(); err != nil {
			return Config{}, fmt.Errorf("config file %s: %w", file, err)
		}
	}
	if flags != nil {
		for name, key := range flagKeys {
			if f := flags.Lookup(name); f != nil {
				if err := v.BindPFlag(key, f); err != nil {
					return Config{}, err
				}
			}
		}
	}
	if file != "" {
		if err := checkUnknownKeys(v); err != nil {
			return Config{}, err
		}
	}
	var c Config
	err := v.Unmarshal(&c, func(dc *mapstructure.DecoderConfig) {
		dc.ErrorUnused = true
		dc.ZeroFields = false
	})
	if err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	c.SetDefaults()
	return c, nil
}

// checkUnknownKeys refuses keys in the file that no field reads, which are
// almost always typos.
func checkUnknownKeys(v *viper.Viper) error {
	known := map[string]bool{}
	for _, k := range Keys() {
		known[k] = true
	}
	for _, k := range v.AllKeys() {
		if known[k] || strings.HasPrefix(k, "databases.") || strings.HasPrefix(k, "pool.tenants.") || strings.HasPrefix(k, "pool.database_modes.") ||
			strings.HasPrefix(k, "guard.databases.") || strings.HasPrefix(k, "guard.tenants.") {
			continue
		}
		return fmt.Errorf("config: unknown key %q", k)
	}
	return nil
}

// Keys lists every scalar configuration key (dotted), derived from the
// mapstructure tags of Config. Map-valued keys (databases, pool.tenants)
// are listed by their own name.
func Keys() []string {
	var keys []string
	collectKeys(reflect.TypeOf(Config{}), "", &keys)
	return keys
}

func collectKeys(t reflect.Type, prefix string, keys *[]string) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("mapstructure")
		if tag == "" || tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if opts == "squash" {
			collectKeys(f.Type, prefix, keys)
			continue
		}
		key := prefix + name
		if f.Type.Kind() == reflect.Struct && f.Type.String() != "time.Duration" {
			collectKeys(f.Type, key+".", keys)
			continue
		}
		*keys = append(*keys, key)
	}
}
