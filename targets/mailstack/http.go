package mailstack

import (
	"context"
	"encoding/json"
	"errors"
	"log"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mailchaos/mailchaos/internal/httpguard"
)

// httpHandler serves /metrics (Prometheus text format), /api/messages (the
// ledger as JSON: counts plus records, filtered by ?id= Message-ID,
// X-Mailchaos-Id or queue ID, or by ?state=), /healthz, and the access
// tier's admin endpoints:
//
//	GET  /api/sites                 {"sites": [SiteStatus...]}
//	GET  /api/sites/{name}          SiteStatus
//	POST /api/sites/{name}/drain    drains the site, answers once its sessions are gone: SiteStatus
//	POST /api/sites/{name}/restore  SiteStatus
//
// An unknown site is 404 and any other failure 500, both with
// {"error": "..."}; a drain cut short by the client hanging up is 503.
//
// Everything is behind internal/httpguard: requests from web pages (a
// foreign Origin or Host) are 403, writes without
// Content-Type: application/json 415, and, with [Options.APIToken] set,
// requests without "Authorization: Bearer TOKEN" 401.
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
	mux.HandleFunc("GET /api/sites", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, struct {
			Sites []SiteStatus `json:"sites"`
		}{s.Sites()})
	})
	mux.HandleFunc("GET /api/sites/{name}", func(w http.ResponseWriter, r *http.Request) {
		s.siteReply(w, r.PathValue("name"), nil)
	})
	mux.HandleFunc("POST /api/sites/{name}/drain", func(w http.ResponseWriter, r *http.Request) {
		s.siteReply(w, r.PathValue("name"), s.Drain(r.Context(), r.PathValue("name")))
	})
	mux.HandleFunc("POST /api/sites/{name}/restore", func(w http.ResponseWriter, r *http.Request) {
		s.siteReply(w, r.PathValue("name"), s.Restore(r.PathValue("name")))
	})
	return httpguard.Wrap(mux, httpguard.Config{Listen: s.cfg.Metrics.Listen, Token: s.opts.APIToken})
}

// siteReply answers an admin request on a site with its state, or with the
// error of the operation.
func (s *Stack) siteReply(w http.ResponseWriter, name string, opErr error) {
	st, err := s.Site(name)
	if err == nil {
		err = opErr
	}
	var unknown *UnknownSiteError
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, st)
	case errors.As(err, &unknown):
		writeJSON(w, http.StatusNotFound, map[string]string{"error": err.Error()})
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
	default:
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// newStdLogger adapts slog for net/http's error log.
func newStdLogger(l *slog.Logger) *log.Logger { return log.New(slogWriter{l}, "", 0) }
