package faults_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/faults"
)

// TestCheckAddressRefusesTricks: an address that a URL built from it would
// read as another host is no address, and userinfo in a URL is refused.
func TestCheckAddressRefusesTricks(t *testing.T) {
	for _, bad := range []string{
		"localhost:@evil.example", "127.0.0.1:@evil.example", "127.0.0.1:80@evil.example",
		"127.0.0.1:99999", "127.0.0.1:http", "[::1%eth0]:25", "http://127.0.0.1:@evil.example/x",
		"http://user:pass@127.0.0.1:9464/x", "ftp://127.0.0.1:21",
	} {
		require.Error(t, faults.CheckAddress(bad, nil, false), bad)
		require.Error(t, faults.CheckAddress(bad, nil, true), "%s is refused even with consent", bad)
	}
	for _, good := range []string{"127.0.0.1:25", "localhost:2525", "[::1]:143", "http://127.0.0.1:9464/metrics"} {
		require.NoError(t, faults.CheckAddress(good, nil, false), good)
	}
	var remote *faults.RemoteError
	require.ErrorAs(t, faults.CheckAddress("0.0.0.0:25", nil, false), &remote)
	require.NoError(t, faults.CheckAddress("0.0.0.0:25", nil, true))
	base, err := faults.HTTPBase("[::1]:9464")
	require.NoError(t, err)
	require.Equal(t, "http://[::1]:9464", base)
	_, err = faults.HTTPBase("localhost:@evil.example")
	require.Error(t, err)
}
