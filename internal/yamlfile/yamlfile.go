package yamlfile

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/token"
)

// Doc is a parsed YAML file that knows where each field is written. Only
// its first document is used; [Doc.Decode] reports any other. A Doc is
// not changed by its methods and may be used by several goroutines at once.
type Doc struct {
	name  string
	file  *ast.File
	body  ast.Node                    // the first document's content; nil when empty
	alias map[*ast.AliasNode]ast.Node // each alias -> the value of the anchor it names; absent when undefined
	nodes int                         // number of nodes in the first document
}

// Parse parses data; name is used in errors. A syntax error is returned as
// Errors, and so is data that is not UTF-8 text, or whose mappings and
// lists nest more than [MaxNesting] deep, or that has a block mapping of
// more than [MaxMappingKeys] keys: these are refused from a scan of the
// bytes, before anything is built. Duplicate keys are not syntax errors here: [Doc.Decode] reports
// them together with every other mistake.
func Parse(name string, data []byte) (*Doc, error) {
	if e := checkText(name, data); e != nil {
		return nil, Errors{e}
	}
	if e := checkStructure(name, data); e != nil {
		return nil, Errors{e}
	}
	file, err := parser.ParseBytes(data, 0, parser.AllowDuplicateMapKey())
	if err != nil {
		return nil, Errors{syntaxError(name, err)}
	}
	d := &Doc{name: name, file: file, alias: map[*ast.AliasNode]ast.Node{}}
	if len(file.Docs) > 0 && file.Docs[0] != nil {
		d.body = file.Docs[0].Body
	}
	d.indexAnchors()
	return d, nil
}

// syntaxError turns a goccy/go-yaml parse error into an *Error.
func syntaxError(file string, err error) *Error {
	var ye yaml.Error
	if !errors.As(err, &ye) || ye.GetToken() == nil || ye.GetToken().Position == nil {
		return &Error{File: file, Msg: err.Error(), cause: err}
	}
	tk := ye.GetToken()
	return &Error{File: file, Line: tk.Position.Line, Col: tk.Position.Column, Msg: ye.GetMessage(), cause: err}
}

// indexAnchors resolves every alias of the first document to the anchor
// defined last before it, as YAML does, and counts the nodes. An anchor is
// only known once its whole value is read, so aliases never form a cycle.
func (d *Doc) indexAnchors() {
	anchors := map[string]ast.Node{}
	var walk func(n ast.Node)
	walk = func(n ast.Node) {
		if isNil(n) {
			return
		}
		d.nodes++
		switch n := n.(type) {
		case *ast.MappingNode:
			for _, mv := range n.Values {
				walk(mv)
			}
		case *ast.MappingValueNode:
			walk(n.Key)
			walk(n.Value)
		case *ast.MappingKeyNode:
			walk(n.Value)
		case *ast.SequenceNode:
			for _, v := range n.Values {
				walk(v)
			}
		case *ast.TagNode:
			walk(n.Value)
		case *ast.AnchorNode:
			walk(n.Value)
			if !isNil(n.Name) && n.Name.GetToken() != nil {
				anchors[n.Name.GetToken().Value] = n.Value
			}
		case *ast.AliasNode:
			if isNil(n.Value) || n.Value.GetToken() == nil {
				return
			}
			if target, ok := anchors[n.Value.GetToken().Value]; ok {
				d.alias[n] = target
			}
		}
	}
	walk(d.body)
}

// Decode decodes the document into v, a non-nil pointer (usually to a
// struct, which may hold defaults: fields the document does not set keep
// them). It reports every unknown field, duplicate key, wrong type, number
// out of range, bad duration and second document at once, as Errors in
// file order; see the package documentation for the rules. Parts of v
// whose values have errors are left unspecified.
func (d *Doc) Decode(v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("yamlfile: Decode needs a non-nil pointer, got %T", v)
	}
	var errs Errors
	dec := newDecoder(d)
	if !isNil(d.body) {
		dec.decodeNode(d.body, rv.Elem(), "", &errs)
	}
	for _, doc := range d.file.Docs[min(1, len(d.file.Docs)):] {
		if doc == nil || isNil(doc.Body) {
			continue // a trailing "---" with nothing after it
		}
		e := &Error{File: d.name, Msg: "one document expected; a second one starts here"}
		n := ast.Node(doc.Body)
		if doc.Start != nil {
			n = doc
		}
		e.Line, e.Col = nodePos(n)
		errs = append(errs, e)
		break
	}
	sortErrors(errs)
	return dedupe(errs).Err()
}

// dedupe drops repeated errors, which a value used through several
// aliases or merge keys can cause.
func dedupe(errs Errors) Errors {
	seen := map[Error]bool{}
	out := errs[:0]
	for _, e := range errs {
		k := *e
		k.cause = nil
		if !seen[k] {
			seen[k] = true
			out = append(out, e)
		}
	}
	return out
}

// At returns an Error for field, positioned where the field (or its nearest
// written ancestor) is in the document.
func (d *Doc) At(field, msg string) *Error {
	e := &Error{File: d.name, Field: field, Msg: msg}
	_, e.Line, e.Col, _ = d.find(field)
	return e
}

// Node returns the value written at a dotted field path such as
// engines[1].dial ("" is the whole document), with anchors, aliases and
// tags around it resolved; false when the document does not write the
// path. Keys reached through merge keys (<<) are found too.
func (d *Doc) Node(path string) (ast.Node, bool) {
	n, _, _, ok := d.find(path)
	if !ok {
		return nil, false
	}
	return n, true
}

// Positioned turns validation errors into Errors in file order; nil when
// there are none.
func (d *Doc) Positioned(fes []FieldError) error {
	if len(fes) == 0 {
		return nil
	}
	out := make(Errors, 0, len(fes))
	for _, fe := range fes {
		out = append(out, d.At(fe.Field, fe.Msg))
	}
	sortErrors(out)
	return out
}

// Unpositioned turns validation errors of a value built in code into Errors.
func Unpositioned(fes []FieldError) error {
	if len(fes) == 0 {
		return nil
	}
	out := make(Errors, len(fes))
	for i, fe := range fes {
		out[i] = &Error{Field: fe.Field, Msg: fe.Msg}
	}
	return out
}

// find follows path from the document's root. It returns the value node
// of the deepest part of path that is written, the position that stands
// for it (the key of a mapping entry; the first key of a list item that is
// a mapping, or the item itself) and whether the whole path is written.
func (d *Doc) find(path string) (n ast.Node, line, col int, ok bool) {
	cur := d.resolve(d.body)
	if cur == nil {
		return nil, 0, 0, false
	}
	line, col = nodePos(cur)
	if path == "" {
		return cur, line, col, true
	}
	segs, valid := splitPath(path)
	for _, s := range segs {
		if !valid {
			return cur, line, col, false
		}
		var next ast.Node
		if s.key != nil {
			var discard Errors
			for _, e := range newDecoder(d).entries(cur, "", &discard) {
				if e.key == *s.key {
					next = e.value
					line, col = nodePos(e.keyNode)
					break
				}
			}
		} else if seq, isSeq := cur.(*ast.SequenceNode); isSeq && s.index < len(seq.Values) {
			next = seq.Values[s.index]
			item := d.resolve(next)
			if m, isMap := item.(*ast.MappingNode); isMap && len(m.Values) > 0 {
				line, col = nodePos(m.Values[0].Key)
			} else {
				line, col = nodePos(next)
			}
		}
		if next == nil {
			return cur, line, col, false
		}
		cur = d.resolve(next)
	}
	return cur, line, col, valid
}

// pathSeg is one step of a field path: a key or a list index.
type pathSeg struct {
	key   *string
	index int
}

// splitPath splits a path such as a.b[2].c into its steps; valid is false
// when part of it is not well formed (the steps before it are returned).
func splitPath(path string) (segs []pathSeg, valid bool) {
	for _, part := range strings.Split(path, ".") {
		name, rest, hasIndex := strings.Cut(part, "[")
		if name != "" || !hasIndex {
			segs = append(segs, pathSeg{key: &name})
		}
		if !hasIndex {
			continue
		}
		for rest = "[" + rest; rest != ""; {
			end := strings.IndexByte(rest, ']')
			if rest[0] != '[' || end < 0 {
				return segs, false
			}
			i, err := strconv.Atoi(rest[1:end])
			if err != nil || i < 0 {
				return segs, false
			}
			segs = append(segs, pathSeg{index: i})
			rest = rest[end+1:]
		}
	}
	return segs, true
}

// resolve returns the value n stands for, looking through anchors,
// aliases, tags and explicit keys ("? key"); nil for an undefined alias.
func (d *Doc) resolve(n ast.Node) ast.Node {
	for i := 0; i < 1000; i++ {
		if isNil(n) {
			return nil
		}
		switch x := n.(type) {
		case *ast.AnchorNode:
			n = x.Value
		case *ast.AliasNode:
			n = d.alias[x]
		case *ast.TagNode:
			n = x.Value
		case *ast.MappingKeyNode:
			n = x.Value
		default:
			return n
		}
	}
	return n
}

// nodePos is the line and column that stand for n: the first key of a
// block mapping, the start of anything else; 0, 0 when n has no position.
func nodePos(n ast.Node) (line, col int) {
	if isNil(n) {
		return 0, 0
	}
	var tk *token.Token
	switch x := n.(type) {
	case *ast.MappingNode:
		if !x.IsFlowStyle && len(x.Values) > 0 {
			return nodePos(x.Values[0].Key)
		}
		tk = x.Start
	case *ast.MappingValueNode:
		return nodePos(x.Key)
	case *ast.DocumentNode:
		if x.Start == nil {
			return nodePos(x.Body)
		}
		tk = x.Start
	default:
		tk = n.GetToken()
	}
	if tk == nil || tk.Position == nil {
		return 0, 0
	}
	return tk.Position.Line, tk.Position.Column
}

// isNil reports whether n is nil or a nil pointer in an interface.
func isNil(n ast.Node) bool {
	if n == nil {
		return true
	}
	v := reflect.ValueOf(n)
	return v.Kind() == reflect.Pointer && v.IsNil()
}
