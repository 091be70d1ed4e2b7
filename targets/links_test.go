package targets_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/faults/network"
	"github.com/mailchaos/mailchaos/internal/exitcode"
	"github.com/mailchaos/mailchaos/targets"
	"github.com/mailchaos/mailchaos/targets/proxy"
)

// fleet is a links file with a link on the file's server, one on a server
// of its own and one on the file's server again.
const fleet = `toxiproxy: http://127.0.0.1:8474
links:
  - { name: mta, listen: "127.0.0.1:10025", upstream: "127.0.0.1:25" }
  - { name: clamd, toxiproxy: "http://localhost:9474", listen: "127.0.0.1:13310", upstream: "127.0.0.1:3310" }
  - { name: imap, upstream: "127.0.0.1:143" }
`

func TestLinksFor(t *testing.T) {
	f, err := targets.ParseFile("links.yaml", []byte(fleet), false)
	require.NoError(t, err)
	mine, skipped := f.LinksFor("127.0.0.1:9474")
	require.Equal(t, []proxy.Link{{Name: "clamd", Listen: "127.0.0.1:13310", Upstream: "127.0.0.1:3310", Enabled: true}}, mine)
	require.Equal(t, []string{
		"skipped link mta: it belongs to the server at http://127.0.0.1:8474",
		"skipped link imap: it belongs to the server at http://127.0.0.1:8474",
	}, skipped)

	// A file that names no server: every link is this server's.
	f, err = targets.ParseFile("links.yaml", []byte("links:\n  - { name: mta, listen: \"127.0.0.1:10025\", upstream: \"127.0.0.1:25\" }\n"), false)
	require.NoError(t, err)
	mine, skipped = f.LinksFor("127.0.0.1:8474")
	require.Len(t, mine, 1)
	require.Empty(t, skipped)
}

func TestLinksByServer(t *testing.T) {
	f, err := targets.ParseFile("links.yaml", []byte(fleet), false)
	require.NoError(t, err)
	groups, order, err := f.LinksByServer("http://127.0.0.1:1")
	require.NoError(t, err)
	require.Equal(t, []string{"http://127.0.0.1:8474", "http://localhost:9474"}, order, "servers in the order they first appear")
	require.Equal(t, []network.Proxy{
		{Name: "mta", Listen: "127.0.0.1:10025", Upstream: "127.0.0.1:25"},
		{Name: "imap", Upstream: "127.0.0.1:143"},
	}, groups["http://127.0.0.1:8474"])
	require.Equal(t, []network.Proxy{{Name: "clamd", Listen: "127.0.0.1:13310", Upstream: "127.0.0.1:3310"}}, groups["http://localhost:9474"])

	// Without a server in the file, the fallback; without one either, an
	// input error naming the link.
	f, err = targets.ParseFile("links.yaml", []byte("links:\n  - { name: mta, listen: \"127.0.0.1:10025\", upstream: \"127.0.0.1:25\" }\n"), false)
	require.NoError(t, err)
	_, order, err = f.LinksByServer("http://127.0.0.1:1")
	require.NoError(t, err)
	require.Equal(t, []string{"http://127.0.0.1:1"}, order)
	_, _, err = f.LinksByServer("")
	require.EqualError(t, err, "links[0] (mta): no toxiproxy server for it: give toxiproxy: in the file (on the link or at the top) or --toxiproxy URL")
	require.Equal(t, exitcode.Invalid, exitcode.Of(err))
}
