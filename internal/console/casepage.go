package console

import (
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/paysentry/fraud-detector/internal/review"
)

// maxIDLen bounds an id in a path; a longer one names nothing.
const maxIDLen = 512

type caseData struct {
	Case     review.Case
	Reasons  []reasonView // the distinct reasons of its payments, with their details
	Payments []paymentRow
	Chart    chart
	Windows  []windowRow
	Mine     bool // assigned to the signed-in analyst
	// CardsError is set when the card's history could not be read: the rest of the page stands.
	CardsError bool
}

type reasonView struct {
	Code, Words, Detail string
}

type paymentRow struct {
	ID, Time, Amount, Currency, Merchant, Country, Channel string
	Reasons                                                []reasonView
	Score                                                  *float64
	Status                                                 string
	Verdict                                                *review.Verdict
}

type windowRow struct {
	Start string
	Count int64
}

// casePage shows a case, its payments and its card's history.
func (c *Console) casePage(w http.ResponseWriter, r *http.Request, s *session) {
	id := r.PathValue("id")
	if len(id) > maxIDLen {
		c.errorPageBack(w, r, s, http.StatusNotFound, "Not found", "There is no such case.", "/ui/cases")
		return
	}
	cs, reviews, err := c.store.GetCase(r.Context(), id)
	if err != nil {
		c.storeError(w, r, s, err, "/ui/cases")
		return
	}
	d := caseData{Case: cleanCase(cs)}
	d.Mine = d.Case.Assignee != "" && d.Case.Assignee == s.Name
	seen := map[reasonView]bool{}
	for _, rv := range reviews {
		row := paymentView(rv)
		for _, rs := range row.Reasons {
			if !seen[rs] {
				seen[rs] = true
				d.Reasons = append(d.Reasons, rs)
			}
		}
		d.Payments = append(d.Payments, row)
	}
	for _, code := range d.Case.Reasons { // codes whose payments are not among those read
		if !slices.ContainsFunc(d.Reasons, func(v reasonView) bool { return v.Code == code }) {
			d.Reasons = append(d.Reasons, reasonView{Code: code, Words: reasonInWords(code)})
		}
	}
	counts, err := c.cards.Counts(r.Context(), cs.CardID)
	if err != nil {
		c.log.Error("console card counts", "case_id", redact(cs.ID), "err", redact(err.Error()))
		d.CardsError = true
	}
	d.Chart = dailyChart(counts, c.now())
	d.Windows = newestWindows(counts, 24)
	c.render(w, r, http.StatusOK, "case", page{Title: "Case " + d.Case.ID, User: s, Nav: "queue", Data: d})
}

// paymentView reads what the page shows of a review's payment: the fields it names, never any
// other (a card number field among them).
func paymentView(rv review.Review) paymentRow {
	var fields map[string]jsontext.Value
	if len(rv.Decision.Payment) > 0 {
		json.Unmarshal(rv.Decision.Payment, &fields) // a payment that cannot be read shows its review's fields
	}
	text := func(name string) string {
		v, ok := fields[name]
		if !ok {
			return ""
		}
		switch v.Kind() {
		case '"':
			var s string
			if json.Unmarshal(v, &s) == nil {
				return redact(s)
			}
		case '0':
			return redact(string(v))
		}
		return ""
	}
	row := paymentRow{ID: redact(rv.PaymentID), Amount: text("amount"), Currency: text("currency"),
		Merchant: text("merchant_id"), Country: text("country"), Channel: text("channel"),
		Score: rv.Score, Status: rv.Status}
	if row.ID == "" {
		row.ID = text("payment_id")
	}
	row.Time = formatTime(rv.CreatedAt)
	if ts := text("timestamp"); ts != "" {
		if t, err := time.Parse(time.RFC3339Nano, ts); err == nil {
			row.Time = formatTime(t)
		} else {
			row.Time = ts
		}
	}
	if row.Score == nil {
		row.Score = rv.Decision.Score
	}
	for _, rs := range rv.Decision.Reasons {
		row.Reasons = append(row.Reasons, reasonView{Code: redact(rs.Code), Words: reasonInWords(redact(rs.Code)), Detail: redact(rs.Detail)})
	}
	if len(row.Reasons) == 0 {
		for _, code := range rv.Reasons {
			row.Reasons = append(row.Reasons, reasonView{Code: redact(code), Words: reasonInWords(redact(code))})
		}
	}
	if rv.Verdict != nil {
		v := *rv.Verdict
		v.Analyst, v.Note = redact(v.Analyst), redact(v.Note)
		row.Verdict = &v
	}
	return row
}

// chartDays is how many days the card's chart shows: its kept history.
const chartDays = 30

// chart is the card's daily counts as an SVG bar chart.
type chart struct {
	Width, Height int
	Bars          []bar
	From, To      string // the first and the last day
	Total, Max    int64
	BaseY         int // the bars' baseline
	LabelY        int
}

type bar struct {
	X, Y, W, H int
	Day        string
	Count      int64
}

// Sizes of the chart, in SVG user units.
const (
	barStep    = 14
	barWidth   = 11
	plotHeight = 80
	labelSpace = 16
)

// dailyChart sums the hourly counts by day (UTC) over the chartDays that end today, or on the
// newest count's day if that is later. A day without a count gets a bar of no height.
func dailyChart(counts map[time.Time]int64, now time.Time) chart {
	const day = 24 * time.Hour
	end := now.UTC().Truncate(day)
	for t := range counts {
		if d := t.UTC().Truncate(day); d.After(end) {
			end = d
		}
	}
	start := end.Add(-(chartDays - 1) * day)
	sums := make([]int64, chartDays)
	for t, n := range counts {
		d := t.UTC().Truncate(day)
		if d.Before(start) || n <= 0 {
			continue
		}
		sums[int(d.Sub(start)/day)] += n
	}
	ch := chart{Width: chartDays * barStep, Height: plotHeight + labelSpace, BaseY: plotHeight,
		LabelY: plotHeight + labelSpace - 3, From: start.Format("2006-01-02"), To: end.Format("2006-01-02")}
	for _, n := range sums {
		ch.Total += n
		ch.Max = max(ch.Max, n)
	}
	for i, n := range sums {
		h := 0
		if ch.Max > 0 {
			h = int((n*plotHeight + ch.Max - 1) / ch.Max) // rounded up: a day with a payment shows
		}
		ch.Bars = append(ch.Bars, bar{X: i*barStep + (barStep-barWidth)/2, Y: plotHeight - h, W: barWidth, H: h,
			Day: start.Add(time.Duration(i) * day).Format("2006-01-02"), Count: n})
	}
	return ch
}

// newestWindows returns the newest n windows, newest first.
func newestWindows(counts map[time.Time]int64, n int) []windowRow {
	starts := make([]time.Time, 0, len(counts))
	for t := range counts {
		starts = append(starts, t)
	}
	slices.SortFunc(starts, func(a, b time.Time) int { return b.Compare(a) })
	rows := make([]windowRow, 0, min(n, len(starts)))
	for _, t := range starts[:min(n, len(starts))] {
		rows = append(rows, windowRow{Start: formatTime(t), Count: counts[t]})
	}
	return rows
}

// reasonWords are the known reason codes in words.
var reasonWords = map[string]string{
	"amount_over_threshold": "Amount over the threshold",
	"card_velocity_1h":      "Many payments on the card within an hour",
	"model_score":           "High fraud model score",
	"degraded_state":        "Decided in a degraded state",
	"late_event":            "Late event",
	"new_country_amount":    "Large amount from a new country",
	"allowed_card":          "Card on the allow list",
}

// listKinds name what a blocked_ (or blocklisted_) code is about.
var listKinds = map[string]string{
	"card": "Card", "cards": "Card", "merchant": "Merchant", "merchants": "Merchant", "country": "Country",
	"countries": "Country", "ip": "IP address", "ips": "IP address", "device": "Device", "devices": "Device",
	"bin": "BIN", "bins": "BIN",
}

// reasonInWords says a reason code in words; an unknown code is itself.
func reasonInWords(code string) string {
	if w, ok := reasonWords[code]; ok {
		return w
	}
	for _, prefix := range []string{"blocklisted_", "blocked_", "denylisted_"} {
		if rest, ok := strings.CutPrefix(code, prefix); ok && rest != "" {
			what, ok := listKinds[rest]
			if !ok {
				what = strings.ReplaceAll(rest, "_", " ")
			}
			return what + " on a block list"
		}
	}
	return code
}

// reasonsInWords says a case's reason codes in words.
func reasonsInWords(codes []string) string {
	words := make([]string, len(codes))
	for i, code := range codes {
		words[i] = reasonInWords(code)
	}
	return strings.Join(words, ", ")
}

// formatTime writes a time in UTC; the zero time is a dash.
func formatTime(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05")
}

// formatScore writes a score with two decimals; none is a dash.
func formatScore(s *float64) string {
	if s == nil {
		return "—"
	}
	return strconv.FormatFloat(*s, 'f', 2, 64)
}

func caseURL(id string) string { return "/ui/cases/" + pathEscape(id) }

func pathEscape(s string) string { return url.PathEscape(s) }

// jsonFloat writes a float for JSON: a finite number, 0 otherwise.
func jsonFloat(f float64) string {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return "0"
	}
	return strconv.FormatFloat(f, 'f', -1, 64)
}
