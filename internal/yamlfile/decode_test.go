package yamlfile_test

import (
	"errors"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml/ast"
	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/internal/yamlfile"
)

// decode parses and decodes src into v.
func decode(t testing.TB, src string, v any) error {
	t.Helper()
	doc, err := yamlfile.Parse("f.yaml", []byte(src))
	if err != nil {
		return err
	}
	return doc.Decode(v)
}

func intp(i int) *int { return &i }

func TestDecodeEveryKind(t *testing.T) {
	src := `
title: demo
workers: 8
small: -128
count: 65535
ratio: 0.25
ratio32: 1e3
enabled: true
timeout: 1m30s
mode: fast
tags: [a, b]
endpoints:
  smtp: 127.0.0.1:25
  "imap": "[::1]:143"
ports: {25: smtp, 0x8F: imap}
engines:
  - name: e1
    dial: 127.0.0.1:3310
    weight: 255
  - {name: e2}
steady-state:
  - name: p
    tolerance: {min: 1, max: 5}
    timeout: 500ms
limit: 7
extra: {a: [1, 2.5, x, true, ~], b: !!str 12}
rate: 300/s
threshold: "> 5000"
addr: 192.0.2.1
pair: [1, 2]
next:
  title: inner
owner: ops
`
	var got sample
	require.NoError(t, decode(t, src, &got))
	want := sample{
		Title: "demo", Workers: 8, Small: -128, Count: 65535, Ratio: 0.25, Ratio32: 1000,
		Enabled: true, Timeout: 90 * time.Second, Mode: "fast", Tags: []string{"a", "b"},
		Endpoints:   map[string]string{"smtp": "127.0.0.1:25", "imap": "[::1]:143"},
		Ports:       map[int]string{25: "smtp", 0x8F: "imap"},
		Engines:     []engine{{Name: "e1", Dial: "127.0.0.1:3310", Weight: 255}, {Name: "e2"}},
		SteadyState: []probe{{Name: "p", Tolerance: tolerance{Min: 1, Max: 5}, Timeout: 500 * time.Millisecond}},
		Limit:       intp(7),
		Extra:       map[string]any{"a": []any{1, 2.5, "x", true, nil}, "b": "12"},
		Rate:        rate{N: 300, Per: time.Second},
		Threshold:   &threshold{Op: ">", Value: 5000},
		Addr:        netip.MustParseAddr("192.0.2.1"),
		Pair:        [2]int{1, 2},
		Next:        &sample{Title: "inner"},
		common:      common{Owner: "ops"},
	}
	require.Equal(t, want, got)
}

// TestDecodeScalars checks how each scalar is read into each kind.
func TestDecodeScalars(t *testing.T) {
	type all struct {
		S   string        `yaml:"s"`
		I   int           `yaml:"i"`
		I64 int64         `yaml:"i64"`
		U64 uint64        `yaml:"u64"`
		F   float64       `yaml:"f"`
		B   bool          `yaml:"b"`
		D   time.Duration `yaml:"d"`
	}
	for _, tt := range []struct {
		src  string
		want all
	}{
		// Numbers, booleans and literals into strings: their text as written.
		{"s: 42", all{S: "42"}},
		{"s: 0x1F", all{S: "0x1F"}},
		{"s: 1.50", all{S: "1.50"}},
		{"s: true", all{S: "true"}},
		{"s: .inf", all{S: ".inf"}},
		{"s: |\n  two\n  lines\n", all{S: "two\nlines\n"}},
		{"s: >-\n  folded\n  text\n", all{S: "folded text"}},
		{"s: 'it''s'", all{S: "it's"}},
		{"s: !!str 12", all{S: "12"}},
		{"s: !custom x", all{S: "x"}},
		// Whole numbers in any notation; integral floats count.
		{"i: 0o17", all{I: 15}},
		{"i: 1_000", all{I: 1000}},
		{"i: +5", all{I: 5}},
		{"i: 1e3", all{I: 1000}},
		{"i: 2.0", all{I: 2}},
		{"i64: -9223372036854775808", all{I64: math.MinInt64}},
		{"u64: 18446744073709551615", all{U64: math.MaxUint64}},
		{"f: 3", all{F: 3}},
		{"f: -.inf", all{F: math.Inf(-1)}},
		{"f: 1_000.5", all{F: 1000.5}},
		{"b: True", all{B: true}},
		{"d: 0s", all{D: 0}},
		{"d: '0'", all{D: 0}},
		{"d: -1.5h", all{D: -90 * time.Minute}},
		{"d: !!str 2s", all{D: 2 * time.Second}},
	} {
		t.Run(tt.src, func(t *testing.T) {
			var got all
			require.NoError(t, decode(t, tt.src, &got))
			require.Equal(t, tt.want, got)
		})
	}
	var got struct {
		F float64 `yaml:"f"`
	}
	require.NoError(t, decode(t, "f: .nan", &got))
	require.True(t, math.IsNaN(got.F))
}

// TestDecodeErrors checks the exact text and position of each kind of
// mistake.
func TestDecodeErrors(t *testing.T) {
	for _, tt := range []struct {
		name, src, want string
	}{
		{"unknown field", "title: x\nworkres: 3\n",
			`f.yaml:2:1: workres: unknown field "workres"; valid fields here: title, workers, small, count, ratio, ratio32, enabled, timeout, mode, tags, endpoints, ports, engines, steady-state, limit, extra, rate, threshold, addr, pair, next, owner; did you mean "workers"?`},
		{"unknown nested field", "steady-state:\n  - tolerance:\n      mux: 3\n",
			`f.yaml:3:7: steady-state[0].tolerance.mux: unknown field "mux"; valid fields here: min, max; did you mean "max"?`},
		{"unknown field without suggestion", "engines: [{name: a, colour: red}]\n",
			`f.yaml:1:21: engines[0].colour: unknown field "colour"; valid fields here: name, dial, weight`},
		{"untagged field", "Untagged: x\n", `f.yaml:1:1: Untagged: unknown field "Untagged"`},
		{"skipped field", "Skipped: x\n", `f.yaml:1:1: Skipped: unknown field "Skipped"`},
		{"duplicate field", "title: a\nworkers: 1\ntitle: b\n",
			`f.yaml:3:1: title: duplicate key "title"; it is first set at line 1, column 1`},
		{"duplicate map key", "endpoints:\n  smtp: a\n  smtp: b\n",
			`f.yaml:3:3: endpoints.smtp: duplicate key "smtp"; it is first set at line 2, column 3`},
		{"duplicate in flow", "engines: [{name: a, name: b}]\n",
			`f.yaml:1:21: engines[0].name: duplicate key "name"; it is first set at line 1, column 12`},
		{"string for int", "workers: many\n", `f.yaml:1:10: workers: cannot use string "many" here: want a whole number`},
		{"quoted number for int", "workers: '3'\n", `f.yaml:1:10: workers: cannot use string "3" here: want a whole number`},
		{"fraction for int", "workers: 1.5\n", `f.yaml:1:10: workers: cannot use number 1.5 here: want a whole number`},
		{"bool for int", "workers: true\n", `f.yaml:1:10: workers: cannot use boolean true here: want a whole number`},
		{"mapping for int", "workers:\n  a: 1\n", `f.yaml:2:3: workers: cannot use a mapping here: want a whole number`},
		{"list for string", "title: [a]\n", `f.yaml:1:8: title: cannot use a list here: want a string`},
		{"mapping for string", "title: {a: 1}\n", `f.yaml:1:8: title: cannot use a mapping here: want a string`},
		{"scalar for list", "tags: a\n", `f.yaml:1:7: tags: cannot use string "a" here: want a list`},
		{"scalar for struct", "engines: [a]\n", `f.yaml:1:11: engines[0]: cannot use string "a" here: want a mapping`},
		{"list for map", "endpoints: [a]\n", `f.yaml:1:12: endpoints: cannot use a list here: want a mapping`},
		{"string for bool", "enabled: yes\n", `f.yaml:1:10: enabled: cannot use string "yes" here: want true or false`},
		{"str tag for bool", "enabled: !!str true\n", `f.yaml:1:10: enabled: cannot use string "true" here: want true or false`},
		{"string for float", "ratio: half\n", `f.yaml:1:8: ratio: cannot use string "half" here: want a number`},
		{"long string", "workers: " + strings.Repeat("x", 50) + "\n",
			`f.yaml:1:10: workers: cannot use string "` + strings.Repeat("x", 37) + `..." here: want a whole number`},
		{"int8 overflow", "small: 128\n", `f.yaml:1:8: small: 128 is out of range: want a whole number from -128 to 127`},
		{"uint negative", "count: -1\n", `f.yaml:1:8: count: -1 is out of range: want a whole number from 0 to 65535`},
		{"uint8 in list", "engines: [{name: a, weight: 256}]\n",
			`f.yaml:1:29: engines[0].weight: 256 is out of range: want a whole number from 0 to 255`},
		{"int64 overflow", "workers: 99999999999999999999\n",
			`f.yaml:1:10: workers: 99999999999999999999 is out of range: want a whole number from -9223372036854775808 to 9223372036854775807`},
		{"float overflow", "workers: 1e30\n",
			`f.yaml:1:10: workers: 1e30 is out of range: want a whole number from -9223372036854775808 to 9223372036854775807`},
		{"float32 overflow", "ratio32: 1e39\n",
			`f.yaml:1:10: ratio32: 1e39 is out of range: want a number no larger than 3.4028234663852886e+38 in magnitude`},
		{"float64 overflow", "ratio: 1e400\n",
			`f.yaml:1:8: ratio: 1e400 is out of range: want a number no larger than 1.7976931348623157e+308 in magnitude`},
		{"bad duration", "timeout: fast\n", `f.yaml:1:10: timeout: "fast" is not a duration; use a number with a unit, such as 500ms, 30s or 2m`},
		{"duration without unit", "timeout: 30\n", `f.yaml:1:10: timeout: 30 has no unit; use a unit such as 500ms or 30s`},
		{"zero duration without unit", "timeout: 0\n", `f.yaml:1:10: timeout: 0 has no unit; use a unit such as 500ms or 30s`},
		{"float duration", "steady-state: [{timeout: 1.5}]\n", `f.yaml:1:26: steady-state[0].timeout: 1.5 has no unit; use a unit such as 500ms or 30s`},
		{"bool duration", "timeout: false\n", `f.yaml:1:10: timeout: cannot use boolean false here: want a duration such as 500ms or 30s`},
		{"mapping duration", "timeout: {a: 1}\n", `f.yaml:1:10: timeout: cannot use a mapping here: want a duration such as 500ms or 30s`},
		{"text unmarshaler", "addr: 300.1.1.1\n", `f.yaml:1:7: addr: ParseAddr("300.1.1.1"): IPv4 field has value >255`},
		{"text unmarshaler type", "addr: [1]\n", `f.yaml:1:7: addr: cannot use a list here: want a string`},
		{"unmarshaler plain error", "threshold: '>= 5'\n", `f.yaml:1:12: threshold: bad threshold: ">= 5" is not a comparison such as "> 5000"`},
		{"unmarshaler positioned error", "rate: 300/h\n", `f.yaml:1:11: rate: unknown unit "h"; use s or m`},
		{"unmarshaler sees a list", "rate: [1]\n", `f.yaml:1:7: rate: want a rate such as 300/s`},
		{"map key type", "ports: {smtp: x}\n", `f.yaml:1:9: ports.smtp: cannot use string "smtp" here: want a whole number`},
		{"array length", "pair: [1, 2, 3]\n", `f.yaml:1:7: pair: want a list of 2 items, got 3`},
		{"undefined alias", "title: *nope\n", `f.yaml:1:8: title: alias *nope names no anchor defined before it`},
		{"alias defined later", "title: *a\nmode: &a x\n", `f.yaml:1:8: title: alias *a names no anchor defined before it`},
		{"alias of wrong type", "title: &t x\nworkers: *t\n", `f.yaml:2:10: workers: cannot use string "x" here: want a whole number`},
		{"bad merge", "engines:\n  - <<: 3\n    name: a\n", `f.yaml:2:9: engines[0]: cannot use number 3 after <<: want a mapping or a list of mappings`},
		{"bad merge item", "engines:\n  - <<: [3]\n    name: a\n", `f.yaml:2:10: engines[0]: cannot use number 3 in the list after <<: want a mapping`},
		{"list as a key", "extra: &l [a]\nendpoints:\n  *l : b\n", `f.yaml:3:3: endpoints: cannot use a list as a key: want a name`},
		{"syntax error in a key", "endpoints:\n  ? [a]\n  : b\n", `f.yaml:3:3: found an invalid key for this map`},
		{"second document", "title: a\n---\ntitle: b\n", `f.yaml:2:1: one document expected; a second one starts here`},
		{"list at the top", "- a\n", `f.yaml:1:1: cannot use a list here: want a mapping`},
		{"syntax error", "title: 'x\n", `f.yaml:1:8: could not find end character of single-quoted text`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var got sample
			err := decode(t, tt.src, &got)
			require.Error(t, err)
			var list yamlfile.Errors
			require.ErrorAs(t, err, &list)
			if strings.HasSuffix(tt.want, `unknown field "Skipped"`) || strings.HasSuffix(tt.want, `unknown field "Untagged"`) {
				require.True(t, strings.HasPrefix(err.Error(), tt.want), err.Error())
				return
			}
			require.Equal(t, tt.want, err.Error())
		})
	}
}

// TestDecodeReportsEveryMistake checks that one pass finds every mistake
// of a file, in file order, and still decodes the rest.
func TestDecodeReportsEveryMistake(t *testing.T) {
	src := `title: chaos
workers: lots
engines:
  - name: e1
    dail: 127.0.0.1:1
  - name: e2
    weight: 300
steady-state:
  - name: p
    timeout: soon
    tolerance:
      max: 5
mode: slow
`
	var got sample
	err := decode(t, src, &got)
	require.EqualError(t, err, `4 errors:
  f.yaml:2:10: workers: cannot use string "lots" here: want a whole number
  f.yaml:5:5: engines[0].dail: unknown field "dail"; valid fields here: name, dial, weight; did you mean "dial"?
  f.yaml:7:13: engines[1].weight: 300 is out of range: want a whole number from 0 to 255
  f.yaml:10:14: steady-state[0].timeout: "soon" is not a duration; use a number with a unit, such as 500ms, 30s or 2m`)
	var list yamlfile.Errors
	require.ErrorAs(t, err, &list)
	require.Len(t, list, 4)
	require.Equal(t, yamlfile.Error{File: "f.yaml", Line: 5, Col: 5, Field: "engines[0].dail",
		Msg: `unknown field "dail"; valid fields here: name, dial, weight; did you mean "dial"?`}, *list[1])
	// The rest of the document is decoded.
	require.Equal(t, "chaos", got.Title)
	require.Equal(t, "slow", got.Mode)
	require.Equal(t, "e2", got.Engines[1].Name)
	require.Equal(t, 5, got.SteadyState[0].Tolerance.Max)
}

// TestDecodeKeepsDefaults checks that a document overrides only what it
// writes: lists and maps wholesale, structs field by field, nulls not at
// all.
func TestDecodeKeepsDefaults(t *testing.T) {
	limit := intp(3)
	defaults := func() sample {
		return sample{
			Title: "default", Workers: 16, Tags: []string{"x", "y", "z"},
			Endpoints: map[string]string{"smtp": "a", "imap": "b"},
			Engines:   []engine{{Name: "e1", Dial: "d1"}, {Name: "e2"}},
			Limit:     limit, Threshold: &threshold{Op: "<", Value: 1},
			Extra: "keep",
		}
	}
	got := defaults()
	require.NoError(t, decode(t, `
workers: 4
tags: [only]
endpoints: {smtp: c}
engines:
  - name: new
limit: 9
title: ~
extra:
threshold: null
`, &got))
	want := defaults()
	want.Workers = 4
	want.Tags = []string{"only"}
	want.Endpoints = map[string]string{"smtp": "c"}
	want.Engines = []engine{{Name: "new"}}
	want.Limit = intp(9)
	require.Equal(t, want, got)
	require.Equal(t, 3, *limit, "a default behind a pointer is not changed")

	got = defaults()
	require.NoError(t, decode(t, "tags: []\nendpoints: {}\n", &got))
	require.Equal(t, []string{}, got.Tags, "an empty list clears the default")
	require.Equal(t, map[string]string{}, got.Endpoints)

	got = defaults()
	require.NoError(t, decode(t, "# nothing but a comment\n", &got))
	require.Equal(t, defaults(), got)
	require.NoError(t, decode(t, "", &got))
	require.NoError(t, decode(t, "---\n", &got))
	require.NoError(t, decode(t, "title: t\n---\n", &got), "a trailing document marker is no document")
	require.Equal(t, "t", got.Title)
}

func TestDecodeAnchorsAndMerges(t *testing.T) {
	var got sample
	require.NoError(t, decode(t, `
engines:
  - &base {name: e1, dial: d, weight: 2}
  - <<: *base
    name: e2
  - <<: [{weight: 9}, *base]
    name: e3
tags: &tags [a, b]
extra: *tags
steady-state:
  - name: &n probe
    tolerance: &tol {min: 1, max: 2}
  - name: *n
    tolerance: *tol
title: &a first
mode: &a second
owner: *a
`, &got))
	require.Equal(t, []engine{{Name: "e1", Dial: "d", Weight: 2}, {Name: "e2", Dial: "d", Weight: 2}, {Name: "e3", Dial: "d", Weight: 9}}, got.Engines)
	require.Equal(t, []any{"a", "b"}, got.Extra)
	require.Equal(t, got.SteadyState[0], got.SteadyState[1])
	require.Equal(t, "second", got.Owner, "an alias names the anchor defined last before it")

	// Errors inside an aliased value are reported once per path it is
	// used at, at the anchor's text; the same error twice is reported once.
	err := decode(t, "engines:\n  - &e {name: a, wieght: 1}\n  - *e\n  - <<: *e\n", &got)
	require.EqualError(t, err, `3 errors:
  f.yaml:2:18: engines[0].wieght: unknown field "wieght"; valid fields here: name, dial, weight; did you mean "weight"?
  f.yaml:2:18: engines[1].wieght: unknown field "wieght"; valid fields here: name, dial, weight; did you mean "weight"?
  f.yaml:2:18: engines[2].wieght: unknown field "wieght"; valid fields here: name, dial, weight; did you mean "weight"?`)
}

// TestDecodeAliasBomb checks that exponential alias expansion is stopped.
func TestDecodeAliasBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n")
	for i := 1; i < 10; i++ {
		b.WriteString("a" + string(rune('0'+i)) + ": &a" + string(rune('0'+i)) + " [")
		for j := range 10 {
			if j > 0 {
				b.WriteString(", ")
			}
			b.WriteString("*a" + string(rune('0'+i-1)))
		}
		b.WriteString("]\n")
	}
	var got map[string]any
	start := time.Now()
	err := decode(t, b.String(), &got)
	require.Less(t, time.Since(start), 5*time.Second)
	require.ErrorContains(t, err, "the document is too large once its aliases are expanded")
}

func TestDecodeInto(t *testing.T) {
	var m map[string]any
	require.NoError(t, decode(t, "a: 1\nb: [x, {c: 2}]\nc: 18446744073709551615\n", &m))
	require.Equal(t, map[string]any{"a": 1, "b": []any{"x", map[string]any{"c": 2}}, "c": uint64(math.MaxUint64)}, m)

	var list []int
	require.NoError(t, decode(t, "[1, 2]", &list))
	require.Equal(t, []int{1, 2}, list)

	var s sample
	require.EqualError(t, decode(t, "a: 1", s), "yamlfile: Decode needs a non-nil pointer, got yamlfile_test.sample")
	require.Error(t, decode(t, "a: 1", (*sample)(nil)))

	var bad struct {
		C chan int `yaml:"c"`
		E error    `yaml:"e"`
	}
	require.EqualError(t, decode(t, "c: 1\ne: x\n", &bad), `2 errors:
  f.yaml:1:4: c: cannot decode into Go type chan int
  f.yaml:2:4: e: cannot decode into Go type error`)
}

func TestUnmarshalerErrorsWrap(t *testing.T) {
	var got sample
	err := decode(t, "threshold: '~ 5'\n", &got)
	require.ErrorIs(t, err, errBadThreshold)
	var e *yamlfile.Error
	require.ErrorAs(t, err, &e)
	require.Equal(t, 1, e.Line)
}

func TestNodeAndAt(t *testing.T) {
	doc, err := yamlfile.Parse("f.yaml", []byte(`title: t
engines:
  - name: e1
    dial: d
  - &e2
    name: e2
base: &b {x: 1}
merged:
  <<: *b
alias: *e2
`))
	require.NoError(t, err)
	for _, tt := range []struct {
		path, text string
		ok         bool
	}{
		{"title", "t", true},
		{"engines[1].name", "e2", true},
		{"engines[0].dial", "d", true},
		{"merged.x", "1", true},
		{"alias.name", "e2", true},
		{"engines[2]", "", false},
		{"engines.name", "", false},
		{"title.x", "", false},
		{"engines[x]", "", false},
	} {
		n, ok := doc.Node(tt.path)
		require.Equal(t, tt.ok, ok, tt.path)
		if ok {
			require.Equal(t, tt.text, n.String(), tt.path)
		}
	}
	n, ok := doc.Node("")
	require.True(t, ok)
	require.NotNil(t, n)

	for _, tt := range []struct{ field, want string }{
		{"title", "f.yaml:1:1: title: m"},
		{"engines[1]", "f.yaml:6:5: engines[1]: m"},
		{"engines[0].dial", "f.yaml:4:5: engines[0].dial: m"},
		{"engines[0].listen", "f.yaml:3:5: engines[0].listen: m"},
		{"nothing.here", "f.yaml:1:1: nothing.here: m"},
		{"merged.x", "f.yaml:7:11: merged.x: m"},
	} {
		require.Equal(t, tt.want, doc.At(tt.field, "m").Error(), tt.field)
	}
	require.EqualError(t, doc.Positioned([]yamlfile.FieldError{{Field: "engines[0].dial", Msg: "b"}, {Field: "title", Msg: "a"}}),
		"2 errors:\n  f.yaml:1:1: title: a\n  f.yaml:4:5: engines[0].dial: b")
	require.NoError(t, doc.Positioned(nil))
}

func TestJoin(t *testing.T) {
	require.NoError(t, yamlfile.Join())
	require.NoError(t, yamlfile.Join(nil, yamlfile.Errors(nil), (*yamlfile.Error)(nil)))
	other := errors.New("disk on fire")
	err := yamlfile.Join(
		yamlfile.Errors{{File: "f.yaml", Line: 3, Col: 1, Msg: "c"}, {File: "f.yaml", Line: 1, Col: 5, Msg: "b"}},
		&yamlfile.Error{File: "f.yaml", Line: 1, Col: 2, Msg: "a"},
		errors.Join(&yamlfile.Error{File: "f.yaml", Line: 2, Col: 1, Msg: "d"}, yamlfile.FieldError{Field: "x", Msg: "e"}),
		other,
	)
	require.EqualError(t, err, `6 errors:
  x: e
  disk on fire
  f.yaml:1:2: a
  f.yaml:1:5: b
  f.yaml:2:1: d
  f.yaml:3:1: c`)
	require.ErrorIs(t, err, other)
	var list yamlfile.Errors
	require.ErrorAs(t, err, &list)
	require.True(t, list.InvalidInput())
	require.NoError(t, yamlfile.Errors{}.Err())
}

func TestReadFile(t *testing.T) {
	_, err := yamlfile.ReadFile(filepath.Join(t.TempDir(), "nope.yaml"))
	require.ErrorIs(t, err, os.ErrNotExist)
	require.ErrorContains(t, err, "nope.yaml: cannot read: no such file or directory")
}

// FuzzDecode checks that no document makes the decoder panic, and that
// every error it returns is Errors whose entries are positioned.
func FuzzDecode(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.yaml")
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err == nil {
			f.Add(data)
		}
	}
	for _, s := range []string{
		"title: x\nworkers: 3\n",
		"engines:\n  - &e {name: a, weight: 300}\n  - <<: *e\n",
		"extra: &x [1, {a: *x}]\nnext: {next: {title: 1}}\n",
		"timeout: 30\nratio: .nan\nports: {1: a, b: c}\n",
		"a: 1\n---\nb: 2\n",
		"extra: " + strings.Repeat("[", 100),
		"extra:\n" + strings.Repeat("- ", 100) + "x\n",
		"title: \"a\x00b\"\n",
		"title: caf\xe9\n",
		"extra:\n  a: &a [x, x, x, x, x, x, x, x, x, x]\n  b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n  c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n  d: [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n",
		"title: |\n  [[[[\n  - - -\nmode: '[[ it''s'\n# [[[\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		doc, err := yamlfile.Parse("fuzz.yaml", data)
		if err != nil {
			var list yamlfile.Errors
			if !errors.As(err, &list) || len(list) == 0 {
				t.Fatalf("Parse: error of type %T: %v", err, err)
			}
			return
		}
		var s sample
		err = doc.Decode(&s)
		if err == nil {
			return
		}
		list, ok := err.(yamlfile.Errors)
		if !ok || len(list) == 0 {
			t.Fatalf("Decode: error of type %T: %v", err, err)
		}
		for i, e := range list {
			if e.File != "fuzz.yaml" || e.Line < 1 || e.Col < 1 || e.Msg == "" {
				t.Fatalf("Decode: an error without a position: %#v", e)
			}
			if i > 0 && (e.Line < list[i-1].Line || e.Line == list[i-1].Line && e.Col < list[i-1].Col) {
				t.Fatalf("Decode: errors out of order: %v", err)
			}
		}
	})
}

// Base is exported: an inline struct behind an unexported embedded pointer
// could not be allocated.
type Base struct {
	Name string `yaml:"name"`
	Port int    `yaml:"port"`
}

type withInline struct {
	*Base `yaml:",inline"`
	Port  string `yaml:"port"` // shadows Base's
	Inner struct {
		X int `yaml:"x"`
	} `yaml:"inner"`
}

func TestDecodeInline(t *testing.T) {
	var got withInline
	require.NoError(t, decode(t, "name: a\nport: p\ninner: {x: 1}\n", &got))
	require.NotNil(t, got.Base)
	require.Equal(t, "a", got.Name)
	require.Equal(t, "p", got.Port)
	require.Equal(t, 0, got.Base.Port)
	require.Equal(t, 1, got.Inner.X)
	require.EqualError(t, decode(t, "nme: a\n", &got),
		`f.yaml:1:1: nme: unknown field "nme"; valid fields here: name, port, inner; did you mean "name"?`)

	var empty struct {
		S struct{} `yaml:"s"`
	}
	require.EqualError(t, decode(t, "s: {a: 1}\n", &empty), `f.yaml:1:5: s.a: unknown field "a"; no fields are valid here`)
}

// checked reports its mistakes as relative, partly positioned errors.
type checked struct{}

func (*checked) UnmarshalYAMLNode(n ast.Node) error {
	return yamlfile.Errors{
		{Field: "min", Msg: "too small"},
		{Field: "[2]", Msg: "bad item", Line: 9, Col: 9},
		{Msg: "whole"},
	}
}

type fieldChecked struct{}

func (*fieldChecked) UnmarshalYAMLNode(ast.Node) error {
	return yamlfile.FieldError{Field: "x", Msg: "wrong"}
}

func TestUnmarshalerErrorsArePlaced(t *testing.T) {
	var got struct {
		C checked      `yaml:"c"`
		F fieldChecked `yaml:"f"`
	}
	require.EqualError(t, decode(t, "c: {min: 1}\nf: 2\n", &got), `4 errors:
  f.yaml:1:4: c.min: too small
  f.yaml:1:4: c: whole
  f.yaml:2:4: f.x: wrong
  f.yaml:9:9: c[2]: bad item`)
}

func TestDecodeMapsOfEverything(t *testing.T) {
	var got struct {
		Structs map[string]engine  `yaml:"structs"`
		Any     map[any]int        `yaml:"any"`
		Bools   map[bool]string    `yaml:"bools"`
		Ptrs    map[string]*int    `yaml:"ptrs"`
		Text    map[netip.Addr]int `yaml:"text"`
	}
	require.NoError(t, decode(t, `
structs: {a: {name: x}, b: {dial: y}}
any: {1: 1, b: 2}
bools: {true: yes, false: no}
ptrs: {set: 1, unset: ~}
text: {127.0.0.1: 1}
`, &got))
	require.Equal(t, map[string]engine{"a": {Name: "x"}, "b": {Dial: "y"}}, got.Structs)
	require.Equal(t, map[any]int{"1": 1, "b": 2}, got.Any)
	require.Equal(t, map[bool]string{true: "yes", false: "no"}, got.Bools)
	require.Equal(t, map[string]*int{"set": intp(1), "unset": nil}, got.Ptrs)
	require.Equal(t, map[netip.Addr]int{netip.MustParseAddr("127.0.0.1"): 1}, got.Text)
	require.EqualError(t, decode(t, "text: {x: 1}\n", &got), `f.yaml:1:8: text.x: ParseAddr("x"): unable to parse IP`)

	var tagged struct {
		S string `yaml:"s"`
	}
	tagged.S = "kept"
	require.NoError(t, decode(t, "s: !!null null\n", &tagged))
	require.Equal(t, "kept", tagged.S)
}

func TestDecodeDeepNesting(t *testing.T) {
	var got any
	src := strings.Repeat("[", 1100) + strings.Repeat("]", 1100)
	doc, err := yamlfile.Parse("f.yaml", []byte(src))
	if err != nil {
		t.Skipf("the parser refuses it: %v", err)
	}
	require.ErrorContains(t, doc.Decode(&got), "values nest more than 1000 levels deep")
}

func TestUnpositioned(t *testing.T) {
	require.NoError(t, yamlfile.Unpositioned(nil))
	err := yamlfile.Unpositioned([]yamlfile.FieldError{{Field: "b", Msg: "x"}, {Field: "a", Msg: "y"}})
	require.EqualError(t, err, "2 errors:\n  b: x\n  a: y")
	require.Equal(t, "a: y", yamlfile.FieldError{Field: "a", Msg: "y"}.Error())
}
