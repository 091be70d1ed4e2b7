package wire_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	gproto "google.golang.org/protobuf/proto"

	"github.com/mailchaos/mailchaos/faults"
	"github.com/mailchaos/mailchaos/plugins/internal/wire"
	"github.com/mailchaos/mailchaos/plugins/proto"
)

func TestRequestRoundTrip(t *testing.T) {
	req := faults.Request{ID: "r1", Owner: "run", Fault: "f", Links: []string{"l1"},
		Params: faults.Params{"a": "1"}, Duration: time.Second, TTL: time.Minute,
		Target: faults.Target{
			Endpoints: map[string]string{"smtp": "127.0.0.1:25"},
			Links:     []faults.Link{{Name: "l1", Listen: "127.0.0.1:1", Upstream: "127.0.0.1:2"}},
			Users: []faults.User{
				{Address: "alice@example.test"},
				{Address: "tester@realstack.test", Login: "tester", Password: "tester-pass"},
			},
			Toxiproxy: "http://127.0.0.1:8474",
		}}
	msg := wire.RequestToProto(req)
	// Through the wire bytes, as a plugin receives it.
	b, err := gproto.Marshal(msg)
	require.NoError(t, err)
	var got proto.Request
	require.NoError(t, gproto.Unmarshal(b, &got))
	require.Equal(t, req, wire.RequestFromProto(&got))
	require.Equal(t, []string{"alice@example.test", "tester@realstack.test"}, got.GetTarget().GetUsers(),
		"users keeps the addresses for plugins that predate accounts")
}

func TestRequestFromAnOlderHost(t *testing.T) {
	// A host that predates accounts sends the addresses alone.
	got := wire.RequestFromProto(&proto.Request{Target: &proto.Target{Users: []string{"alice@example.test"}}})
	require.Equal(t, []faults.User{{Address: "alice@example.test"}}, got.Target.Users)
	require.Equal(t, "alice@example.test", got.Target.Users[0].LoginName())
	require.Equal(t, faults.DefaultPassword, got.Target.Users[0].Secret())
}
