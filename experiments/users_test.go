package experiments_test

import (
	"context"
	"encoding/json"
	"maps"
	"reflect"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/experiments"
	"github.com/mailchaos/mailchaos/internal/yamlfile"
	"github.com/mailchaos/mailchaos/targets"
)

func TestTargetUsersTakeBothForms(t *testing.T) {
	e, err := experiments.Parse(context.Background(), "users.yaml", []byte(`version: 1
title: an external target whose users log in by short names
target:
  kind: external
  endpoints: { smtp: "127.0.0.1:25", imap: "127.0.0.1:143" }
  users:
    - alice@example.test
    - { address: tester@realstack.test, login: tester, password: tester-pass }
steady-state:
  - name: logins
    probe: imap-login
    tolerance: { max: 1s }
method:
  - fault: load-surge
    for: 10s
recovery: { within: 10s }
`), builtinCatalog(t))
	require.NoError(t, err)
	require.Equal(t, []targets.FileUser{
		{Address: "alice@example.test"},
		{Address: "tester@realstack.test", Login: "tester", Password: "tester-pass"},
	}, e.Target.Users)
}

func TestSchemaDescribesBothFormsOfUsers(t *testing.T) {
	b, err := yamlfile.Schema(reflect.TypeFor[experiments.Experiment](), "")
	require.NoError(t, err)
	var s struct {
		Defs map[string]struct {
			Properties map[string]json.RawMessage `json:"properties"`
			Required   []string                   `json:"required"`
		} `json:"$defs"`
	}
	require.NoError(t, json.Unmarshal(b, &s))
	require.JSONEq(t, `{"type": "array", "items": {"oneOf": [{"type": "string"}, {"$ref": "#/$defs/FileUser"}]}}`,
		string(s.Defs["Target"].Properties["users"]))
	user := s.Defs["FileUser"]
	require.ElementsMatch(t, []string{"address", "login", "password"}, slices.Collect(maps.Keys(user.Properties)))
	require.Equal(t, []string{"address"}, user.Required)
}
