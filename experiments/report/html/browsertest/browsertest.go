// Package browsertest drives a real headless Chromium (Debian's chromium
// package) for the HTML report's tests: it starts a browser with a fresh
// profile and no network of its own, and records what a page does that a
// report must not: console errors, uncaught exceptions, CSP violations,
// dialogs, and requests to any address but the ones allowed.
//
// When no chromium is installed, [Start] skips the test with a line that
// says how to install it, except under CI=true, where it fails.
package browsertest

import (
	"bytes"
	"context"
	"fmt"
	"image/png"
	"math"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// Browser is one headless Chromium with one tab.
type Browser struct {
	// Ctx runs chromedp actions in the tab.
	Ctx context.Context

	mu       sync.Mutex
	problems []string
	requests []string
	allowed  func(url string) bool
}

// Start starts Chromium for t, stopped when t ends. allowed says which
// request URLs a page may make; any other is a problem.
func Start(t testing.TB, allowed func(url string) bool) *Browser {
	t.Helper()
	path := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("chromium is not installed (apt-get install chromium): the browser tests do not skip under CI=true")
		}
		t.Skip("chromium is not installed: the browser tests need it (apt-get install chromium)")
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1100, 900),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	b := &Browser{Ctx: ctx, allowed: allowed}
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc()
	})
	if err := chromedp.Listen(ctx, b.listen); err != nil {
		t.Fatalf("starting chromium (%s): %v", path, err)
	}
	return b
}

// listen records the events that are problems for a report.
func (b *Browser) listen(ev any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch ev := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeWarning {
			var args []string
			for _, a := range ev.Args {
				args = append(args, string(a.Value)+a.Description)
			}
			b.problems = append(b.problems, fmt.Sprintf("console %s: %s", ev.Type, strings.Join(args, " ")))
		}
	case *runtime.EventExceptionThrown:
		b.problems = append(b.problems, fmt.Sprintf("exception: %s %v", ev.ExceptionDetails.Text, ev.ExceptionDetails.Exception))
	case *log.EventEntryAdded:
		if ev.Entry.Level == log.EntryLevelError || ev.Entry.Level == log.EntryLevelWarning {
			b.problems = append(b.problems, fmt.Sprintf("log %s (%s): %s %s", ev.Entry.Level, ev.Entry.Source, ev.Entry.Text, ev.Entry.URL))
		}
	case *page.EventJavascriptDialogOpening:
		b.problems = append(b.problems, "dialog: "+ev.Message)
	case *network.EventRequestWillBeSent:
		b.requests = append(b.requests, ev.Request.URL)
		if b.allowed == nil || !b.allowed(ev.Request.URL) {
			b.problems = append(b.problems, "request: "+ev.Request.URL)
		}
	}
}

// Problems returns what the pages did that a report must not.
func (b *Browser) Problems() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.problems...)
}

// Requests returns every URL the pages requested.
func (b *Browser) Requests() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.requests...)
}

// Navigate loads url in the tab and waits for it to load.
func (b *Browser) Navigate(url string) error {
	ctx, cancel := context.WithTimeout(b.Ctx, 60*time.Second)
	defer cancel()
	return chromedp.Do(ctx, chromedp.Navigate(url))
}

// Eval evaluates a JavaScript expression in the tab.
func Eval[T any](b *Browser, expr string) (T, error) {
	ctx, cancel := context.WithTimeout(b.Ctx, 30*time.Second)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[T](expr))
}

// Screenshot returns a PNG of the whole page.
func (b *Browser) Screenshot() ([]byte, error) {
	ctx, cancel := context.WithTimeout(b.Ctx, 60*time.Second)
	defer cancel()
	return chromedp.Run(ctx, chromedp.FullScreenshot(100))
}

// Spread measures how much a PNG is not blank: the standard deviation of
// its pixels' luminance (0..255) and how many distinct colours it has.
func Spread(pngData []byte) (stddev float64, colours int, err error) {
	img, err := png.Decode(bytes.NewReader(pngData))
	if err != nil {
		return 0, 0, err
	}
	bounds := img.Bounds()
	seen := map[uint32]bool{}
	var sum, sum2, n float64
	for y := bounds.Min.Y; y < bounds.Max.Y; y++ {
		for x := bounds.Min.X; x < bounds.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			seen[(r>>8)<<16|(g>>8)<<8|bl>>8] = true
			l := (0.2126*float64(r) + 0.7152*float64(g) + 0.0722*float64(bl)) / 257
			sum += l
			sum2 += l * l
			n++
		}
	}
	if n == 0 {
		return 0, 0, fmt.Errorf("empty image %v", bounds)
	}
	mean := sum / n
	return math.Sqrt(math.Max(0, sum2/n-mean*mean)), len(seen), nil
}
