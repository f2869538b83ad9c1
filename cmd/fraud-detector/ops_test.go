package main

import (
	"regexp"
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/paysentry/fraud-detector/internal/detect"
	"github.com/paysentry/fraud-detector/internal/review"
)

// describing is a Registerer that notes the name of every metric registered with it.
type describing struct{ names []string }

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

func (d *describing) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc, 16)
	go func() { c.Describe(ch); close(ch) }()
	for desc := range ch {
		if m := fqName.FindStringSubmatch(desc.String()); m != nil {
			d.names = append(d.names, m[1])
		}
	}
	return nil
}

func (d *describing) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		d.Register(c)
	}
}

func (d *describing) Unregister(prometheus.Collector) bool { return false }

// The service registers exactly the metrics the dashboard may use (exportedMetrics): a metric
// renamed on one side fails here, not on an empty panel.
func TestServiceExportsTheDashboardsMetrics(t *testing.T) {
	d := &describing{}
	detect.NewMetrics(d)
	d.MustRegister(newBuildInfo("v", func() string { return "r" }, func() string { return "m" }), newShadowInfo(func() string { return "s" }))
	review.NewVerdicts(d)
	slices.Sort(d.names)
	var want []string
	for name := range exportedMetrics {
		want = append(want, name)
	}
	slices.Sort(want)
	if !slices.Equal(d.names, want) {
		t.Errorf("the service registers %v\nthe dashboard's contract (exportedMetrics) is %v", d.names, want)
	}
}
