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
			Links: []faults.Link{{Name: "l1", Listen: "127.0.0.1:1", Upstream: "127.0.0.1:2"},
				{Name: "l2", Listen: "127.0.0.1:3", Upstream: "127.0.0.1:4", Toxiproxy: "http://127.0.0.1:8475"}},
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

// TestHandleAndSpecRoundTrip carries what links on many servers and the
// toxics a fault needs add: each toxic's server, the target's other
// servers, and the toxic types of a spec and of each value of a parameter.
func TestHandleAndSpecRoundTrip(t *testing.T) {
	h := faults.Handle{ID: "s1", Fault: "f", Owner: "run", Toxiproxy: "http://127.0.0.1:8474",
		Servers:  []string{"http://127.0.0.1:8475", "http://127.0.0.1:8476"},
		Toxics:   []faults.ToxicRef{{Proxy: "l1", Name: "mc.a"}, {Proxy: "l2", Name: "mc.b", Toxiproxy: "http://127.0.0.1:8475"}},
		Injected: time.Unix(10, 0), Expires: time.Unix(20, 0)}
	b, err := gproto.Marshal(wire.HandleToProto(h))
	require.NoError(t, err)
	var ph proto.Handle
	require.NoError(t, gproto.Unmarshal(b, &ph))
	require.Equal(t, h, wire.HandleFromProto(&ph))

	spec := faults.Spec{Name: "f", NeedsLink: true, Toxics: []string{"latency", "mailchaos_stall"},
		Params: []faults.Param{{Name: "mode", Type: faults.TypeEnum, Enum: []string{"a", "b"},
			Toxics: map[string][]string{"a": {"latency"}, "b": {"mailchaos_stall"}}}}}
	b, err = gproto.Marshal(wire.SpecToProto(spec))
	require.NoError(t, err)
	var ps proto.Spec
	require.NoError(t, gproto.Unmarshal(b, &ps))
	require.Equal(t, spec, wire.SpecFromProto(&ps))
}
