package wire

import (
	"context"
	"errors"

	"github.com/mailchaos/mailchaos/faults"
	"github.com/mailchaos/mailchaos/plugins/proto"
)

// Client calls a plugin's fault service. Errors the plugin reports come
// back as Go errors (see [ErrorFromProto]); a gRPC error means the call
// itself failed (the plugin died, or the deadline passed).
type Client struct {
	c    proto.FaultClient
	done <-chan struct{}
}

// Exited is closed when the plugin's process has exited.
func (c *Client) Exited() <-chan struct{} { return c.done }

// Describe returns the plugin's spec and the version of its SDK.
func (c *Client) Describe(ctx context.Context) (faults.Spec, string, error) {
	resp, err := c.c.Describe(ctx, &proto.DescribeRequest{})
	if err != nil {
		return faults.Spec{}, "", err
	}
	if resp.GetSpec() == nil && resp.GetError() == nil {
		return faults.Spec{}, "", errors.New("the plugin described itself with nothing")
	}
	return SpecFromProto(resp.GetSpec()), resp.GetSdkVersion(), ErrorFromProto(resp.GetError())
}

// Validate checks a request.
func (c *Client) Validate(ctx context.Context, req faults.Request) error {
	resp, err := c.c.Validate(ctx, &proto.ValidateRequest{Request: RequestToProto(req)})
	if err != nil {
		return err
	}
	return ErrorFromProto(resp.GetError())
}

// Inject starts a fault.
func (c *Client) Inject(ctx context.Context, req faults.Request) (faults.Handle, error) {
	resp, err := c.c.Inject(ctx, &proto.InjectRequest{Request: RequestToProto(req)})
	if err != nil {
		return faults.Handle{}, err
	}
	if e := resp.GetError(); e != nil {
		return faults.Handle{}, ErrorFromProto(e)
	}
	return HandleFromProto(resp.GetHandle()), nil
}

// Remove ends a fault.
func (c *Client) Remove(ctx context.Context, h faults.Handle) error {
	resp, err := c.c.Remove(ctx, &proto.RemoveRequest{Handle: HandleToProto(h)})
	if err != nil {
		return err
	}
	return ErrorFromProto(resp.GetError())
}

// Status reports on a fault.
func (c *Client) Status(ctx context.Context, h faults.Handle) (faults.Status, error) {
	resp, err := c.c.Status(ctx, &proto.StatusRequest{Handle: HandleToProto(h)})
	if err != nil {
		return faults.Status{}, err
	}
	return StatusFromProto(resp.GetStatus()), ErrorFromProto(resp.GetError())
}
