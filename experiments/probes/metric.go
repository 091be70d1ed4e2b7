package probes

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/mailchaos/mailchaos/faults"
	"github.com/mailchaos/mailchaos/internal/httpguard"
)

// KindMetric is the metric probe's name.
const KindMetric = "metric"

// What the metric probe computes from the selected series.
const (
	// MetricGauge is the current value (of a gauge, counter or untyped
	// metric), summed over the matching series.
	MetricGauge = "gauge"
	// MetricRate is the per-second increase of a counter since the
	// previous sample, summed over the matching series, with counter
	// resets handled per series.
	MetricRate = "rate"
	// MetricQuantile is a quantile of a histogram's observations between
	// the previous sample and this one.
	MetricQuantile = "quantile"
	// MetricRatio is the increase of a counter divided by the increase of
	// another (param per) between the previous sample and this one.
	MetricRatio = "ratio"
)

// maxScrape bounds the size of a /metrics response.
const maxScrape = 64 << 20

// MetricKind is the metric probe: it scrapes a Prometheus text endpoint and
// reports one number from one metric family.
//
// Series are selected by `labels` (every given pair must match; other
// labels may differ) and summed. `kind` says what is reported: gauge (the
// current value), rate (per-second increase since the previous sample) or
// quantile (the `quantile` of the histogram's observations since the
// previous sample, interpolated linearly within buckets like Prometheus'
// histogram_quantile; a quantile that falls in the +Inf bucket is reported
// as the highest finite bucket bound). For a histogram or summary, the
// metric name may end in _count or _sum to use those series.
//
// The first sample of rate and quantile is skipped (it has nothing to
// compare with), as is a quantile sample when no observation was made since
// the previous one. A metric that is missing, an unreachable endpoint or a
// non-200 answer is a failed sample.
func MetricKind() Kind {
	k := Kind{
		Name:    KindMetric,
		Summary: "a number from a Prometheus metrics endpoint: gauge, counter rate or histogram quantile",
		Unit:    "",
		Params: []faults.Param{
			{Name: "metric", Type: faults.TypeString, Required: true,
				Doc: "the metric family (mailstack_queue_depth); for histograms and summaries also NAME_count or NAME_sum"},
			{Name: "labels", Type: faults.TypeString,
				Doc: "label pairs every selected series must have, comma-separated (reason=virus,engine=av-engine-2); matching series are summed"},
			{Name: "kind", Type: faults.TypeEnum, Default: MetricGauge, Enum: []string{MetricGauge, MetricRate, MetricQuantile, MetricRatio},
				Doc: "gauge: current value; rate: per-second increase since the previous sample; quantile: histogram quantile of the observations since the previous sample; ratio: increase of metric divided by the increase of per"},
			{Name: "per", Type: faults.TypeString,
				Doc: "kind ratio: the denominator counter (mailstack_accepted_total), with the same labels"},
			{Name: "window", Type: faults.TypeDuration, Default: "0s", Min: "0s", Max: "1h",
				Doc: "kind ratio: the span both increases are taken over (0: since the previous sample)"},
			{Name: "quantile", Type: faults.TypeFloat, Default: "0.99", Min: "0", Max: "1",
				Doc: "the quantile for kind quantile"},
			{Name: "endpoint", Type: faults.TypeAddress, Default: "metrics",
				Doc: "the metrics server, a name in the target's endpoints or a host:port address; scraped at http://ENDPOINT/metrics"},
			{Name: "url", Type: faults.TypeAddress,
				Doc: "the full URL to scrape, instead of endpoint"},
			{Name: "unit", Type: faults.TypeString, Doc: "the unit of the values, for reports (s, msg/s, ...)"},
		},
	}
	k.New = func(cfg Config) (Probe, error) {
		v, err := checkParams(k, cfg)
		if err != nil {
			return nil, err
		}
		target := v.String("url")
		if target != "" {
			u, err := url.Parse(target)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return nil, &faults.ParamError{Fault: k.Name, Param: "url", Value: target, Msg: "not an http(s) URL",
					Allowed: "for example http://127.0.0.1:9464/metrics"}
			}
		} else {
			addr, err := resolveEndpoint(k.Name, "endpoint", v.String("endpoint"), cfg.Target)
			if err != nil {
				return nil, err
			}
			target = "http://" + addr + "/metrics"
		}
		if v.String("kind") == MetricRatio && v.String("per") == "" {
			return nil, &faults.ParamError{Fault: k.Name, Param: "per", Msg: "kind ratio needs the denominator counter",
				Allowed: "a counter such as mailstack_accepted_total"}
		}
		labels, err := parseLabels(v.String("labels"))
		if err != nil {
			return nil, &faults.ParamError{Fault: k.Name, Param: "labels", Value: v.String("labels"), Msg: err.Error(),
				Allowed: "name=value pairs separated by commas, such as reason=virus,engine=av-engine-2"}
		}
		p := &metricProbe{
			url: target, metric: v.String("metric"), labels: labels, kind: v.String("kind"),
			q: v.Float("quantile"), unit: v.String("unit"), per: v.String("per"), window: v.Duration("window"),
			transport: &http.Transport{MaxIdleConnsPerHost: 1, IdleConnTimeout: time.Minute},
			turn:      make(chan struct{}, 1),
		}
		p.client = &http.Client{Transport: p.transport, CheckRedirect: httpguard.NoRedirects}
		return p, nil
	}
	return k
}

// labelPair is one label matcher.
type labelPair struct{ name, value string }

// parseLabels parses `a=b,c="d,e"`, with optional braces around the whole.
func parseLabels(s string) ([]labelPair, error) {
	s = strings.TrimSpace(s)
	s = strings.TrimSuffix(strings.TrimPrefix(s, "{"), "}")
	var out []labelPair
	for rest := strings.TrimSpace(s); rest != ""; {
		name, after, ok := strings.Cut(rest, "=")
		name = strings.TrimSpace(name)
		if !ok || name == "" || strings.ContainsAny(name, ",\" ") {
			return nil, fmt.Errorf("%q is not a name=value pair", strings.SplitN(rest, ",", 2)[0])
		}
		after = strings.TrimSpace(after)
		var value string
		if strings.HasPrefix(after, `"`) {
			end := strings.Index(after[1:], `"`)
			if end < 0 {
				return nil, fmt.Errorf("unterminated quoted value of %s", name)
			}
			value, after = after[1:1+end], strings.TrimSpace(after[2+end:])
			if after != "" && !strings.HasPrefix(after, ",") {
				return nil, fmt.Errorf("expected a comma after the value of %s", name)
			}
			after = strings.TrimPrefix(after, ",")
		} else {
			value, after, _ = strings.Cut(after, ",")
			value = strings.TrimSpace(value)
		}
		out = append(out, labelPair{name, value})
		rest = strings.TrimSpace(after)
	}
	return out, nil
}

// metricProbe scrapes one endpoint. Samples are taken one at a time (turn
// is a one-slot semaphore), since rate and quantile compare each scrape
// with the previous one.
type metricProbe struct {
	url    string
	metric string
	labels []labelPair
	kind   string
	q      float64
	unit   string

	transport *http.Transport
	client    *http.Client

	turn chan struct{}
	// prev is the previous scrape's selected series, guarded by turn.
	prev *snapshot
	// per is the denominator counter of kind ratio, window the span it is
	// taken over, and history the recent scrapes (numerator, denominator).
	per     string
	window  time.Duration
	history [][2]*snapshot
}

var _ Probe = (*metricProbe)(nil)

// snapshot is the selected series of one scrape, by label signature.
type snapshot struct {
	at     time.Time
	values map[string]float64   // rate: cumulative value per series
	hists  map[string]histogram // quantile: buckets per series
}

// histogram is one series' cumulative buckets, sorted by upper bound, the
// last one +Inf.
type histogram struct {
	count   float64
	buckets []bucket
}

type bucket struct{ upper, count float64 }

// Measure scrapes the endpoint once. Concurrent calls wait for each other
// (until their own ctx ends).
func (p *metricProbe) Measure(ctx context.Context) Sample {
	start := time.Now()
	select {
	case p.turn <- struct{}{}:
	case <-ctx.Done():
		return failed(start, fmt.Errorf("scrape %s: the previous scrape is still running: %w", p.url, ctx.Err()))
	}
	defer func() { <-p.turn }()
	start = time.Now()
	fams, err := p.scrape(ctx)
	if err != nil {
		return failed(start, err)
	}
	switch p.kind {
	case MetricRate:
		return p.rate(start, fams)
	case MetricQuantile:
		return p.quantile(start, fams)
	case MetricRatio:
		return p.ratio(start, fams)
	}
	series, err := p.selectSeries(fams)
	if err != nil {
		return failed(start, err)
	}
	var sum float64
	for _, s := range series {
		x, err := s.scalar()
		if err != nil {
			return failed(start, err)
		}
		sum += x
	}
	return Sample{At: start, Value: sum}
}

// scrape fetches and parses the endpoint.
func (p *metricProbe) scrape(ctx context.Context) (map[string]*dto.MetricFamily, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url, nil)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", p.url, err)
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	// A stack served with a token (target serve mailstack --token-file)
	// wants it on its metrics too.
	httpguard.SetAuth(req, httpguard.EnvToken(os.Getenv))
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("scrape %s: %s", p.url, resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(io.LimitReader(resp.Body, maxScrape))
	if err != nil {
		return nil, ctxErr(ctx, "scrape "+p.url+": parse", err)
	}
	return fams, nil
}

// series is one selected series and which part of it is wanted.
type series struct {
	family string
	typ    dto.MetricType
	m      *dto.Metric
	part   string // "", "count" or "sum" for histograms and summaries
}

// selectSeries finds the family and the series matching the labels.
func (p *metricProbe) selectSeries(fams map[string]*dto.MetricFamily) ([]series, error) {
	name, part := p.metric, ""
	fam, ok := fams[name]
	if !ok {
		for _, suffix := range []string{"_count", "_sum"} {
			base, found := strings.CutSuffix(name, suffix)
			if f, ok := fams[base]; found && ok &&
				(f.GetType() == dto.MetricType_HISTOGRAM || f.GetType() == dto.MetricType_SUMMARY) {
				fam, part = f, suffix[1:]
				break
			}
		}
	}
	if fam == nil {
		names := make([]string, 0, len(fams))
		for n := range fams {
			names = append(names, n)
		}
		sort.Strings(names)
		return nil, fmt.Errorf("metric %s not found at %s%s", name, p.url, faults.Suggest(name, names))
	}
	var out []series
	for _, m := range fam.GetMetric() {
		if matchLabels(m, p.labels) {
			out = append(out, series{family: fam.GetName(), typ: fam.GetType(), m: m, part: part})
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no series of %s at %s has labels %s (series: %s)", fam.GetName(), p.url,
			formatLabels(p.labels), describeSeries(fam))
	}
	return out, nil
}

func matchLabels(m *dto.Metric, want []labelPair) bool {
next:
	for _, w := range want {
		for _, lp := range m.GetLabel() {
			if lp.GetName() == w.name {
				if lp.GetValue() == w.value {
					continue next
				}
				return false
			}
		}
		if w.value != "" { // an absent label equals the empty value, as in PromQL
			return false
		}
	}
	return true
}

func formatLabels(ls []labelPair) string {
	parts := make([]string, len(ls))
	for i, l := range ls {
		parts[i] = fmt.Sprintf("%s=%q", l.name, l.value)
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// describeSeries lists up to five label sets of fam.
func describeSeries(fam *dto.MetricFamily) string {
	var parts []string
	for i, m := range fam.GetMetric() {
		if i == 5 {
			parts = append(parts, fmt.Sprintf("and %d more", len(fam.GetMetric())-5))
			break
		}
		parts = append(parts, signature(m))
	}
	return strings.Join(parts, " ")
}

// signature identifies a series by its labels.
func signature(m *dto.Metric) string {
	ls := make([]labelPair, 0, len(m.GetLabel()))
	for _, lp := range m.GetLabel() {
		ls = append(ls, labelPair{lp.GetName(), lp.GetValue()})
	}
	sort.Slice(ls, func(i, j int) bool { return ls[i].name < ls[j].name })
	return formatLabels(ls)
}

// scalar returns the series' current value.
func (s series) scalar() (float64, error) {
	m := s.m
	switch s.typ {
	case dto.MetricType_COUNTER:
		return m.GetCounter().GetValue(), nil
	case dto.MetricType_GAUGE:
		return m.GetGauge().GetValue(), nil
	case dto.MetricType_UNTYPED:
		return m.GetUntyped().GetValue(), nil
	case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
		switch s.part {
		case "count":
			return float64(m.GetHistogram().GetSampleCount()), nil
		case "sum":
			return m.GetHistogram().GetSampleSum(), nil
		}
	case dto.MetricType_SUMMARY:
		switch s.part {
		case "count":
			return float64(m.GetSummary().GetSampleCount()), nil
		case "sum":
			return m.GetSummary().GetSampleSum(), nil
		}
	}
	return 0, fmt.Errorf("%s is a %s: use %s_count or %s_sum, or kind quantile for a histogram",
		s.family, strings.ToLower(s.typ.String()), s.family, s.family)
}

// counters selects the counter series of name and sums them by series.
func (p *metricProbe) counters(start time.Time, fams map[string]*dto.MetricFamily, name string) (*snapshot, error) {
	q := *p
	q.metric = name
	sel, err := q.selectSeries(fams)
	if err != nil {
		return nil, err
	}
	cur := &snapshot{at: start, values: map[string]float64{}}
	for _, s := range sel {
		if s.typ == dto.MetricType_GAUGE {
			return nil, fmt.Errorf("%s is a gauge: kinds rate and ratio need counters", s.family)
		}
		x, err := s.scalar()
		if err != nil {
			return nil, err
		}
		cur.values[signature(s.m)] += x
	}
	return cur, nil
}

// increase is how much counters grew from prev to cur, counting a new
// series and a reset series from zero.
func increase(prev, cur *snapshot) float64 {
	var inc float64
	for sig, x := range cur.values {
		before, ok := prev.values[sig]
		if !ok || x < before {
			inc += x
			continue
		}
		inc += x - before
	}
	return inc
}

// rate computes the per-second increase since the previous sample.
func (p *metricProbe) rate(start time.Time, fams map[string]*dto.MetricFamily) Sample {
	cur, err := p.counters(start, fams, p.metric)
	if err != nil {
		return failed(start, err)
	}
	prev := p.prev
	p.prev = cur
	if prev == nil || prev.values == nil {
		return Sample{At: start, Skip: true}
	}
	dt := cur.at.Sub(prev.at).Seconds()
	if dt <= 0 {
		return Sample{At: start, Skip: true}
	}
	return Sample{At: start, Value: increase(prev, cur) / dt}
}

// ratio divides the increase of the metric by the increase of the `per`
// counter over the last `window` (or since the previous sample): delivered
// per accepted is the share of arriving mail the stack keeps up with. No
// increase of `per` is a Skip.
func (p *metricProbe) ratio(start time.Time, fams map[string]*dto.MetricFamily) Sample {
	num, err := p.counters(start, fams, p.metric)
	if err != nil {
		return failed(start, err)
	}
	den, err := p.counters(start, fams, p.per)
	if err != nil {
		return failed(start, err)
	}
	p.history = append(p.history, [2]*snapshot{num, den})
	// Compare with the newest scrape at least window old (the previous one
	// when window is 0), and forget older ones.
	base := -1
	for i := len(p.history) - 2; i >= 0; i-- {
		if start.Sub(p.history[i][0].at) >= p.window {
			base = i
			break
		}
	}
	if base < 0 {
		return Sample{At: start, Skip: true}
	}
	then := p.history[base]
	p.history = p.history[base:]
	d := increase(then[1], den)
	if d <= 0 {
		return Sample{At: start, Skip: true}
	}
	return Sample{At: start, Value: increase(then[0], num) / d}
}

// quantile computes the quantile of the observations since the previous
// sample.
func (p *metricProbe) quantile(start time.Time, fams map[string]*dto.MetricFamily) Sample {
	sel, err := p.selectSeries(fams)
	if err != nil {
		return failed(start, err)
	}
	cur := &snapshot{at: start, hists: map[string]histogram{}}
	for _, s := range sel {
		if (s.typ != dto.MetricType_HISTOGRAM && s.typ != dto.MetricType_GAUGE_HISTOGRAM) || s.part != "" {
			return failed(start, fmt.Errorf("%s is a %s: kind quantile needs a histogram", p.metric, strings.ToLower(s.typ.String())))
		}
		cur.hists[signature(s.m)] = histogramOf(s.m.GetHistogram())
	}
	prev := p.prev
	p.prev = cur
	if prev == nil || prev.hists == nil {
		return Sample{At: start, Skip: true}
	}
	// Observations since the previous sample, summed over series by bound.
	delta := map[float64]float64{}
	var total float64
	for sig, h := range cur.hists {
		before, ok := prev.hists[sig]
		if ok && (h.count < before.count || !sameBounds(h, before)) {
			ok = false // reset or re-bucketed: count from zero
		}
		for i, b := range h.buckets {
			d := b.count
			if ok {
				d -= before.buckets[i].count
			}
			delta[b.upper] += d
		}
		if ok {
			total += h.count - before.count
		} else {
			total += h.count
		}
	}
	if total <= 0 {
		return Sample{At: start, Skip: true}
	}
	bs := make([]bucket, 0, len(delta))
	for upper, c := range delta {
		bs = append(bs, bucket{upper, c})
	}
	sort.Slice(bs, func(i, j int) bool { return bs[i].upper < bs[j].upper })
	v := bucketQuantile(p.q, bs)
	if math.IsNaN(v) {
		return failed(start, errors.New("quantile of "+p.metric+": not computable from its buckets"))
	}
	return Sample{At: start, Value: v}
}

// histogramOf returns h's cumulative buckets, ending with +Inf.
func histogramOf(h *dto.Histogram) histogram {
	out := histogram{count: float64(h.GetSampleCount())}
	if h.SampleCountFloat != nil {
		out.count = h.GetSampleCountFloat()
	}
	for _, b := range h.GetBucket() {
		c := float64(b.GetCumulativeCount())
		if b.CumulativeCountFloat != nil {
			c = b.GetCumulativeCountFloat()
		}
		out.buckets = append(out.buckets, bucket{b.GetUpperBound(), c})
	}
	sort.Slice(out.buckets, func(i, j int) bool { return out.buckets[i].upper < out.buckets[j].upper })
	if n := len(out.buckets); n == 0 || !math.IsInf(out.buckets[n-1].upper, 1) {
		out.buckets = append(out.buckets, bucket{math.Inf(1), out.count})
	}
	return out
}

func sameBounds(a, b histogram) bool {
	if len(a.buckets) != len(b.buckets) {
		return false
	}
	for i := range a.buckets {
		if a.buckets[i].upper != b.buckets[i].upper {
			return false
		}
	}
	return true
}

// bucketQuantile is Prometheus' histogram_quantile over cumulative buckets
// sorted by upper bound, the last one +Inf: linear interpolation within the
// bucket the rank falls in, the lowest bucket starting at 0 (when its bound
// is positive), and the highest finite bound when the rank falls in the
// +Inf bucket.
func bucketQuantile(q float64, buckets []bucket) float64 {
	switch {
	case q < 0:
		return math.Inf(-1)
	case q > 1:
		return math.Inf(1)
	case len(buckets) < 2 || !math.IsInf(buckets[len(buckets)-1].upper, 1):
		return math.NaN()
	}
	// Counts must not decrease (they can, slightly, with scrape races).
	for i := 1; i < len(buckets); i++ {
		if buckets[i].count < buckets[i-1].count {
			buckets[i].count = buckets[i-1].count
		}
	}
	observations := buckets[len(buckets)-1].count
	if observations <= 0 {
		return math.NaN()
	}
	rank := q * observations
	b := sort.Search(len(buckets)-1, func(i int) bool { return buckets[i].count >= rank })
	if b == len(buckets)-1 {
		return buckets[len(buckets)-2].upper
	}
	if b == 0 && buckets[0].upper <= 0 {
		return buckets[0].upper
	}
	start, end, count := 0.0, buckets[b].upper, buckets[b].count
	if b > 0 {
		start = buckets[b-1].upper
		count -= buckets[b-1].count
		rank -= buckets[b-1].count
	}
	if count <= 0 {
		return end
	}
	return start + (end-start)*(rank/count)
}

// Unit is the unit parameter.
func (p *metricProbe) Unit() string { return p.unit }

// Close drops the kept-alive connection to the endpoint.
func (p *metricProbe) Close() error {
	p.transport.CloseIdleConnections()
	return nil
}
