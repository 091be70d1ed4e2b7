package probes

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mailchaos/mailchaos/faults"
)

// Probe kind names.
const (
	// KindTCP is the tcp probe: TCP connect latency.
	KindTCP = "tcp"
	// KindBanner is the banner probe: time to a server's first line.
	KindBanner = "banner"
)

// maxBanner bounds the first line a banner probe reads.
const maxBanner = 4096

// endpointParam is the required endpoint parameter of tcp and banner.
func endpointParam() faults.Param {
	return faults.Param{Name: "endpoint", Type: faults.TypeAddress, Required: true,
		Doc: "where to connect: a name in the target's endpoints (smtp, imap, metrics, av-engine-1, ...) or a host:port address"}
}

// TCPKind is the tcp probe: the time to establish a TCP connection to an
// endpoint, in seconds. A refused or timed-out connection is a failed
// sample.
func TCPKind() Kind {
	k := Kind{
		Name:    KindTCP,
		Summary: "TCP connect latency to an endpoint",
		Unit:    "s",
		Params:  []faults.Param{endpointParam()},
	}
	k.New = func(cfg Config) (Probe, error) {
		v, err := checkParams(k, cfg)
		if err != nil {
			return nil, err
		}
		addr, err := resolveEndpoint(k.Name, "endpoint", v.String("endpoint"), cfg.Target)
		if err != nil {
			return nil, err
		}
		return &tcpProbe{addr: addr}, nil
	}
	return k
}

// tcpProbe measures connect latency. It keeps no state.
type tcpProbe struct{ addr string }

var _ Probe = (*tcpProbe)(nil)

// Measure connects and closes at once. It is safe for concurrent use.
func (p *tcpProbe) Measure(ctx context.Context) Sample {
	start := time.Now()
	conn, stop, err := dial(ctx, p.addr)
	if err != nil {
		return failed(start, ctxErr(ctx, "connect to "+p.addr, err))
	}
	elapsed := time.Since(start)
	stop()
	_ = conn.Close()
	return Sample{At: start, Value: elapsed.Seconds()}
}

// Unit is seconds.
func (p *tcpProbe) Unit() string { return "s" }

// Close does nothing: the probe keeps no connections.
func (p *tcpProbe) Close() error { return nil }

// BannerKind is the banner probe: the time from connecting to an endpoint
// until its first line (an SMTP "220 ..." or IMAP "* OK ..." greeting) has
// been read, in seconds. No line by the deadline, or a line that does not
// start with `expect`, is a failed sample.
func BannerKind() Kind {
	k := Kind{
		Name:    KindBanner,
		Summary: "time from connecting to an endpoint until its greeting line",
		Unit:    "s",
		Params: []faults.Param{endpointParam(),
			{Name: "expect", Type: faults.TypeString,
				Doc: "the first line must start with this (for example 220 for SMTP or \"* OK\" for IMAP); empty accepts any line"},
		},
	}
	k.New = func(cfg Config) (Probe, error) {
		v, err := checkParams(k, cfg)
		if err != nil {
			return nil, err
		}
		addr, err := resolveEndpoint(k.Name, "endpoint", v.String("endpoint"), cfg.Target)
		if err != nil {
			return nil, err
		}
		return &bannerProbe{addr: addr, expect: v.String("expect")}, nil
	}
	return k
}

// bannerProbe reads greetings. It keeps no state.
type bannerProbe struct {
	addr   string
	expect string
}

var _ Probe = (*bannerProbe)(nil)

// Measure connects, reads one line and closes. It is safe for concurrent
// use.
func (p *bannerProbe) Measure(ctx context.Context) Sample {
	start := time.Now()
	conn, stop, err := dial(ctx, p.addr)
	if err != nil {
		return failed(start, ctxErr(ctx, "connect to "+p.addr, err))
	}
	defer conn.Close()
	defer stop()
	line, err := bufio.NewReaderSize(conn, maxBanner).ReadSlice('\n')
	elapsed := time.Since(start)
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return failed(start, fmt.Errorf("banner of %s: no end of line in the first %d bytes", p.addr, maxBanner))
		}
		return failed(start, ctxErr(ctx, "read banner of "+p.addr, err))
	}
	text := strings.TrimRight(string(line), "\r\n")
	if !strings.HasPrefix(text, p.expect) {
		return failed(start, fmt.Errorf("banner of %s is %q, which does not start with %q", p.addr, text, p.expect))
	}
	return Sample{At: start, Value: elapsed.Seconds()}
}

// Unit is seconds.
func (p *bannerProbe) Unit() string { return "s" }

// Close does nothing: the probe keeps no connections.
func (p *bannerProbe) Close() error { return nil }
