// Command metricschart scrapes a running fraud-detector's /metrics for a while and draws what the
// Grafana dashboard shows (throughput, flags by reason, decision latency percentiles, consumer
// lag, degraded state, dead letters) into one PNG: the picture in the README, from a real run,
// without a Grafana. See scripts/dashboard-png.sh.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"image/color"
	"io"
	"maps"
	"math"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"sort"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1:], os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "metricschart:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("metricschart", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", "http://127.0.0.1:8080/metrics", "the service's /metrics")
	duration := fs.Duration("duration", time.Minute, "how long to scrape")
	every := fs.Duration("every", 2*time.Second, "how often to scrape")
	out := fs.String("out", "docs/dashboard.png", "the PNG to write")
	title := fs.String("title", "", "a line under the panels (the machine, the settings)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var samples []sample
	client := &http.Client{Timeout: 5 * time.Second}
	tick := time.NewTicker(*every)
	defer tick.Stop()
	end := time.After(*duration)
	began := time.Now()
	for {
		s, err := scrape(ctx, client, *url)
		if err != nil {
			if len(samples) >= 3 { // draw what there is
				fmt.Fprintln(stderr, "metricschart:", err)
				break
			}
			return err
		}
		s.at = time.Since(began).Seconds()
		samples = append(samples, s)
		select {
		case <-tick.C:
			continue
		case <-end:
		case <-ctx.Done():
		}
		break
	}
	if len(samples) < 3 {
		return errors.New("fewer than 3 scrapes: scrape for longer")
	}
	fmt.Fprintf(stderr, "metricschart: %d scrapes over %.0f s\n", len(samples), samples[len(samples)-1].at)
	return draw6(samples, *out, *title)
}

// sample is one scrape, reduced to what the panels need.
type sample struct {
	at        float64 // seconds since the first scrape
	consumed  float64
	flags     map[string]float64
	dead      float64
	lag       float64
	degraded  float64
	latency   []bucket // cumulative
	latencyOK bool
}

type bucket struct{ le, count float64 }

func scrape(ctx context.Context, client *http.Client, url string) (sample, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return sample{}, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return sample{}, fmt.Errorf("scrape %s: %w", url, err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return sample{}, fmt.Errorf("parse %s: %w", url, err)
	}
	s := sample{flags: map[string]float64{}}
	sum := func(name string) float64 {
		var v float64
		if f := families[name]; f != nil {
			for _, m := range f.GetMetric() {
				v += m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
		return v
	}
	s.consumed = sum("fraud_payments_consumed_total")
	s.dead = sum("fraud_dead_letters_total")
	s.lag = sum("fraud_consumer_lag")
	s.degraded = sum("fraud_degraded")
	if f := families["fraud_flags_total"]; f != nil {
		for _, m := range f.GetMetric() {
			s.flags[label(m, "reason")] += m.GetCounter().GetValue()
		}
	}
	if f := families["fraud_decision_latency_seconds"]; f != nil && len(f.GetMetric()) == 1 {
		h := f.GetMetric()[0].GetHistogram()
		for _, b := range h.GetBucket() {
			s.latency = append(s.latency, bucket{b.GetUpperBound(), float64(b.GetCumulativeCount())})
		}
		s.latency = append(s.latency, bucket{math.Inf(1), float64(h.GetSampleCount())})
		s.latencyOK = true
	}
	return s, nil
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// quantile is Prometheus's histogram_quantile over the increase between two scrapes: linear
// within the bucket the rank falls in.
func quantile(q float64, before, after []bucket) float64 {
	if len(before) != len(after) {
		return math.NaN()
	}
	inc := make([]bucket, len(after))
	for i := range after {
		inc[i] = bucket{after[i].le, after[i].count - before[i].count}
	}
	total := inc[len(inc)-1].count
	if total <= 0 {
		return math.NaN()
	}
	rank := q * total
	i := sort.Search(len(inc), func(i int) bool { return inc[i].count >= rank })
	if i == len(inc)-1 { // the +Inf bucket: the largest finite bound is all that is known
		return inc[len(inc)-2].le
	}
	lo, below := 0.0, 0.0
	if i > 0 {
		lo, below = inc[i-1].le, inc[i-1].count
	}
	in := inc[i].count - below
	if in <= 0 {
		return inc[i].le
	}
	return lo + (inc[i].le-lo)*(rank-below)/in
}

func draw6(samples []sample, out, title string) error {
	rate := func(f func(s sample) float64) plotter.XYs {
		var xy plotter.XYs
		for i := 1; i < len(samples); i++ {
			a, b := samples[i-1], samples[i]
			xy = append(xy, plotter.XY{X: b.at, Y: (f(b) - f(a)) / (b.at - a.at)})
		}
		return xy
	}
	gauge := func(f func(s sample) float64) plotter.XYs {
		var xy plotter.XYs
		for _, s := range samples {
			xy = append(xy, plotter.XY{X: s.at, Y: f(s)})
		}
		return xy
	}
	panel := func(title, unit string, series map[string]plotter.XYs) *plot.Plot {
		p := plot.New()
		p.Title.Text = title
		p.X.Label.Text = "seconds"
		p.Y.Label.Text = unit
		p.Y.Min = 0
		p.Add(plotter.NewGrid())
		names := slices.Sorted(maps.Keys(series))
		for i, name := range names {
			l, err := plotter.NewLine(series[name])
			if err != nil {
				continue
			}
			l.Color = plotutil.Color(i)
			l.Width = vg.Points(1.5)
			p.Add(l)
			if len(series) > 1 {
				p.Legend.Add(name, l)
			}
		}
		p.Legend.Top = true
		return p
	}

	reasons := map[string]bool{}
	for _, s := range samples {
		for r := range s.flags {
			reasons[r] = true
		}
	}
	flags := map[string]plotter.XYs{}
	for r := range reasons {
		flags[r] = rate(func(s sample) float64 { return s.flags[r] })
	}
	latency := map[string]plotter.XYs{}
	for _, q := range []float64{0.5, 0.9, 0.99} {
		var xy plotter.XYs
		for i := 1; i < len(samples); i++ {
			if v := quantile(q, samples[i-1].latency, samples[i].latency); !math.IsNaN(v) {
				xy = append(xy, plotter.XY{X: samples[i].at, Y: v * 1000})
			}
		}
		latency[fmt.Sprintf("p%g", q*100)] = xy
	}
	plots := [][]*plot.Plot{
		{
			panel("Throughput", "payments/s", map[string]plotter.XYs{"consumed": rate(func(s sample) float64 { return s.consumed })}),
			panel("Flags by reason", "flags/s", flags),
			panel("Decision latency (append to acknowledged)", "ms", latency),
		},
		{
			panel("Consumer lag", "records", map[string]plotter.XYs{"lag": gauge(func(s sample) float64 { return s.lag })}),
			panel("Degraded (Redis unavailable)", "0 / 1", map[string]plotter.XYs{"degraded": gauge(func(s sample) float64 { return s.degraded })}),
			panel("Dead letters", "records/s", map[string]plotter.XYs{"dead-lettered": rate(func(s sample) float64 { return s.dead })}),
		},
	}
	plots[1][1].Y.Max = 1.05
	plots[1][0].Y.Max = max(plots[1][0].Y.Max, 1)

	const w, h = 15 * vg.Inch, 7.5 * vg.Inch
	img := vgimg.NewWith(vgimg.UseWH(w, h), vgimg.UseBackgroundColor(color.White), vgimg.UseDPI(96))
	dc := draw.New(img)
	if title != "" {
		fnt := plot.DefaultFont
		fnt.Size = vg.Points(11)
		dc.FillText(draw.TextStyle{Color: color.Gray{Y: 80}, Font: fnt, Handler: plot.DefaultTextHandler,
			XAlign: draw.XCenter}, vg.Point{X: w / 2, Y: vg.Points(6)}, title)
		dc = draw.Crop(dc, 0, 0, vg.Points(18), 0)
	}
	tiles := draw.Tiles{Rows: 2, Cols: 3, PadX: vg.Millimeter * 6, PadY: vg.Millimeter * 6,
		PadTop: vg.Millimeter * 3, PadBottom: vg.Millimeter * 3, PadLeft: vg.Millimeter * 3, PadRight: vg.Millimeter * 3}
	canvases := plot.Align(plots, tiles, dc)
	for j := range plots {
		for i := range plots[j] {
			plots[j][i].Draw(canvases[j][i])
		}
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
