// Package yamlfile decodes YAML files strictly into Go structs and reports
// every mistake with the file, line, column and dotted field path, and the
// nearest valid name for a misspelt field. Structs are described by their
// yaml tags; durations are Go duration strings.
package yamlfile

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/token"

	"github.com/mailchaos/mailchaos/internal/suggest"
)

// Error is one mistake in a file or value.
type Error struct {
	File  string // the file, or "" for values built in code or from flags
	Line  int    // 1-based; 0 when unknown
	Col   int    // 1-based; 0 when unknown
	Field string // dotted path, e.g. scan.workers or engines[1].dial
	Msg   string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d:%d", e.Line, e.Col)
		}
		b.WriteString(": ")
	}
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// InvalidInput marks the error as the user's input being wrong (exit 2).
func (e *Error) InvalidInput() bool { return true }

// Errors is every mistake found in one file, in file order.
type Errors []*Error

func (l Errors) Error() string {
	switch len(l) {
	case 0:
		return "no errors"
	case 1:
		return l[0].Error()
	}
	msgs := make([]string, len(l))
	for i, e := range l {
		msgs[i] = e.Error()
	}
	return fmt.Sprintf("%d errors:\n  %s", len(l), strings.Join(msgs, "\n  "))
}

// InvalidInput marks the errors as the user's input being wrong (exit 2).
func (l Errors) InvalidInput() bool { return true }

// FieldError is an invalid value found by a validator, before positions are
// known.
type FieldError struct {
	Field string
	Msg   string
}

func (e FieldError) Error() string { return e.Field + ": " + e.Msg }

// ReadFile reads a file, returning an *Error naming it on failure.
func ReadFile(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		msg := err.Error()
		if u := errors.Unwrap(err); u != nil {
			msg = u.Error()
		}
		return nil, &Error{File: path, Msg: "cannot read: " + msg}
	}
	return data, nil
}

// Doc is a parsed YAML document that knows where each field is written.
type Doc struct {
	name string
	data []byte
	idx  *nodeIndex
}

// Parse parses data; name is used in errors. A syntax error is returned as
// Errors.
func Parse(name string, data []byte) (*Doc, error) {
	file, err := parser.ParseBytes(data, 0)
	if err != nil {
		return nil, Errors{yamlError(name, nil, nil, err)}
	}
	return &Doc{name: name, data: data, idx: indexNodes(file)}, nil
}

// Decode decodes the document into v (a pointer to a struct, which may hold
// defaults: fields the document does not set keep them). Unknown fields,
// wrong types and bad durations are returned as Errors.
func (d *Doc) Decode(v any) error {
	root := reflect.TypeOf(v).Elem()
	if errs := d.idx.durationErrors(d.name, root); len(errs) > 0 {
		return errs
	}
	if len(bytes.TrimSpace(d.data)) == 0 {
		return nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(d.data), yaml.DisallowUnknownField())
	if err := dec.Decode(v); err != nil {
		return Errors{yamlError(d.name, root, d.idx, err)}
	}
	return nil
}

// At returns an Error for field, positioned where the field (or its nearest
// written ancestor) is in the document.
func (d *Doc) At(field, msg string) *Error { return d.idx.errorAt(d.name, field, msg) }

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
	sort.SliceStable(out, func(i, j int) bool { return out[i].Line < out[j].Line })
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

// nodeIndex maps the dotted field paths of a YAML file to their positions.
type nodeIndex struct {
	pos  map[string]*token.Position // path -> position of its key (or value in a list)
	byAt map[[2]int]string          // (line, col) of a key or value token -> path
	vals map[string]ast.Node        // path -> value node
}

func indexNodes(f *ast.File) *nodeIndex {
	idx := &nodeIndex{pos: map[string]*token.Position{}, byAt: map[[2]int]string{}, vals: map[string]ast.Node{}}
	var walk func(n ast.Node, path string)
	note := func(tk *token.Token, path string) {
		if tk != nil && tk.Position != nil {
			idx.byAt[[2]int{tk.Position.Line, tk.Position.Column}] = path
		}
	}
	walk = func(n ast.Node, path string) {
		switch n := n.(type) {
		case *ast.MappingNode:
			for _, mv := range n.Values {
				walk(mv, path)
			}
		case *ast.MappingValueNode:
			key := strings.Trim(n.Key.String(), `"'`)
			p := key
			if path != "" {
				p = path + "." + key
			}
			if tk := n.Key.GetToken(); tk != nil {
				idx.pos[p] = tk.Position
				note(tk, p)
			}
			note(n.Value.GetToken(), p)
			idx.vals[p] = n.Value
			walk(n.Value, p)
		case *ast.SequenceNode:
			for i, v := range n.Values {
				p := path + "[" + strconv.Itoa(i) + "]"
				tk := v.GetToken()
				if m, ok := v.(*ast.MappingNode); ok && len(m.Values) > 0 {
					tk = m.Values[0].Key.GetToken() // where the item starts
				}
				if tk != nil {
					if _, ok := idx.pos[p]; !ok {
						idx.pos[p] = tk.Position
					}
					note(tk, p)
				}
				idx.vals[p] = v
				walk(v, p)
			}
		case *ast.TagNode:
			walk(n.Value, path)
		case *ast.AnchorNode:
			walk(n.Value, path)
		}
	}
	for _, d := range f.Docs {
		if d.Body != nil {
			walk(d.Body, "")
		}
	}
	return idx
}

// durationErrors checks every value written for a duration field, so that
// a bad duration is reported with its position (the YAML decoder reports
// none).
func (idx *nodeIndex) durationErrors(file string, root reflect.Type) Errors {
	var errs Errors
	durType := reflect.TypeOf(time.Duration(0))
	for path, node := range idx.vals {
		if fieldType(root, path) != durType {
			continue
		}
		sc, ok := node.(ast.ScalarNode)
		if !ok {
			continue
		}
		s, ok := sc.GetValue().(string)
		if !ok {
			continue
		}
		if _, err := time.ParseDuration(s); err != nil {
			e := &Error{File: file, Field: path,
				Msg: fmt.Sprintf("%q is not a duration; use a number with a unit, such as 500ms, 30s or 2m", s)}
			if tk := node.GetToken(); tk != nil && tk.Position != nil {
				e.Line, e.Col = tk.Position.Line, tk.Position.Column
			}
			errs = append(errs, e)
		}
	}
	sort.Slice(errs, func(i, j int) bool { return errs[i].Line < errs[j].Line })
	return errs
}

// fieldType returns the Go type of the field at a dotted path inside t, or
// nil when the path names no field.
func fieldType(t reflect.Type, path string) reflect.Type {
	for _, part := range strings.Split(path, ".") {
		name, _, _ := strings.Cut(part, "[")
		if t.Kind() != reflect.Struct {
			return nil
		}
		var found bool
		for i := 0; !found && i < t.NumField(); i++ {
			if yamlName(t.Field(i)) == name {
				t, found = t.Field(i).Type, true
			}
		}
		if !found {
			return nil
		}
		for n := strings.Count(part, "["); n > 0; n-- {
			if t.Kind() != reflect.Slice {
				return nil
			}
			t = t.Elem()
		}
	}
	return t
}

// errorAt builds a ConfigError for field, positioned at the field or at its
// nearest written ancestor (a value left to its default has no position of
// its own).
func (idx *nodeIndex) errorAt(file, field, msg string) *Error {
	e := &Error{File: file, Field: field, Msg: msg}
	for p := field; p != ""; p = parentPath(p) {
		if pos, ok := idx.pos[p]; ok && pos != nil {
			e.Line, e.Col = pos.Line, pos.Column
			break
		}
	}
	return e
}

func parentPath(p string) string {
	i := strings.LastIndexAny(p, ".[")
	if i < 0 {
		return ""
	}
	return p[:i]
}

// yamlError turns a goccy/go-yaml error into a ConfigError with the field's
// path and, for an unknown field, the nearest valid name.
func yamlError(file string, root reflect.Type, idx *nodeIndex, err error) *Error {
	var ye yaml.Error
	if !errors.As(err, &ye) || ye.GetToken() == nil || ye.GetToken().Position == nil {
		return &Error{File: file, Msg: err.Error()}
	}
	tk := ye.GetToken()
	e := &Error{File: file, Line: tk.Position.Line, Col: tk.Position.Column, Msg: ye.GetMessage()}
	if idx != nil {
		e.Field = idx.byAt[[2]int{tk.Position.Line, tk.Position.Column}]
	}
	var unknown *yaml.UnknownFieldError
	if errors.As(err, &unknown) {
		name := e.Field
		if i := strings.LastIndexAny(name, "."); i >= 0 {
			name = name[i+1:]
		}
		valid := fieldNames(root, parentPath(e.Field))
		e.Msg = fmt.Sprintf("unknown field %q; valid fields here: %s%s", name, strings.Join(valid, ", "), suggest.Hint(name, valid))
	}
	var te *yaml.TypeError
	if errors.As(err, &te) {
		e.Msg = fmt.Sprintf("cannot use %s here: want %s", te.SrcType, typeWord(te.DstType))
	}
	return e
}

// typeWord names a Go type the way a configuration file's author thinks of it.
func typeWord(t reflect.Type) string {
	switch {
	case t == reflect.TypeOf(time.Duration(0)):
		return "a duration such as 500ms or 30s"
	case t.Kind() == reflect.Bool:
		return "true or false"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64:
		return "a whole number"
	case t.Kind() == reflect.String:
		return "a string"
	case t.Kind() == reflect.Slice:
		return "a list"
	case t.Kind() == reflect.Struct:
		return "a mapping"
	}
	return t.String()
}

// fieldNames lists the YAML field names valid at a dotted path inside t.
func fieldNames(t reflect.Type, path string) []string {
	for _, part := range splitPath(path) {
		for t.Kind() == reflect.Slice || t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct {
			return nil
		}
		found := false
		for i := 0; i < t.NumField(); i++ {
			if yamlName(t.Field(i)) == part {
				t, found = t.Field(i).Type, true
				break
			}
		}
		if !found {
			return nil
		}
	}
	for t.Kind() == reflect.Slice || t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return nil
	}
	var names []string
	for i := 0; i < t.NumField(); i++ {
		if n := yamlName(t.Field(i)); n != "" && n != "-" {
			names = append(names, n)
		}
	}
	return names
}

func splitPath(p string) []string {
	var parts []string
	for _, s := range strings.Split(p, ".") {
		if i := strings.IndexByte(s, '['); i >= 0 {
			s = s[:i]
		}
		if s != "" {
			parts = append(parts, s)
		}
	}
	return parts
}

func yamlName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	return name
}
