package policies

import (
	"strconv"
	"strings"
	"testing"

	pg "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// FuzzGuard checks that Check never panics and is deterministic, that the
// pre-check never lets through a text the full parse blocks, and that the
// JSON tree walker agrees with an independent walk of the decoded protobuf
// tree.
func FuzzGuard(f *testing.F) {
	for _, c := range guardCases {
		f.Add(c.sql)
	}
	g, err := NewGuard(GuardConfig{BlockAdvisoryLocks: true})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		full := g.classify(sql)
		if precheckAllows(sql) && full != allowed && full != ruleTooComplex {
			t.Fatalf("the pre-check allows %q, the parse blocks it (%s)", sql, rules[full].name)
		}
		first, again := g.Check(sql), g.Check(sql)
		if first != again || first != verdicts[full] && !(first == Verdict{} && precheckAllows(sql)) {
			t.Fatalf("Check(%q) = %q then %q, full parse %q", sql, first.Rule, again.Rule, rules[full].name)
		}
		if full == ruleTooComplex {
			return
		}
		if ref, ok := g.decodedTreeRule(sql); ok && (ref == allowed) != (full == allowed) {
			t.Fatalf("%q: the JSON walker says %q, the decoded tree %q", sql, rules[full].name, rules[ref].name)
		}
	})
}

func TestTheJSONWalkerAgreesWithTheDecodedTree(t *testing.T) {
	t.Parallel()
	g := newTestGuard(t, GuardConfig{BlockAdvisoryLocks: true})
	for _, c := range guardCases {
		full := g.classify(c.sql)
		ref, ok := g.decodedTreeRule(c.sql)
		if !ok {
			continue
		}
		if full != ref {
			t.Errorf("%q: the JSON walker says %q, the decoded tree %q", c.sql, rules[full].name, rules[ref].name)
		}
	}
}

// decodedTreeRule classifies sql the slow, independent way: libpg_query's
// protobuf tree decoded into Go values and walked in pre-order by
// reflection, with the same rule functions. ok is false when the text does
// not parse.
func (g *Guard) decodedTreeRule(sql string) (r ruleID, ok bool) {
	tree, err := pg.Parse(sql)
	if err != nil {
		return allowed, false
	}
	var walk func(m protoreflect.Message)
	walk = func(m protoreflect.Message) {
		if id := g.decodedNodeRule(m.Interface()); id != allowed && g.enabled[id] {
			r = id
			return
		}
		m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			switch {
			case fd.Kind() != protoreflect.MessageKind:
			case fd.IsList():
				for i := 0; i < v.List().Len() && r == allowed; i++ {
					walk(v.List().Get(i).Message())
				}
			default:
				walk(v.Message())
			}
			return r == allowed
		})
	}
	walk(tree.ProtoReflect())
	return r, true
}

func (g *Guard) decodedNodeRule(m proto.Message) ruleID {
	switch n := m.(type) {
	case *pg.FuncCall:
		var args [2]constant
		for i := 0; i < len(n.Args) && i < len(args); i++ {
			args[i] = decodedConstant(n.Args[i])
		}
		return g.funcRule(n.Funcname[len(n.Funcname)-1].GetString_().GetSval(), args, len(n.Args))
	case *pg.RangeVar:
		return relRule(n.Relname)
	case *pg.VariableSetStmt:
		var value constant
		if len(n.Args) > 0 {
			value = decodedConstant(n.Args[0])
		}
		name := n.Name
		if jsonEscapes(name) {
			name = "\\"
		}
		return g.setStmtRule(n.Kind.String(), name, value, len(n.Args))
	case *pg.CopyStmt:
		return copyRule(n.IsProgram, n.Filename)
	case *pg.DiscardStmt:
		if n.Target.String() == discardAll {
			return ruleDiscardAll
		}
	case *pg.TransactionStmt:
		if k := n.Kind.String(); k == commitPrepared || k == rollbackPrepared {
			return ruleOtherSessions
		}
	case *pg.InsertStmt:
		return settingsViewRule(n.Relation.GetRelname())
	case *pg.UpdateStmt:
		return settingsViewRule(n.Relation.GetRelname())
	case *pg.DeleteStmt:
		return settingsViewRule(n.Relation.GetRelname())
	case *pg.MergeStmt:
		return settingsViewRule(n.Relation.GetRelname())
	case *pg.DefineStmt:
		return objectRule(n.Kind.String())
	case *pg.DropStmt:
		return objectRule(n.RemoveType.String())
	case *pg.RenameStmt:
		return objectRule(n.RenameType.String())
	case *pg.AlterObjectSchemaStmt:
		return objectRule(n.ObjectType.String())
	case *pg.AlterOwnerStmt:
		return objectRule(n.ObjectType.String())
	case *pg.AlterObjectDependsStmt:
		return objectRule(n.ObjectType.String())
	default:
		return stmtRules[m.ProtoReflect().Descriptor()]
	}
	return allowed
}

func decodedConstant(n *pg.Node) constant {
	c := n.GetAConst()
	if c == nil || c.Isnull {
		return constant{}
	}
	switch {
	case c.GetSval() != nil:
		s := c.GetSval().Sval
		return constant{text: s, literal: !jsonEscapes(s), quoted: true}
	case c.GetIval() != nil:
		return constant{text: strconv.Itoa(int(c.GetIval().Ival)), literal: true}
	case c.GetFval() != nil:
		return constant{text: c.GetFval().Fval, literal: !jsonEscapes(c.GetFval().Fval)}
	case c.GetBoolval() != nil:
		if c.GetBoolval().Boolval {
			return constant{text: "true", literal: true}
		}
		return constant{text: "false", literal: true}
	case c.GetBsval() != nil:
		return constant{text: c.GetBsval().Bsval, literal: !jsonEscapes(c.GetBsval().Bsval)}
	}
	return constant{}
}

// jsonEscapes reports whether libpg_query escapes something in s when it
// writes JSON.
func jsonEscapes(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return r < ' ' || r == '"' || r == '\\' })
}

// FuzzFingerprint checks that Fingerprint never panics, is deterministic,
// stays within MaxFingerprintLen, and that no literal survives in it.
func FuzzFingerprint(f *testing.F) {
	for _, c := range guardCases {
		f.Add(c.sql)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		fp := Fingerprint(sql)
		if fp != Fingerprint(sql) {
			t.Fatalf("Fingerprint(%q) is not deterministic", sql)
		}
		if len(fp) > MaxFingerprintLen {
			t.Fatalf("Fingerprint(%q) is %d bytes long", sql, len(fp))
		}
		if strings.HasPrefix(fp, "<") && strings.HasSuffix(fp, "statement>") {
			if fp != placeholder("unparsable", sql) && fp != placeholder("too complex", sql) {
				t.Fatalf("Fingerprint(%q) = %q, not a placeholder", sql, fp)
			}
			return
		}
		if strings.HasSuffix(fp, "...") {
			return // cut short: the scanner may see half a token
		}
		res, err := pg.Scan(fp)
		if err != nil {
			return // the scanner may read a kept identifier differently out of context
		}
		for _, tok := range res.Tokens {
			switch tok.Token {
			case pg.Token_SCONST, pg.Token_USCONST, pg.Token_BCONST, pg.Token_XCONST, pg.Token_ICONST, pg.Token_FCONST:
				t.Fatalf("Fingerprint(%q) = %q keeps the literal %q", sql, fp, fp[tok.Start:tok.End])
			}
		}
	})
}
