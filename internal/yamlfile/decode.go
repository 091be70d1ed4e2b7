package yamlfile

import (
	"encoding"
	"fmt"
	"math"
	"math/big"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/token"

	"github.com/mailchaos/mailchaos/internal/suggest"
)

// Unmarshaler is implemented by types that decode themselves from a YAML
// node, such as small grammars ("> 5000", "300/s") whose mistakes should
// carry a position. n is the value with its anchors, aliases and tags
// resolved; it is never a null (a null leaves the value unchanged). An
// error that is an [*Error], [Errors] or [FieldError] keeps its position
// when it has one (else it gets n's) and its Field is taken as relative to
// the value's path; any other error becomes the message of an *Error at n
// that wraps it.
type Unmarshaler interface {
	UnmarshalYAMLNode(n ast.Node) error
}

// maxDepth bounds how deeply values may nest (only reachable through any
// fields or recursive types).
const maxDepth = 1000

// maxExpansion bounds how many values a document may expand to through
// its aliases, whatever its size.
const maxExpansion = 50_000

// decoder decodes one document. It holds the per-call state, so a Doc can
// be decoded by several goroutines at once.
type decoder struct {
	doc     *Doc
	fields  map[reflect.Type]*fieldSet
	visits  int // values decoded so far, counting each alias expansion
	limit   int // the most values a document may expand to
	depth   int
	stopped bool // the limit was hit: decode nothing more
}

func newDecoder(d *Doc) *decoder {
	return &decoder{doc: d, fields: map[reflect.Type]*fieldSet{}, limit: min(10_000+100*d.nodes, maxExpansion)}
}

// value is a node with what stands around it looked through.
type value struct {
	node ast.Node // the value itself: no anchor, alias, tag or explicit key; nil for an empty value
	tag  string   // the first tag found, such as "!!str", or ""
	at   ast.Node // where errors about the value point: the first alias or tag on the way, or node
}

func (val value) isNull() bool {
	if val.node == nil || val.tag == "!!null" {
		return true
	}
	_, null := val.node.(*ast.NullNode)
	return null
}

// errorf records an error at the position of node at.
func (d *decoder) errorf(errs *Errors, at ast.Node, path, format string, args ...any) *Error {
	e := &Error{File: d.doc.name, Field: path, Msg: fmt.Sprintf(format, args...)}
	e.Line, e.Col = nodePos(at)
	*errs = append(*errs, e)
	return e
}

// enter counts one value to decode at n; false when decoding must stop
// there (the alias expansion budget is spent or the nesting is too deep).
func (d *decoder) enter(n ast.Node, path string, errs *Errors) bool {
	if d.stopped {
		return false
	}
	d.visits++
	if d.visits > d.limit {
		d.stopped = true
		d.errorf(errs, n, path, "the document is too large once its aliases are expanded (more than %d values); decoding stopped here", d.limit)
		return false
	}
	if d.depth >= maxDepth {
		d.errorf(errs, n, path, "values nest more than %d levels deep", maxDepth)
		return false
	}
	return true
}

// resolve looks through the anchors, aliases, tags and explicit keys
// around n. It reports an alias naming no anchor and returns false.
func (d *decoder) resolve(n ast.Node, path string, errs *Errors) (value, bool) {
	var val value
	for i := 0; i < 1000 && !isNil(n); i++ {
		switch x := n.(type) {
		case *ast.AnchorNode:
			n = x.Value
		case *ast.TagNode:
			if val.tag == "" && x.Start != nil {
				val.tag = x.Start.Value
			}
			if val.at == nil {
				val.at = x // the parser misplaces the value after a tag such as !!str by a column
			}
			n = x.Value
		case *ast.MappingKeyNode:
			n = x.Value
		case *ast.AliasNode:
			if val.at == nil {
				val.at = x
			}
			target, ok := d.doc.alias[x]
			if !ok {
				d.errorf(errs, x, path, "alias %s names no anchor defined before it", x.String())
				return val, false
			}
			n = target
		default:
			val.node = n
			if val.at == nil {
				val.at = n
			}
			return val, true
		}
	}
	return val, true
}

// decodeNode decodes n into v, which must be settable, recording every
// mistake in errs with path as the field. A null leaves v unchanged.
func (d *decoder) decodeNode(n ast.Node, v reflect.Value, path string, errs *Errors) {
	if !d.enter(n, path, errs) {
		return
	}
	d.depth++
	defer func() { d.depth-- }()
	val, ok := d.resolve(n, path, errs)
	if !ok || val.isNull() {
		return
	}
	for v.Kind() == reflect.Pointer {
		// A fresh copy: the old value may be a default shared with others.
		nv := reflect.New(v.Type().Elem())
		if !v.IsNil() {
			nv.Elem().Set(v.Elem())
		}
		v.Set(nv)
		v = nv.Elem()
	}
	if v.CanAddr() && v.Addr().CanInterface() {
		switch u := v.Addr().Interface().(type) {
		case Unmarshaler:
			if err := u.UnmarshalYAMLNode(val.node); err != nil {
				d.addFrom(err, val.at, path, errs)
			}
			return
		case encoding.TextUnmarshaler:
			text, ok := scalarText(val.node)
			if !ok && isMapping(val.node) && v.Kind() == reflect.Struct && len(d.fieldsOf(v.Type()).list) > 0 {
				break // the long form: a mapping of the struct's fields
			}
			if !ok {
				d.typeError(val, v.Type(), path, errs)
				return
			}
			if err := u.UnmarshalText([]byte(text)); err != nil {
				d.errorf(errs, val.at, path, "%s", err).cause = err
			}
			return
		}
	}
	if v.Type() == reflect.TypeFor[time.Duration]() {
		d.decodeDuration(val, v, path, errs)
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		d.decodeStruct(val, v, path, errs)
	case reflect.Map:
		d.decodeMap(val, v, path, errs)
	case reflect.Slice, reflect.Array:
		d.decodeList(val, v, path, errs)
	case reflect.Interface:
		if v.NumMethod() != 0 {
			d.errorf(errs, val.at, path, "cannot decode into Go type %s", v.Type())
			return
		}
		if x := d.toAny(val, path, errs); x != nil {
			v.Set(reflect.ValueOf(x))
		} else {
			v.SetZero()
		}
	case reflect.String:
		text, ok := scalarText(val.node)
		if !ok {
			d.typeError(val, v.Type(), path, errs)
			return
		}
		v.SetString(text)
	case reflect.Bool:
		b, ok := val.node.(*ast.BoolNode)
		if !ok || val.tag == "!!str" {
			d.typeError(val, v.Type(), path, errs)
			return
		}
		v.SetBool(b.Value)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		d.decodeInteger(val, v, path, errs)
	case reflect.Float32, reflect.Float64:
		d.decodeFloat(val, v, path, errs)
	default:
		d.errorf(errs, val.at, path, "cannot decode into Go type %s", v.Type())
	}
}

// addFrom records the error of an Unmarshaler (see there for the rules).
func (d *decoder) addFrom(err error, at ast.Node, path string, errs *Errors) {
	var list Errors
	switch e := err.(type) {
	case Errors:
		list = e
	case *Error:
		list = Errors{e}
	case FieldError:
		list = Errors{{Field: e.Field, Msg: e.Msg}}
	default:
		d.errorf(errs, at, path, "%s", err).cause = err
		return
	}
	for _, e := range list {
		if e == nil {
			continue
		}
		c := *e
		if c.File == "" {
			c.File = d.doc.name
		}
		if c.Line == 0 {
			c.Line, c.Col = nodePos(at)
		}
		switch {
		case c.Field == "":
			c.Field = path
		case strings.HasPrefix(c.Field, "["):
			c.Field = path + c.Field
		default:
			c.Field = joinPath(path, c.Field)
		}
		*errs = append(*errs, &c)
	}
}

// typeError records that val cannot be a value of type t.
func (d *decoder) typeError(val value, t reflect.Type, path string, errs *Errors) {
	d.errorf(errs, val.at, path, "cannot use %s here: want %s", describe(val), typeWord(t))
}

// describe names a value the way the file's author sees it.
func describe(val value) string {
	switch val.node.(type) {
	case *ast.MappingNode, *ast.MappingValueNode:
		return "a mapping"
	case *ast.SequenceNode:
		return "a list"
	}
	text, _ := scalarText(val.node)
	if utf8.RuneCountInString(text) > 40 {
		text = string([]rune(text)[:37]) + "..."
	}
	if val.tag != "!!str" {
		switch val.node.(type) {
		case *ast.IntegerNode, *ast.FloatNode, *ast.InfinityNode, *ast.NanNode:
			return "number " + text
		case *ast.BoolNode:
			return "boolean " + text
		}
	}
	return "string " + strconv.Quote(text)
}

// typeWord names a Go type the way a configuration file's author thinks of it.
func typeWord(t reflect.Type) string {
	switch {
	case t == reflect.TypeFor[time.Duration]():
		return "a duration such as 500ms or 30s"
	case reflect.PointerTo(t).Implements(reflect.TypeFor[encoding.TextUnmarshaler]()):
		if longForm(t) {
			return "a string or a mapping"
		}
		return "a string"
	}
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Struct, reflect.Map:
		return "a mapping"
	}
	return t.String()
}

// scalarText is the text of a scalar as written (after unquoting); false
// for anything else.
func scalarText(n ast.Node) (string, bool) {
	switch x := n.(type) {
	case *ast.StringNode:
		return x.Value, true
	case *ast.LiteralNode:
		if x.Value == nil {
			return "", true
		}
		return x.Value.Value, true
	case *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode, *ast.InfinityNode, *ast.NanNode:
		if tk := n.GetToken(); tk != nil {
			return tk.Value, true
		}
	}
	return "", false
}

// number is a number written in a file.
type number struct {
	text  string
	isInt bool     // a whole number, exactly i
	i     *big.Int // set when isInt
	f     float64  // the value, or the nearest float64
}

// numberOf returns the number val is: an integer, a float, .inf or .nan,
// or an unquoted scalar that reads as a number although the YAML parser
// took it for a string (1e3, or an integer too large for 64 bits).
func numberOf(val value) (number, bool) {
	if val.tag == "!!str" {
		return number{}, false
	}
	text, _ := scalarText(val.node)
	switch n := val.node.(type) {
	case *ast.IntegerNode:
		num := number{text: text, isInt: true, i: new(big.Int)}
		switch x := n.Value.(type) {
		case int64:
			num.i.SetInt64(x)
		case uint64:
			num.i.SetUint64(x)
		default:
			return number{}, false
		}
		num.f, _ = new(big.Float).SetInt(num.i).Float64()
		return num, true
	case *ast.FloatNode:
		return floatNumber(text, n.Value), true
	case *ast.InfinityNode:
		return number{text: text, f: n.Value}, true
	case *ast.NanNode:
		return number{text: text, f: math.NaN()}, true
	case *ast.StringNode:
		if n.Token == nil || n.Token.Type != token.StringType || !strings.ContainsAny(text, "0123456789") {
			return number{}, false // quoted, or a word such as inf
		}
		clean := strings.ReplaceAll(text, "_", "")
		if i, ok := new(big.Int).SetString(clean, 0); ok {
			f, _ := new(big.Float).SetInt(i).Float64()
			return number{text: text, isInt: true, i: i, f: f}, true
		}
		f, err := strconv.ParseFloat(clean, 64)
		if err != nil && !math.IsInf(f, 0) {
			return number{}, false
		}
		return floatNumber(text, f), true
	}
	return number{}, false
}

func floatNumber(text string, f float64) number {
	num := number{text: text, f: f}
	if !math.IsInf(f, 0) && !math.IsNaN(f) && f == math.Trunc(f) {
		num.isInt = true
		num.i, _ = big.NewFloat(f).Int(nil)
	}
	return num
}

// decodeInteger decodes a whole number into an int or uint of any size.
func (d *decoder) decodeInteger(val value, v reflect.Value, path string, errs *Errors) {
	num, ok := numberOf(val)
	if !ok || !num.isInt {
		d.typeError(val, v.Type(), path, errs)
		return
	}
	bits := uint(v.Type().Bits())
	lo, hi := new(big.Int), new(big.Int)
	signed := v.CanInt()
	if signed {
		lo.Lsh(big.NewInt(1), bits-1).Neg(lo)
		hi.Lsh(big.NewInt(1), bits-1).Sub(hi, big.NewInt(1))
	} else {
		hi.Lsh(big.NewInt(1), bits).Sub(hi, big.NewInt(1))
	}
	if num.i.Cmp(lo) < 0 || num.i.Cmp(hi) > 0 {
		d.errorf(errs, val.at, path, "%s is out of range: want a whole number from %s to %s", num.text, lo, hi)
		return
	}
	if signed {
		v.SetInt(num.i.Int64())
	} else {
		v.SetUint(num.i.Uint64())
	}
}

// decodeFloat decodes a number into a float32 or float64.
func (d *decoder) decodeFloat(val value, v reflect.Value, path string, errs *Errors) {
	num, ok := numberOf(val)
	if !ok {
		d.typeError(val, v.Type(), path, errs)
		return
	}
	_, isInf := val.node.(*ast.InfinityNode)
	if !isInf && (math.IsInf(num.f, 0) || v.OverflowFloat(num.f)) {
		limit := math.MaxFloat64
		if v.Kind() == reflect.Float32 {
			limit = math.MaxFloat32
		}
		d.errorf(errs, val.at, path, "%s is out of range: want a number no larger than %g in magnitude", num.text, limit)
		return
	}
	v.SetFloat(num.f)
}

// decodeDuration decodes a Go duration string such as 1m30s.
func (d *decoder) decodeDuration(val value, v reflect.Value, path string, errs *Errors) {
	text, ok := scalarText(val.node)
	if val.tag != "!!str" {
		switch val.node.(type) {
		case *ast.IntegerNode, *ast.FloatNode:
			d.errorf(errs, val.at, path, "%s has no unit; use a unit such as 500ms or 30s", text)
			return
		case *ast.BoolNode, *ast.InfinityNode, *ast.NanNode:
			ok = false
		}
	}
	if !ok {
		d.typeError(val, v.Type(), path, errs)
		return
	}
	dur, err := time.ParseDuration(text)
	if err != nil {
		d.errorf(errs, val.at, path, "%q is not a duration; use a number with a unit, such as 500ms, 30s or 2m", text).cause = err
		return
	}
	v.SetInt(int64(dur))
}

// decodeStruct decodes a mapping into a struct field by field; fields the
// mapping does not name keep their values.
func (d *decoder) decodeStruct(val value, v reflect.Value, path string, errs *Errors) {
	if !isMapping(val.node) {
		d.typeError(val, v.Type(), path, errs)
		return
	}
	fs := d.fieldsOf(v.Type())
	for _, e := range d.entries(val.node, path, errs) {
		p := joinPath(path, e.key)
		f, ok := fs.byName[e.key]
		if !ok {
			names := fs.names()
			if len(names) == 0 {
				d.errorf(errs, e.keyNode, p, "unknown field %q; no fields are valid here", e.key)
				continue
			}
			d.errorf(errs, e.keyNode, p, "unknown field %q; valid fields here: %s%s",
				e.key, strings.Join(names, ", "), suggest.Hint(e.key, names))
			continue
		}
		fv, ok := fieldValue(v, f.index)
		if !ok {
			d.errorf(errs, e.keyNode, p, "cannot set Go field %s", f.sf.Name)
			continue
		}
		d.decodeNode(e.value, fv, p, errs)
	}
}

// decodeMap decodes a mapping into a new map that replaces v's.
func (d *decoder) decodeMap(val value, v reflect.Value, path string, errs *Errors) {
	t := v.Type()
	if !isMapping(val.node) {
		d.typeError(val, t, path, errs)
		return
	}
	kt := t.Key()
	textKey := reflect.PointerTo(kt).Implements(reflect.TypeFor[encoding.TextUnmarshaler]())
	switch kt.Kind() {
	case reflect.String, reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
	case reflect.Interface:
		if kt.NumMethod() != 0 {
			d.errorf(errs, val.at, path, "cannot decode into Go type %s", t)
			return
		}
	default:
		if !textKey {
			d.errorf(errs, val.at, path, "cannot decode into Go type %s", t)
			return
		}
	}
	m := reflect.MakeMap(t)
	for _, e := range d.entries(val.node, path, errs) {
		p := joinPath(path, e.key)
		k := reflect.New(kt).Elem()
		switch {
		case kt.Kind() == reflect.String && !textKey:
			k.SetString(e.key)
		case kt.Kind() == reflect.Interface:
			k.Set(reflect.ValueOf(e.key))
		default:
			n := len(*errs)
			d.decodeNode(e.keyNode, k, p, errs)
			if len(*errs) > n {
				continue
			}
		}
		ev := reflect.New(t.Elem()).Elem()
		d.decodeNode(e.value, ev, p, errs)
		m.SetMapIndex(k, ev)
	}
	v.Set(m)
}

// decodeList decodes a sequence into a new slice that replaces v's, or
// into an array of the same length.
func (d *decoder) decodeList(val value, v reflect.Value, path string, errs *Errors) {
	seq, ok := val.node.(*ast.SequenceNode)
	if !ok {
		d.typeError(val, v.Type(), path, errs)
		return
	}
	n := len(seq.Values)
	if v.Kind() == reflect.Array {
		if n != v.Len() {
			d.errorf(errs, val.at, path, "want a list of %d items, got %d", v.Len(), n)
			n = min(n, v.Len())
		}
		for i := range n {
			d.decodeNode(seq.Values[i], v.Index(i), indexPath(path, i), errs)
		}
		return
	}
	s := reflect.MakeSlice(v.Type(), n, n)
	for i, item := range seq.Values {
		d.decodeNode(item, s.Index(i), indexPath(path, i), errs)
	}
	v.Set(s)
}

// toAny decodes val into plain Go values: map[string]any, []any, string,
// int (uint64 beyond int's range), float64, bool or nil.
func (d *decoder) toAny(val value, path string, errs *Errors) any {
	if val.isNull() {
		return nil
	}
	switch n := val.node.(type) {
	case *ast.MappingNode, *ast.MappingValueNode:
		m := map[string]any{}
		for _, e := range d.entries(n, path, errs) {
			m[e.key] = d.anyNode(e.value, joinPath(path, e.key), errs)
		}
		return m
	case *ast.SequenceNode:
		s := make([]any, len(n.Values))
		for i, item := range n.Values {
			s[i] = d.anyNode(item, indexPath(path, i), errs)
		}
		return s
	}
	text, _ := scalarText(val.node)
	if val.tag == "!!str" {
		return text
	}
	switch n := val.node.(type) {
	case *ast.IntegerNode:
		switch x := n.Value.(type) {
		case int64:
			if x == int64(int(x)) {
				return int(x)
			}
			return x
		case uint64:
			if x <= math.MaxInt {
				return int(x)
			}
			return x
		}
	case *ast.FloatNode:
		return n.Value
	case *ast.InfinityNode:
		return n.Value
	case *ast.NanNode:
		return math.NaN()
	case *ast.BoolNode:
		return n.Value
	}
	return text
}

// anyNode is toAny for a node inside a mapping or list.
func (d *decoder) anyNode(n ast.Node, path string, errs *Errors) any {
	if !d.enter(n, path, errs) {
		return nil
	}
	d.depth++
	defer func() { d.depth-- }()
	val, ok := d.resolve(n, path, errs)
	if !ok {
		return nil
	}
	return d.toAny(val, path, errs)
}

// entry is one key and value of a mapping.
type entry struct {
	key     string
	keyNode ast.Node
	value   ast.Node
}

func isMapping(n ast.Node) bool {
	switch n.(type) {
	case *ast.MappingNode, *ast.MappingValueNode:
		return true
	}
	return false
}

// entries lists the keys and values of the mapping n in file order,
// followed by those its merge keys (<<) bring in and it does not set
// itself (an earlier merged mapping wins over a later one). It reports
// duplicate keys and keys that are not scalars.
func (d *decoder) entries(n ast.Node, path string, errs *Errors) []entry {
	var values []*ast.MappingValueNode
	switch m := n.(type) {
	case *ast.MappingNode:
		values = m.Values
	case *ast.MappingValueNode:
		values = []*ast.MappingValueNode{m}
	}
	var out []entry
	seen := map[string]ast.Node{}
	var merges []ast.Node
	for _, mv := range values {
		if mv == nil || isNil(mv.Key) {
			continue
		}
		if mv.Key.IsMergeKey() {
			merges = append(merges, mv.Value)
			continue
		}
		key, ok := d.keyText(mv.Key, path, errs)
		if !ok {
			continue
		}
		if first, dup := seen[key]; dup {
			line, col := nodePos(first)
			d.errorf(errs, mv.Key, joinPath(path, key), "duplicate key %q; it is first set at line %d, column %d", key, line, col)
			continue
		}
		seen[key] = mv.Key
		out = append(out, entry{key: key, keyNode: mv.Key, value: mv.Value})
	}
	for _, m := range merges {
		for _, e := range d.mergeEntries(m, path, errs) {
			if _, dup := seen[e.key]; !dup {
				seen[e.key] = e.keyNode
				out = append(out, e)
			}
		}
	}
	return out
}

// mergeEntries lists the entries a merge key's value brings in: those of
// a mapping, or of each mapping in a list (the earlier wins).
func (d *decoder) mergeEntries(n ast.Node, path string, errs *Errors) []entry {
	if !d.enter(n, path, errs) {
		return nil
	}
	d.depth++
	defer func() { d.depth-- }()
	val, ok := d.resolve(n, path, errs)
	if !ok || val.isNull() {
		return nil
	}
	if isMapping(val.node) {
		return d.entries(val.node, path, errs)
	}
	seq, ok := val.node.(*ast.SequenceNode)
	if !ok {
		d.errorf(errs, val.at, path, "cannot use %s after <<: want a mapping or a list of mappings", describe(val))
		return nil
	}
	var out []entry
	seen := map[string]bool{}
	for _, item := range seq.Values {
		for _, e := range d.mergeItem(item, path, errs) {
			if !seen[e.key] {
				seen[e.key] = true
				out = append(out, e)
			}
		}
	}
	return out
}

// mergeItem lists the entries of one mapping in a merge key's list.
func (d *decoder) mergeItem(n ast.Node, path string, errs *Errors) []entry {
	if !d.enter(n, path, errs) {
		return nil
	}
	d.depth++
	defer func() { d.depth-- }()
	val, ok := d.resolve(n, path, errs)
	if !ok || val.isNull() {
		return nil
	}
	if !isMapping(val.node) {
		d.errorf(errs, val.at, path, "cannot use %s in the list after <<: want a mapping", describe(val))
		return nil
	}
	return d.entries(val.node, path, errs)
}

// keyText is the text of a mapping key; it reports a key that is a
// mapping or a list.
func (d *decoder) keyText(k ast.Node, path string, errs *Errors) (string, bool) {
	val, ok := d.resolve(k, path, errs)
	if !ok {
		return "", false
	}
	if val.node == nil {
		return "", true
	}
	if text, ok := scalarText(val.node); ok {
		return text, true
	}
	if null, ok := val.node.(*ast.NullNode); ok {
		if tk := null.GetToken(); tk != nil {
			return tk.Value, true
		}
		return "", true
	}
	d.errorf(errs, val.at, path, "cannot use %s as a key: want a name", describe(val))
	return "", false
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func indexPath(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

// field is a struct field that a YAML key sets.
type field struct {
	name  string
	index []int // for reflect.Value.FieldByIndex, through inline structs
	sf    reflect.StructField
	depth int // how many inline structs deep
}

// fieldSet is the fields of a struct type, by YAML name.
type fieldSet struct {
	list   []*field // in declaration order, inline fields in place
	byName map[string]*field
}

func (fs *fieldSet) names() []string {
	names := make([]string, len(fs.list))
	for i, f := range fs.list {
		names[i] = f.name
	}
	return names
}

func (d *decoder) fieldsOf(t reflect.Type) *fieldSet {
	fs, ok := d.fields[t]
	if !ok {
		fs = structFields(t)
		d.fields[t] = fs
	}
	return fs
}

// longForm reports whether t is a struct type with yaml-tagged fields that
// implements encoding.TextUnmarshaler: a value of it is written either as
// a scalar (its short form, for UnmarshalText) or as a mapping of its
// fields (its long form).
func longForm(t reflect.Type) bool {
	return t.Kind() == reflect.Struct && reflect.PointerTo(t).Implements(reflect.TypeFor[encoding.TextUnmarshaler]()) &&
		len(structFields(t).list) > 0
}

// structFields lists the fields of struct type t that have a yaml tag
// naming them; fields of structs tagged `yaml:",inline"` count as t's own.
// When a name is used twice, the shallower field wins, then the first.
func structFields(t reflect.Type) *fieldSet {
	var all []*field
	var walk func(t reflect.Type, index []int, depth int, open map[reflect.Type]bool)
	walk = func(t reflect.Type, index []int, depth int, open map[reflect.Type]bool) {
		for i := range t.NumField() {
			sf := t.Field(i)
			name, opts, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
			if name == "-" {
				continue
			}
			idx := append(append([]int(nil), index...), i)
			if hasOption(opts, "inline") {
				ft := sf.Type
				if ft.Kind() == reflect.Pointer {
					ft = ft.Elem()
				}
				settable := sf.IsExported() || sf.Anonymous && sf.Type.Kind() != reflect.Pointer
				if ft.Kind() == reflect.Struct && settable && !open[ft] {
					open[ft] = true
					walk(ft, idx, depth+1, open)
					delete(open, ft)
				}
				continue
			}
			if name == "" || !sf.IsExported() {
				continue
			}
			all = append(all, &field{name: name, index: idx, sf: sf, depth: depth})
		}
	}
	walk(t, nil, 0, map[reflect.Type]bool{t: true})
	fs := &fieldSet{byName: map[string]*field{}}
	for _, f := range all {
		if old, ok := fs.byName[f.name]; !ok || f.depth < old.depth {
			fs.byName[f.name] = f
		}
	}
	for _, f := range all {
		if fs.byName[f.name] == f {
			fs.list = append(fs.list, f)
		}
	}
	return fs
}

func hasOption(opts, name string) bool {
	for _, o := range strings.Split(opts, ",") {
		if o == name {
			return true
		}
	}
	return false
}

// fieldValue returns the field of struct v at index, allocating the inline
// structs on the way that are nil pointers; false when it cannot be set.
func fieldValue(v reflect.Value, index []int) (reflect.Value, bool) {
	for i, x := range index {
		if i > 0 && v.Kind() == reflect.Pointer {
			if v.IsNil() {
				if !v.CanSet() {
					return reflect.Value{}, false
				}
				v.Set(reflect.New(v.Type().Elem()))
			}
			v = v.Elem()
		}
		v = v.Field(x)
	}
	return v, v.CanSet()
}
