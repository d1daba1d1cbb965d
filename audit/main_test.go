package audit

import (
	"testing"

	"github.com/pgtenant/pgtenant/test/testpg"
)

func TestMain(m *testing.M) { testpg.Main(m) }
