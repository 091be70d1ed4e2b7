package plugins

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"sort"
	"sync"

	"github.com/hashicorp/go-hclog"
)

// logBridge turns the JSON lines of an hclog logger (go-plugin's own
// messages, and the plugin's log lines go-plugin relays at their level)
// into records of mailchaos' log, tagged with the plugin's name.
type logBridge struct {
	log *slog.Logger
	// quiet is true while the host stops the plugin on purpose: go-plugin's
	// messages about the process exiting are then expected, and logged at
	// debug level.
	quiet func() bool

	mu  sync.Mutex
	buf []byte
}

// newHCLogger returns the hclog logger go-plugin is given for one plugin.
func newHCLogger(log *slog.Logger, quiet func() bool) hclog.Logger {
	level := hclog.Info
	switch {
	case log.Enabled(context.Background(), slog.LevelDebug):
		level = hclog.Debug
	case !log.Enabled(context.Background(), slog.LevelInfo):
		level = hclog.Warn
	}
	return hclog.New(&hclog.LoggerOptions{Output: &logBridge{log: log, quiet: quiet}, JSONFormat: true, Level: level})
}

func (b *logBridge) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	for {
		i := bytes.IndexByte(b.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		b.line(b.buf[:i])
		b.buf = b.buf[i+1:]
	}
}

// lifecycle are go-plugin's messages about a plugin process ending.
var lifecycle = map[string]bool{"plugin process exited": true, "plugin failed to exit gracefully": true} //nolint:gochecknoglobals // constant set

func (b *logBridge) line(line []byte) {
	var m map[string]any
	if err := json.Unmarshal(line, &m); err != nil {
		b.log.Info(string(line))
		return
	}
	msg, _ := m["@message"].(string)
	lvl := slog.LevelInfo
	switch m["@level"] {
	case "trace", "debug":
		lvl = slog.LevelDebug
	case "warn":
		lvl = slog.LevelWarn
	case "error":
		lvl = slog.LevelError
	}
	if lifecycle[msg] && b.quiet() {
		lvl = slog.LevelDebug
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		// go-plugin passes the plugin's own timestamp along; the record
		// has one already.
		if k != "" && k[0] != '@' && k != "timestamp" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	args := make([]any, 0, 2*len(keys))
	for _, k := range keys {
		name := k
		if k == "plugin" { // go-plugin's own key: the executable
			name = "executable"
		}
		args = append(args, name, m[k])
	}
	b.log.Log(context.Background(), lvl, msg, args...)
}

// lineWriter logs each line written to it at one level: a plugin's
// standard output and error, which go-plugin relays.
type lineWriter struct {
	log   *slog.Logger
	level slog.Level
	what  string

	mu  sync.Mutex
	buf []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		w.log.Log(context.Background(), w.level, string(w.buf[:i]), "stream", w.what)
		w.buf = w.buf[i+1:]
	}
}
