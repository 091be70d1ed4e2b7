package yamlfile_test

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml/ast"

	"github.com/mailchaos/mailchaos/internal/yamlfile"
)

// sample is a nested struct exercising every kind the decoder supports.
type sample struct {
	Title       string            `yaml:"title" jsonschema:"required" doc:"What the file is for."`
	Workers     int               `yaml:"workers" jsonschema:"minimum=1,maximum=64"`
	Small       int8              `yaml:"small"`
	Count       uint16            `yaml:"count"`
	Ratio       float64           `yaml:"ratio"`
	Ratio32     float32           `yaml:"ratio32"`
	Enabled     bool              `yaml:"enabled"`
	Timeout     time.Duration     `yaml:"timeout"`
	Mode        string            `yaml:"mode" jsonschema:"enum=fast|slow"`
	Tags        []string          `yaml:"tags" jsonschema:"pattern=^[a-z]+(,[a-z]+)?$"`
	Endpoints   map[string]string `yaml:"endpoints"`
	Ports       map[int]string    `yaml:"ports"`
	Engines     []engine          `yaml:"engines"`
	SteadyState []probe           `yaml:"steady-state"`
	Limit       *int              `yaml:"limit"`
	Extra       any               `yaml:"extra"`
	Rate        rate              `yaml:"rate"`
	Threshold   *threshold        `yaml:"threshold"`
	Addr        netip.Addr        `yaml:"addr"`
	Pair        [2]int            `yaml:"pair"`
	Next        *sample           `yaml:"next"`
	Untagged    string
	Skipped     string `yaml:"-"`
	common      `yaml:",inline"`
}

// common is inlined into sample.
type common struct {
	Owner string `yaml:"owner"`
}

type engine struct {
	Name   string `yaml:"name" jsonschema:"required"`
	Dial   string `yaml:"dial"`
	Weight uint8  `yaml:"weight"`
}

type probe struct {
	Name      string        `yaml:"name"`
	Tolerance tolerance     `yaml:"tolerance"`
	Timeout   time.Duration `yaml:"timeout"`
}

type tolerance struct {
	Min int `yaml:"min"`
	Max int `yaml:"max"`
}

// rate is "N/s" or "N/m", parsed by the Unmarshaler with positions.
type rate struct {
	N   int
	Per time.Duration
}

func (r *rate) UnmarshalYAMLNode(n ast.Node) error {
	s, ok := n.(*ast.StringNode)
	if !ok {
		return errors.New("want a rate such as 300/s")
	}
	num, unit, ok := strings.Cut(s.Value, "/")
	v, err := strconv.Atoi(num)
	if !ok || err != nil {
		return fmt.Errorf("%q is not a rate such as 300/s", s.Value)
	}
	switch unit {
	case "s":
		r.Per = time.Second
	case "m":
		r.Per = time.Minute
	default:
		// A positioned error: at the unit, within the scalar.
		tk := s.GetToken()
		return &yamlfile.Error{Line: tk.Position.Line, Col: tk.Position.Column + len(num) + 1,
			Msg: fmt.Sprintf("unknown unit %q; use s or m", unit)}
	}
	r.N = v
	return nil
}

func (r rate) JSONSchema() map[string]any {
	return map[string]any{"type": "string", "pattern": `^[0-9]+/[sm]$`}
}

// threshold is "> N" or "< N".
type threshold struct {
	Op    string
	Value float64
}

var errBadThreshold = errors.New("bad threshold")

func (t *threshold) UnmarshalYAMLNode(n ast.Node) error {
	s, ok := n.(*ast.StringNode)
	if !ok {
		return fmt.Errorf("%w: want a comparison such as \"> 5000\"", errBadThreshold)
	}
	op, num, _ := strings.Cut(s.Value, " ")
	v, err := strconv.ParseFloat(num, 64)
	if (op != ">" && op != "<") || err != nil {
		return fmt.Errorf("%w: %q is not a comparison such as \"> 5000\"", errBadThreshold, s.Value)
	}
	t.Op, t.Value = op, v
	return nil
}
