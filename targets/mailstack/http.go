package mailstack

import (
	"encoding/json"
	"log"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// httpHandler serves /metrics (Prometheus text format), /api/messages (the
// ledger as JSON: counts plus records, filtered by ?id= Message-ID,
// X-Mailchaos-Id or queue ID, or by ?state=) and /healthz.
func (s *Stack) httpHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /api/messages", func(w http.ResponseWriter, r *http.Request) {
		id, state := r.URL.Query().Get("id"), State(r.URL.Query().Get("state"))
		var recs []Record
		for _, rec := range s.ledger.all() {
			if id != "" && rec.MessageID != id && rec.MailchaosID != id && rec.QueueID != id {
				continue
			}
			if state != "" && rec.State != state {
				continue
			}
			recs = append(recs, rec)
		}
		if recs == nil {
			recs = []Record{}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(struct {
			Counts   Counts   `json:"counts"`
			Messages []Record `json:"messages"`
		}{s.ledger.counts(), recs})
	})
	return mux
}

// newStdLogger adapts slog for net/http's error log.
func newStdLogger(l *slog.Logger) *log.Logger { return log.New(slogWriter{l}, "", 0) }
