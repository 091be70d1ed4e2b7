package experiments_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/experiments"
	"github.com/mailchaos/mailchaos/internal/yamlfile"
)

// TestAddressesOffLoopbackNeedBothConsents: a probe's or a fault's address
// off loopback passes the guard only when the target allows remote hosts
// and so does the command line. (0.0.0.0: nothing is contacted here, and a
// connection there would only reach this machine.)
func TestAddressesOffLoopbackNeedBothConsents(t *testing.T) {
	src := func(allow string) []byte {
		return []byte(`version: 1
title: remote
target:
  kind: external
  allow-remote: ` + allow + `
  endpoints: { smtp: "127.0.0.1:25" }
steady-state:
  - name: banner
    probe: banner
    params: { endpoint: "0.0.0.0:25", expect: "220" }
    tolerance: { max: 1s }
method:
  - fault: maintenance
    for: 10s
    params: { site: site-a, admin: "0.0.0.0:8080" }
recovery: { within: 10s }
`)
	}
	for _, tt := range []struct {
		file, flag bool
		refused    int
	}{{false, false, 2}, {true, false, 2}, {false, true, 2}, {true, true, 0}} {
		cat := builtinCatalog(t)
		cat.AllowRemote = tt.flag
		allow := "false"
		if tt.file {
			allow = "true"
		}
		_, err := experiments.Parse(context.Background(), "remote.yaml", src(allow), cat)
		if tt.refused == 0 {
			require.NoError(t, err)
			continue
		}
		var ye yamlfile.Errors
		require.True(t, errors.As(err, &ye), "%v", err)
		require.Len(t, ye, tt.refused, "file %v, flag %v: %v", tt.file, tt.flag, err)
		require.ErrorContains(t, err, "0.0.0.0:25 is not a loopback address")
		require.ErrorContains(t, err, "0.0.0.0:8080 is not a loopback address")
	}
}
