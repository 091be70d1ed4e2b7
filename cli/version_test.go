package cli

import (
	"runtime/debug"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestResolveVersion(t *testing.T) {
	t.Parallel()
	vcs := func(v, rev, modified string) *debug.BuildInfo {
		bi := &debug.BuildInfo{Main: debug.Module{Path: "github.com/mailchaos/mailchaos", Version: v}}
		if rev != "" {
			bi.Settings = append(bi.Settings, debug.BuildSetting{Key: "vcs.revision", Value: rev},
				debug.BuildSetting{Key: "vcs.modified", Value: modified})
		}
		return bi
	}
	for _, tc := range []struct {
		name   string
		linked string
		bi     *debug.BuildInfo
		want   string
	}{
		{"ldflags win", "v1.4.0-3-gabc", vcs("v1.2.0", "0123456789abcdef0123", "false"), "v1.4.0-3-gabc"},
		{"go install @v", "", vcs("v1.2.0", "", ""), "v1.2.0"},
		{"tagged checkout", "", vcs("v1.2.0+dirty", "0123456789abcdef0123", "true"), "v1.2.0+dirty"},
		{"clone, pseudo-version", "", vcs("v0.0.0-20261202070523-0123456789ab", "0123456789abcdef0123", "false"), "0123456789ab"},
		{"clone, changed", "", vcs("v0.0.0-20261202070523-0123456789ab+dirty", "0123456789abcdef0123", "true"), "0123456789ab+dirty"},
		{"clone, pre-release base", "", vcs("v1.2.1-0.20261202070523-0123456789ab", "0123456789abcdef0123", "false"), "0123456789ab"},
		{"devel with vcs", "", vcs("(devel)", "0123456789abcdef0123", "true"), "0123456789ab+dirty"},
		{"devel without vcs", "", vcs("(devel)", "", ""), "dev"},
		{"no build info", "", nil, "dev"},
	} {
		require.Equal(t, tc.want, resolveVersion(tc.linked, tc.bi), tc.name)
	}
}
