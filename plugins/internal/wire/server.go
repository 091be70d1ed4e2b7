package wire

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"runtime/debug"

	"github.com/mailchaos/mailchaos/faults"
	"github.com/mailchaos/mailchaos/plugins/proto"
)

// server serves an injector over gRPC. A panic in the injector is recovered
// into a PANIC error, so a plugin survives its own bugs and the host hears
// which call failed.
type server struct {
	proto.UnimplementedFaultServer
	impl       faults.Injector
	sdkVersion string
	onInject   func(faults.Handle)
	onRemove   func(faults.Handle)
	onRequest  func(faults.Request) func(bool)
	panicLog   io.Writer
}

// guard turns a panic into an error of kind PANIC, with the stack written
// to the plugin's log (stderr, which the host relays).
func (s *server) guard(call string, e **proto.Error) {
	if p := recover(); p != nil {
		*e = &proto.Error{Kind: proto.Error_PANIC, Message: fmt.Sprintf("%s panicked: %v", call, p)}
		if s.panicLog != nil {
			// One JSON record, which the host logs at error level with
			// the stack as an attribute.
			line, _ := json.Marshal(map[string]string{"@level": "error", "@message": (*e).Message, "stack": string(debug.Stack())})
			_, _ = s.panicLog.Write(append(line, '\n'))
		}
	}
}

func (s *server) Describe(ctx context.Context, _ *proto.DescribeRequest) (resp *proto.DescribeResponse, _ error) {
	ctx, cancel := PluginDeadline(ctx)
	defer cancel()
	resp = &proto.DescribeResponse{SdkVersion: s.sdkVersion}
	defer s.guard("describe", &resp.Error)
	spec, err := s.impl.Describe(ctx)
	resp.Spec, resp.Error = SpecToProto(spec), ErrorToProto(err)
	return resp, nil
}

func (s *server) Validate(ctx context.Context, in *proto.ValidateRequest) (resp *proto.ValidateResponse, _ error) {
	ctx, cancel := PluginDeadline(ctx)
	defer cancel()
	resp = &proto.ValidateResponse{}
	defer s.guard("validate", &resp.Error)
	resp.Error = ErrorToProto(s.impl.Validate(ctx, RequestFromProto(in.GetRequest())))
	return resp, nil
}

func (s *server) Inject(ctx context.Context, in *proto.InjectRequest) (resp *proto.InjectResponse, _ error) {
	ctx, cancel := PluginDeadline(ctx)
	defer cancel()
	resp = &proto.InjectResponse{}
	defer s.guard("inject", &resp.Error)
	req := RequestFromProto(in.GetRequest())
	if s.onRequest != nil {
		ended := s.onRequest(req)
		defer func() { ended(resp.Error == nil && resp.Handle != nil) }()
	}
	h, err := s.impl.Inject(ctx, req)
	if err != nil {
		resp.Error = ErrorToProto(err)
		return resp, nil
	}
	if s.onInject != nil {
		s.onInject(h)
	}
	resp.Handle = HandleToProto(h)
	return resp, nil
}

func (s *server) Remove(ctx context.Context, in *proto.RemoveRequest) (resp *proto.RemoveResponse, _ error) {
	ctx, cancel := PluginDeadline(ctx)
	defer cancel()
	resp = &proto.RemoveResponse{}
	defer s.guard("remove", &resp.Error)
	h := HandleFromProto(in.GetHandle())
	if err := s.impl.Remove(ctx, h); err != nil {
		resp.Error = ErrorToProto(err)
		return resp, nil
	}
	if s.onRemove != nil {
		s.onRemove(h)
	}
	return resp, nil
}

func (s *server) Status(ctx context.Context, in *proto.StatusRequest) (resp *proto.StatusResponse, _ error) {
	ctx, cancel := PluginDeadline(ctx)
	defer cancel()
	resp = &proto.StatusResponse{}
	defer s.guard("status", &resp.Error)
	st, err := s.impl.Status(ctx, HandleFromProto(in.GetHandle()))
	resp.Status, resp.Error = StatusToProto(st), ErrorToProto(err)
	return resp, nil
}
