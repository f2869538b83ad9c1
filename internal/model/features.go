package model

import (
	"github.com/paysentry/fraud-detector/internal/payment"
	"github.com/paysentry/fraud-detector/internal/window"
)

// FeatureNames are the model's inputs, in order. The replay writes them for training and the
// service computes them for scoring with the same function, Features, so the two cannot drift.
// A model file must name exactly these.
var FeatureNames = []string{
	"amount_eur",             // the amount at a fixed approximate rate to EUR (eurRates)
	"hour_of_day",            // of the event time, UTC
	"day_of_week",            // 0 Sunday
	"channel",                // pos 0, ecom 1, atm 2, moto 3, other 4, none -1
	"mcc",                    // merchant category code as a number, -1 if none
	"card_count_1h",          // the card's earlier payments in the hour before this one
	"card_count_24h",         // ... in 24 h
	"card_count_7d",          // ... in 7 days
	"card_count_30d",         // ... in 30 days
	"card_sum_1h_eur",        // their amounts, at this payment's currency's rate
	"card_sum_24h_eur",       //
	"card_sum_7d_eur",        //
	"card_sum_30d_eur",       //
	"amount_to_card_avg_24h", // this amount over the card's average of the 24 h before, -1 without
	"amount_to_card_avg_7d",  // ... of the 7 days before
	"amount_to_card_avg_30d", // ... of the 30 days before
	"seconds_since_previous", // -1 without a previous payment in 30 days
	"new_country",            // 1: the card paid in no payment's country in 30 days
	"new_merchant",           // 1: ... at this merchant
	"new_device",             // 1: ... from this device
	"merchant_count_1d",      // the merchant's payments (all cards) the day before; -1: not kept
	"merchant_count_7d",      // ... the 7 days before
	"merchant_count_30d",     // ... the 30 days before
	"merchant_fraud_30d",     // the merchant's payments of the 30 days before labelled fraud so far
	"merchant_risk_1d",       // the share labelled fraud of the merchant's payments on the day before the label delay (window.LabelDelayDays); 0 without payments
	"merchant_risk_7d",       // ... on the 7 days before it
	"merchant_risk_30d",      // ... on the 30 days before it
	"window_count",           // the card's payments in this payment's velocity window
	"state_missing",          // 1: no card state (Redis unavailable, or the payment too late)
}

// eurRates turn amounts into roughly comparable numbers. They are fixed on purpose: a feature
// must mean the same thing in training and in serving. A currency not listed counts at 1.
var eurRates = map[string]float64{
	"EUR": 1, "USD": 0.92, "GBP": 1.17, "CHF": 1.04, "JPY": 0.0062, "SEK": 0.088, "NOK": 0.086,
	"DKK": 0.134, "PLN": 0.23, "CZK": 0.04, "HUF": 0.0025, "CAD": 0.68, "AUD": 0.61, "CNY": 0.13,
	"INR": 0.011, "BRL": 0.17, "MXN": 0.054, "KRW": 0.00068,
}

var column = func() map[string]int {
	m := map[string]int{}
	for i, n := range FeatureNames {
		m[n] = i
	}
	return m
}()

var channels = map[string]float32{"pos": 0, "ecom": 1, "atm": 2, "moto": 3}

// Features writes a payment's features into row (len(FeatureNames) values). st is the card state
// the windows returned; nil when there is none (Redis unavailable).
func Features(p *payment.Payment, st *window.Result, row []float32) {
	rate, ok := eurRates[p.Currency]
	if !ok {
		rate = 1
	}
	amount := p.Amount.InexactFloat64() * rate
	t := p.Time.UTC()
	channel := float32(-1)
	if p.Channel != "" {
		c, ok := channels[p.Channel]
		if !ok {
			c = 4
		}
		channel = c
	}
	mcc := float32(-1)
	if n, ok := number(p.MerchantCategory); ok {
		mcc = float32(n)
	}
	row[0], row[1], row[2], row[3], row[4] = float32(amount), float32(t.Hour()), float32(t.Weekday()), channel, mcc
	if st == nil || st.Late || st.Ahead {
		for i := 5; i < len(FeatureNames)-1; i++ {
			row[i] = -1
		}
		row[len(FeatureNames)-1] = 1
		return
	}
	a := st.Aggregates
	// A ratio of this amount to the card's average amount over a horizon, in the card's currency
	// on both sides; -1 without an earlier payment there.
	toAvg := func(count int64, sum float64) float32 {
		if count == 0 || sum <= 0 {
			return -1
		}
		return float32(amount / (sum * rate / float64(count)))
	}
	var risk [3]float32
	for k := range risk {
		if n := a.MerchantDelayed.Count[k]; n > 0 {
			risk[k] = float32(float64(a.MerchantDelayed.Fraud[k]) / float64(n))
		}
	}
	copy(row[5:], []float32{
		float32(a.Count1h), float32(a.Count24h), float32(a.Count7d), float32(a.Count30d),
		float32(a.Sum1h * rate), float32(a.Sum24h * rate), float32(a.Sum7d * rate), float32(a.Sum30d * rate),
		toAvg(a.Count24h, a.Sum24h), toAvg(a.Count7d, a.Sum7d), toAvg(a.Count30d, a.Sum30d),
		float32(a.SincePrevious), flag(a.NewCountry), flag(a.NewMerchant), flag(a.NewDevice),
		float32(a.MerchantCount1d), float32(a.MerchantCount7d), float32(a.MerchantCount30d),
		float32(a.MerchantFraud30d), risk[0], risk[1], risk[2], float32(st.Count), 0,
	})
}

func flag(b bool) float32 {
	if b {
		return 1
	}
	return 0
}

// number parses a short string of digits.
func number(s string) (int, bool) {
	if s == "" || len(s) > 6 {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + int(s[i]-'0')
	}
	return n, true
}
