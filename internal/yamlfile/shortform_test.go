package yamlfile_test

import (
	"reflect"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/internal/yamlfile"
)

// account is a struct with a short form: a name alone.
type account struct {
	Name string `yaml:"name" jsonschema:"required"`
	Role string `yaml:"role"`
}

func (a *account) UnmarshalText(b []byte) error {
	*a = account{Name: string(b), Role: "user"}
	return nil
}

type accounts struct {
	Accounts []account `yaml:"accounts"`
	Owner    account   `yaml:"owner"`
}

func TestDecodeShortAndLongForms(t *testing.T) {
	var got accounts
	require.NoError(t, decode(t, `
accounts:
  - alice
  - name: bob
    role: admin
  - {name: carol}
  - 42
owner: {name: dave}
`, &got))
	require.Equal(t, accounts{
		Accounts: []account{{Name: "alice", Role: "user"}, {Name: "bob", Role: "admin"}, {Name: "carol"}, {Name: "42", Role: "user"}},
		Owner:    account{Name: "dave"},
	}, got)

	err := decode(t, "accounts:\n  - name: bob\n    rol: admin\n  - [alice]\n", &got)
	require.EqualError(t, err, `2 errors:
  f.yaml:3:5: accounts[0].rol: unknown field "rol"; valid fields here: name, role; did you mean "role"?
  f.yaml:4:5: accounts[1]: cannot use a list here: want a string or a mapping`)
}

func TestSchemaOfShortAndLongForms(t *testing.T) {
	data, err := yamlfile.Schema(reflect.TypeFor[accounts](), "")
	require.NoError(t, err)
	require.JSONEq(t, `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "additionalProperties": false,
  "properties": {
    "accounts": {"type": "array", "items": {"oneOf": [{"type": "string"}, {"$ref": "#/$defs/account"}]}},
    "owner": {"oneOf": [{"type": "string"}, {"$ref": "#/$defs/account"}]}
  },
  "$defs": {
    "account": {
      "type": "object",
      "additionalProperties": false,
      "properties": {"name": {"type": "string"}, "role": {"type": "string"}},
      "required": ["name"]
    }
  }
}`, string(data))
}
