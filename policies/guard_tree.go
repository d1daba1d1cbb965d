package policies

import (
	"encoding/json"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// The guard reads libpg_query's parse tree in its JSON form, which libpg_query
// produces several times faster than the protobuf form, and walks it without
// decoding it into Go values. pg_query.proto is the map: it says which
// message type every field holds, so that typed fields (CopyStmt.relation,
// CallStmt.funccall, AlterRoleSetStmt.setstmt ...) are recognised as well as
// the Node wrappers ({"FuncCall": {...}}). A key the schema does not know
// fails the walk, and the statement is blocked as too_complex: the guard
// never skips what it cannot read.

// messageInfo is what the walker needs to know about a message type.
type messageInfo struct {
	d      protoreflect.MessageDescriptor
	fields map[string]protoreflect.FieldDescriptor // by C (JSON) and proto name
	entry  ruleID                                  // applies whatever the contents
}

var (
	messages     = map[protoreflect.MessageDescriptor]*messageInfo{}
	messagesByPB = map[string]*messageInfo{} // by message name, for Node wrappers
	nodeDesc     = (&pg.Node{}).ProtoReflect().Descriptor()
	resultDesc   = (&pg.ParseResult{}).ProtoReflect().Descriptor()
)

func init() {
	msgs := pg.File_pg_query_proto.Messages()
	for i := 0; i < msgs.Len(); i++ {
		d := msgs.Get(i)
		info := &messageInfo{d: d, fields: map[string]protoreflect.FieldDescriptor{}, entry: stmtRules[d]}
		fields := d.Fields()
		for j := 0; j < fields.Len(); j++ {
			fd := fields.Get(j)
			info.fields[string(fd.Name())] = fd
			info.fields[fd.JSONName()] = fd
		}
		messages[d] = info
		messagesByPB[string(d.Name())] = info
	}
}

// Message types whose contents rules look at.
var (
	descString      = (&pg.String{}).ProtoReflect().Descriptor()
	descInteger     = (&pg.Integer{}).ProtoReflect().Descriptor()
	descFloat       = (&pg.Float{}).ProtoReflect().Descriptor()
	descBoolean     = (&pg.Boolean{}).ProtoReflect().Descriptor()
	descBitString   = (&pg.BitString{}).ProtoReflect().Descriptor()
	descAConst      = (&pg.A_Const{}).ProtoReflect().Descriptor()
	descRangeVar    = (&pg.RangeVar{}).ProtoReflect().Descriptor()
	descFuncCall    = (&pg.FuncCall{}).ProtoReflect().Descriptor()
	descVariableSet = (&pg.VariableSetStmt{}).ProtoReflect().Descriptor()
	descCopy        = (&pg.CopyStmt{}).ProtoReflect().Descriptor()
	descDiscard     = (&pg.DiscardStmt{}).ProtoReflect().Descriptor()
	descTransaction = (&pg.TransactionStmt{}).ProtoReflect().Descriptor()
	descInsert      = (&pg.InsertStmt{}).ProtoReflect().Descriptor()
	descUpdate      = (&pg.UpdateStmt{}).ProtoReflect().Descriptor()
	descDelete      = (&pg.DeleteStmt{}).ProtoReflect().Descriptor()
	descMerge       = (&pg.MergeStmt{}).ProtoReflect().Descriptor()
	objectStmtDescs = func() map[protoreflect.MessageDescriptor]bool {
		m := map[protoreflect.MessageDescriptor]bool{}
		for _, msg := range objectStmts {
			m[msg.ProtoReflect().Descriptor()] = true
		}
		return m
	}()
)

// frame collects, while the walker is inside one message, the fields its
// rule needs.
type frame struct {
	text    string // String, Integer ... value; RangeVar.relname; FuncCall or VariableSetStmt name; DML target
	escaped bool   // text had JSON escapes, so it holds a quote, backslash or control character
	enum    string // the kind, target or object type
	flag    bool   // CopyStmt.is_program, A_Const.isnull
	file    string // CopyStmt.filename
	value   constant
	args    [2]constant
	nargs   int
}

// treeWalker walks one JSON parse tree and remembers the first enabled rule
// it hits.
type treeWalker struct {
	g    *Guard
	s    string
	i    int
	rule ruleID
	bad  bool // the text did not match the schema
}

// check walks the parse tree json and returns the rule that blocks it.
func (g *Guard) checkTree(json string) ruleID {
	w := treeWalker{g: g, s: json}
	w.message(messages[resultDesc])
	if w.bad && w.rule == allowed {
		return ruleTooComplex
	}
	return w.rule
}

func (w *treeWalker) block(r ruleID) {
	if r != allowed && w.g.enabled[r] && w.rule == allowed {
		w.rule = r
	}
}

func (w *treeWalker) stop() bool { return w.rule != allowed || w.bad }

// message walks one JSON object of message type info and returns what its
// parent's rule needs to know of it, as a constant.
func (w *treeWalker) message(info *messageInfo) constant {
	if info.d == nodeDesc {
		return w.node()
	}
	w.block(info.entry)
	var f frame
	if !w.consume('{') {
		return constant{}
	}
	for !w.stop() && !w.consume('}') {
		if w.s[w.i-1] != '{' && !w.consume(',') {
			return constant{}
		}
		key, _ := w.str()
		fd := info.fields[key]
		if fd == nil || !w.consume(':') {
			w.bad = true
			return constant{}
		}
		switch {
		case fd.Kind() != protoreflect.MessageKind:
			v, escaped := w.scalar()
			f.scalar(info.d, fd, v, escaped)
		case fd.IsList():
			if !w.consume('[') {
				return constant{}
			}
			child := messages[fd.Message()]
			for n := 0; !w.stop() && !w.consume(']'); n++ {
				if n > 0 && !w.consume(',') {
					return constant{}
				}
				f.child(info.d, fd, n, w.message(child))
			}
		default:
			f.child(info.d, fd, 0, w.message(messages[fd.Message()]))
		}
	}
	if w.stop() {
		return constant{}
	}
	return w.exit(info.d, &f)
}

// node walks a Node wrapper: {"TypeName": {...}}.
func (w *treeWalker) node() constant {
	if !w.consume('{') {
		return constant{}
	}
	name, _ := w.str()
	info := messagesByPB[name]
	if info == nil || !w.consume(':') {
		w.bad = true
		return constant{}
	}
	c := w.message(info)
	if !w.stop() && !w.consume('}') {
		w.bad = true
	}
	return c
}

// scalar records a scalar field the rule of message d needs.
func (f *frame) scalar(d protoreflect.MessageDescriptor, fd protoreflect.FieldDescriptor, v string, escaped bool) {
	switch d {
	case descString, descInteger, descFloat, descBoolean, descBitString:
		f.text, f.escaped = v, escaped
	case descAConst:
		if fd.Name() == "isnull" {
			f.flag = v == "true"
		}
	case descRangeVar:
		if fd.Name() == "relname" {
			f.text, f.escaped = v, escaped
		}
	case descVariableSet:
		switch fd.Name() {
		case "kind":
			f.enum = v
		case "name":
			f.text, f.escaped = v, escaped
		}
	case descCopy:
		switch fd.Name() {
		case "is_program":
			f.flag = v == "true"
		case "filename":
			f.file = v
		}
	default:
		if fd.Kind() == protoreflect.EnumKind && (d == descDiscard || d == descTransaction || objectStmtDescs[d]) {
			switch fd.Name() {
			case "target", "kind", "remove_type", "rename_type", "object_type":
				f.enum = v
			}
		}
	}
}

// child records what the rule of message d needs of its child c, the n-th
// element of field fd.
func (f *frame) child(d protoreflect.MessageDescriptor, fd protoreflect.FieldDescriptor, n int, c constant) {
	switch d {
	case descAConst: // its value: sval, ival, fval, boolval or bsval
		f.value, f.value.quoted = c, fd.Name() == "sval"
	case descFuncCall:
		switch fd.Name() {
		case "funcname":
			f.text = c.text // the last part is the function's name
		case "args":
			if n < len(f.args) {
				f.args[n] = c
			}
			f.nargs++
		}
	case descVariableSet:
		if fd.Name() == "args" {
			if n == 0 {
				f.value = c
			}
			f.nargs++
		}
	case descInsert, descUpdate, descDelete, descMerge:
		if fd.Name() == "relation" {
			f.text = c.text
		}
	}
}

// exit applies the rule of message d, now that f holds its fields, and
// returns what its parent needs to know of it.
func (w *treeWalker) exit(d protoreflect.MessageDescriptor, f *frame) constant {
	switch d {
	case descString, descFloat, descBitString:
		return constant{text: f.text, literal: !f.escaped}
	case descInteger:
		return constant{text: defaultTo(f.text, "0"), literal: true}
	case descBoolean:
		return constant{text: defaultTo(f.text, "false"), literal: true}
	case descAConst:
		v := f.value
		v.literal = v.literal && !f.flag
		return v
	case descRangeVar:
		w.block(relRule(f.text))
		return constant{text: f.text}
	case descFuncCall:
		w.block(w.g.funcRule(f.text, f.args, f.nargs))
	case descVariableSet:
		name := f.text
		if f.escaped {
			name = "\\" // not a plain setting name
		}
		w.block(w.g.setStmtRule(f.enum, name, f.value, f.nargs))
	case descCopy:
		w.block(copyRule(f.flag, f.file))
	case descDiscard:
		if f.enum == discardAll {
			w.block(ruleDiscardAll)
		}
	case descTransaction:
		if f.enum == commitPrepared || f.enum == rollbackPrepared {
			w.block(ruleOtherSessions) // prepared transactions' names are global
		}
	case descInsert, descUpdate, descDelete, descMerge:
		w.block(settingsViewRule(f.text))
	default:
		if objectStmtDescs[d] {
			w.block(objectRule(f.enum))
		}
	}
	return constant{}
}

func defaultTo(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// consume skips c, or marks the walk bad.
func (w *treeWalker) consume(c byte) bool {
	if w.i < len(w.s) && w.s[w.i] == c {
		w.i++
		return true
	}
	if c != '}' && c != ']' { // those two are only probed for
		w.bad = true
	}
	return false
}

// str reads a JSON string and returns its contents, unescaped; escaped
// reports that they hold a quote, backslash or control character (which
// makes a setting name or value not plain). The tree escapes those, and
// also <, > and & (as \u003c ...), which are plain.
func (w *treeWalker) str() (text string, escaped bool) {
	if !w.consume('"') {
		return "", false
	}
	start := w.i
	for w.i < len(w.s) {
		switch w.s[w.i] {
		case '\\':
			escaped = true
			w.i += 2
		case '"':
			w.i++
			raw := w.s[start : w.i-1]
			if !escaped {
				return raw, false
			}
			if err := json.Unmarshal([]byte(w.s[start-1:w.i]), &text); err != nil {
				w.bad = true
				return "", false
			}
			return text, strings.ContainsFunc(text, func(r rune) bool { return r == '"' || r == '\\' || r < 0x20 })
		default:
			w.i++
		}
	}
	w.bad = true
	return "", false
}

// scalar reads a string, number, true, false or null.
func (w *treeWalker) scalar() (raw string, escaped bool) {
	if w.i < len(w.s) && w.s[w.i] == '"' {
		return w.str()
	}
	start := w.i
	for w.i < len(w.s) && strings.IndexByte(",}]", w.s[w.i]) < 0 {
		w.i++
	}
	if w.i == start {
		w.bad = true
	}
	return w.s[start:w.i], false
}
