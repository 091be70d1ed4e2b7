package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/mailchaos/mailchaos/experiments/journal"
	htmlreport "github.com/mailchaos/mailchaos/experiments/report/html"
)

// dashboardCloseTimeout is how long the end of a run waits for the pages
// following it to get the final report.
const dashboardCloseTimeout = 5 * time.Second

// htmlFlag writes the HTML report (run and report).
func htmlFlag() ucli.Flag {
	return &ucli.StringFlag{Name: "html", Usage: "write the HTML report (one self-contained page, charts included) to `FILE`"}
}

// dashboardFlag serves the run live (run).
func dashboardFlag() ucli.Flag {
	return &ucli.StringFlag{Name: "dashboard", Usage: "serve the run live on the loopback `ADDR` (127.0.0.1:PORT; port 0 picks one): the HTML report, updated as samples arrive"}
}

// writeHTMLReport renders the journal at jpath to the HTML report file
// path, when one is asked for.
func writeHTMLReport(jpath, path string) error {
	if path == "" {
		return nil
	}
	events, err := journal.ReadFile(jpath)
	if err != nil {
		return err
	}
	return htmlreport.WriteFile(path, events)
}

// dashboard is a run's live view; a nil *dashboard serves nothing.
type dashboard struct {
	live *htmlreport.Live
	srv  *htmlreport.Server
}

// startDashboard serves the live view on addr, when one is asked for, and
// prints its address.
func startDashboard(addr string, out io.Writer) (*dashboard, error) {
	if addr == "" {
		return nil, nil
	}
	if err := checkAddr(addr); err != nil {
		return nil, &usageError{fmt.Errorf("flag --dashboard: %w", err)}
	}
	live := htmlreport.NewLive()
	srv, err := htmlreport.Listen(addr, live)
	if errors.Is(err, htmlreport.ErrNotLoopback) {
		return nil, &usageError{fmt.Errorf("flag --dashboard: %w", err)}
	}
	if err != nil {
		return nil, fmt.Errorf("flag --dashboard: %w", err)
	}
	fmt.Fprintf(out, "dashboard: %s\n", srv.URL())
	return &dashboard{live: live, srv: srv}, nil
}

// observe is the runner's observer: nil without a dashboard.
func (d *dashboard) observe() func(journal.Event) {
	if d == nil {
		return nil
	}
	return d.live.Observe
}

// close sends the final report to the pages and stops the server.
func (d *dashboard) close(st *state) {
	if d == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), dashboardCloseTimeout)
	defer cancel()
	if err := d.srv.Close(ctx); err != nil {
		fmt.Fprintf(st.env.Stderr, "mailchaos: dashboard: %v\n", err)
	}
}
