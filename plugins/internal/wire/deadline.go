package wire

import (
	"context"
	"errors"
	"strconv"
	"time"

	"google.golang.org/grpc/metadata"
)

// DeadlineGrace is how long after a call's deadline the host still waits
// for the plugin's answer. The host sends the deadline itself in the call's
// metadata and gives gRPC this much more; the plugin works to the deadline
// it was sent. A plugin that honours its deadline therefore answers (with
// an error, if it ran out of time) before the host gives up, and one that
// does not is known to be hung.
const DeadlineGrace = 500 * time.Millisecond

// deadlineKey is the metadata key of a call's deadline, in Unix nanoseconds.
const deadlineKey = "mailchaos-deadline-unix-nano"

// HostDeadline prepares ctx for a call: the deadline goes into the call's
// metadata, and the gRPC deadline is [DeadlineGrace] later. A cancellation
// of ctx still ends the call at once. Without a deadline, ctx is returned
// as it is.
func HostDeadline(ctx context.Context) (context.Context, context.CancelFunc) {
	d, ok := ctx.Deadline()
	if !ok {
		return context.WithCancel(ctx)
	}
	c, cancel := context.WithDeadline(context.WithoutCancel(ctx), d.Add(DeadlineGrace))
	stop := context.AfterFunc(ctx, func() {
		if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			cancel()
		}
	})
	c = metadata.AppendToOutgoingContext(c, deadlineKey, strconv.FormatInt(d.UnixNano(), 10))
	return c, func() { stop(); cancel() }
}

// PluginDeadline gives an incoming call the deadline the host sent, so
// that the plugin's work ends when the host's deadline does.
func PluginDeadline(ctx context.Context) (context.Context, context.CancelFunc) {
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get(deadlineKey); len(v) == 1 {
			if ns, err := strconv.ParseInt(v[0], 10, 64); err == nil {
				return context.WithDeadline(ctx, time.Unix(0, ns))
			}
		}
	}
	return context.WithCancel(ctx)
}
