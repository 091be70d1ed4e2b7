package faults_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/faults"
)

func TestUserDefaults(t *testing.T) {
	u := faults.User{Address: "alice@example.test"}
	require.Equal(t, "alice@example.test", u.LoginName())
	require.Equal(t, faults.DefaultPassword, u.Secret())
	u = faults.User{Address: "tester@realstack.test", Login: "tester", Password: "tester-pass"}
	require.Equal(t, "tester", u.LoginName())
	require.Equal(t, "tester-pass", u.Secret())
}

func TestTargetUser(t *testing.T) {
	target := faults.Target{Users: []faults.User{
		{Address: "tester@realstack.test", Login: "bob@example.test"},
		{Address: "bob@example.test", Login: "bob"},
	}}
	require.Equal(t, []string{"tester@realstack.test", "bob@example.test"}, target.Addresses())
	for _, tt := range []struct{ name, want string }{
		{"Bob@Example.test", "bob@example.test"}, // an address wins over a log-in name
		{"bob", "bob@example.test"},
		{"tester@realstack.test", "tester@realstack.test"},
	} {
		u, ok := target.User(tt.name)
		require.True(t, ok, tt.name)
		require.Equal(t, tt.want, u.Address, tt.name)
	}
	_, ok := target.User("nobody")
	require.False(t, ok)
}
