package mailstack

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

// ConfigError is an invalid configuration file or value. It names the file,
// the position and the field, so the user can go straight to the mistake.
type ConfigError struct {
	File  string // the file, or "" for a configuration built in code or from flags
	Line  int    // 1-based; 0 when unknown
	Col   int    // 1-based; 0 when unknown
	Field string // dotted path, e.g. scan.workers
	Msg   string
}

func (e *ConfigError) Error() string {
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
func (e *ConfigError) InvalidInput() bool { return true }

// ConfigErrors is every problem found in one configuration, in file order.
type ConfigErrors []*ConfigError

func (l ConfigErrors) Error() string {
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
func (l ConfigErrors) InvalidInput() bool { return true }

// LoadConfig reads a YAML configuration file. The file starts from the
// profile it names (field profile), or from profile when that is not empty
// (a command-line choice wins), or from the remediated profile; every field
// the file sets overrides the profile. Unknown fields, wrong types and
// invalid values are reported as [ConfigErrors] naming the file, line,
// column and field.
func LoadConfig(path, profile string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, &ConfigError{File: path, Msg: fmt.Sprintf("cannot read: %v", errors.Unwrap(err))}
	}
	return ParseConfig(path, data, profile)
}

// ParseConfig is [LoadConfig] on bytes already read; name is used in errors.
func ParseConfig(name string, data []byte, profile string) (Config, error) {
	file, err := parser.ParseBytes(data, 0)
	if err != nil {
		return Config{}, ConfigErrors{yamlError(name, nil, err)}
	}
	idx := indexNodes(file)
	if profile == "" {
		var head struct {
			Profile string `yaml:"profile"`
		}
		if err := yaml.Unmarshal(data, &head); err == nil {
			profile = head.Profile
		}
	}
	if profile == "" {
		profile = ProfileRemediated
	}
	cfg, err := ProfileConfig(profile)
	if err != nil {
		return Config{}, ConfigErrors{idx.errorAt(name, "profile", err.Error())}
	}
	if errs := idx.durationErrors(name); len(errs) > 0 {
		return Config{}, errs
	}
	if len(bytes.TrimSpace(data)) > 0 {
		dec := yaml.NewDecoder(bytes.NewReader(data), yaml.DisallowUnknownField())
		if err := dec.Decode(&cfg); err != nil {
			return Config{}, ConfigErrors{yamlError(name, idx, err)}
		}
	}
	cfg.Profile = profile
	cfg.fillDefaults()
	if errs := cfg.Validate(); len(errs) > 0 {
		out := make(ConfigErrors, 0, len(errs))
		for _, fe := range errs {
			out = append(out, idx.errorAt(name, fe.Field, fe.Msg))
		}
		sort.SliceStable(out, func(i, j int) bool { return out[i].Line < out[j].Line })
		return Config{}, out
	}
	return cfg, nil
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
				if tk := v.GetToken(); tk != nil {
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
func (idx *nodeIndex) durationErrors(file string) ConfigErrors {
	var errs ConfigErrors
	durType := reflect.TypeOf(time.Duration(0))
	for path, node := range idx.vals {
		if fieldType(reflect.TypeOf(Config{}), path) != durType {
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
			e := &ConfigError{File: file, Field: path,
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
func (idx *nodeIndex) errorAt(file, field, msg string) *ConfigError {
	e := &ConfigError{File: file, Field: field, Msg: msg}
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
func yamlError(file string, idx *nodeIndex, err error) *ConfigError {
	var ye yaml.Error
	if !errors.As(err, &ye) || ye.GetToken() == nil || ye.GetToken().Position == nil {
		return &ConfigError{File: file, Msg: err.Error()}
	}
	tk := ye.GetToken()
	e := &ConfigError{File: file, Line: tk.Position.Line, Col: tk.Position.Column, Msg: ye.GetMessage()}
	if idx != nil {
		e.Field = idx.byAt[[2]int{tk.Position.Line, tk.Position.Column}]
	}
	var unknown *yaml.UnknownFieldError
	if errors.As(err, &unknown) {
		name := e.Field
		if i := strings.LastIndexAny(name, "."); i >= 0 {
			name = name[i+1:]
		}
		valid := fieldNames(reflect.TypeOf(Config{}), parentPath(e.Field))
		e.Msg = fmt.Sprintf("unknown field %q; valid fields here: %s%s", name, strings.Join(valid, ", "), suggestion(name, valid))
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
	case t == reflect.TypeOf(Config{}.SMTP.Timeout):
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

// suggestion returns `; did you mean "x"?` for the valid name closest to
// got, or "".
func suggestion(got string, valid []string) string { return suggest.Hint(got, valid) }
