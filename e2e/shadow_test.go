package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	fdmodel "github.com/paysentry/fraud-detector/internal/model"
	"github.com/paysentry/fraud-detector/internal/model/modeltest"
)

// shadowDecision is what a published decision says of the two models.
type shadowDecision struct {
	PaymentID          string   `json:"payment_id"`
	Flagged            bool     `json:"flagged"`
	Rule               string   `json:"rule"`
	Score              *float64 `json:"score"`
	ModelVersion       string   `json:"model_version"`
	ShadowScore        *float64 `json:"shadow_score"`
	ShadowModelVersion string   `json:"shadow_model_version"`
}

// A challenger model in shadow (model.shadow_path) on the real stack: every published decision
// carries its shadow_score and shadow_model_version, and only the serving model flags. The models
// are made here, of the features the service computes (whatever they are when the shipped model
// is trained again): the serving one says fraud of amounts over 60 EUR (rule model_score flags
// them), the challenger says 1.0 of every payment, then, swapped in while the service runs, 0.0.
// Analysts' verdicts are counted per model in fraud_model_verdicts_total.
func TestShadowModelReportsAndNeverDecides(t *testing.T) {
	serving := modeltest.Write(t, "serving.onnx", modeltest.Logistic{Features: fdmodel.FeatureNames, Version: "e2e-serving",
		Bias: -6, Weights: map[string]float32{"amount_eur": 0.1}})
	shadow := modeltest.Write(t, "shadow.onnx", modeltest.Logistic{Features: fdmodel.FeatureNames, Version: "e2e-shadow-always", Bias: 100})
	tp := newTopics(t, 3)
	addr := freePort(t)
	const token = "e2e-shadow-analyst-token-0123456789"
	recordSecret(token, "the analyst's API token")
	sum := sha256.Sum256([]byte(token))
	s := startService(t, tp, "FRAUD_MODEL_PATH="+serving, "FRAUD_MODEL_SHADOW_PATH="+shadow, "FRAUD_MODEL_RELOAD_CHECK=100ms",
		"FRAUD_API_LISTEN="+addr, "FRAUD_API_TOKENS=eve:analyst:"+hex.EncodeToString(sum[:]))

	// 40 payments on cards of their own, under the amount threshold: the even ones of 20 EUR
	// (serving score 0.018), the odd ones of 80 EUR (0.881).
	now := time.Now().UTC()
	send := func(prefix string) {
		var lines []string
		for i := range 40 {
			amount := "20.00"
			if i%2 == 1 {
				amount = "80.00"
			}
			lines = append(lines, payment(fmt.Sprintf("%s-%02d", prefix, i), fmt.Sprintf("card-%s-%02d", prefix, i), amount, now.Add(-time.Duration(i)*time.Second)))
		}
		kcatProduce(t, tp.payments, lines, false)
		waitCaughtUp(t, s, tp, 60*time.Second)
	}
	check := func(prefix, shadowVersion string, shadowScore float64) {
		t.Helper()
		seen := 0
		for _, m := range readAll(t, newClient(t), tp.highRisk) {
			var d shadowDecision
			if err := json.Unmarshal(m.Value, &d); err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(d.PaymentID, prefix+"-") {
				continue
			}
			seen++
			var i int
			fmt.Sscanf(strings.TrimPrefix(d.PaymentID, prefix+"-"), "%d", &i)
			if i%2 == 0 {
				t.Errorf("%s published (20 EUR, serving score %v) with shadow score %v: the shadow decided", d.PaymentID, d.Score, d.ShadowScore)
				continue
			}
			if !d.Flagged || d.Rule != "model_score" || d.Score == nil || math.Abs(*d.Score-0.8808) > 1e-3 || d.ModelVersion != "e2e-serving" {
				t.Errorf("%s: flagged %v by %q, score %v (%s); want model_score, 0.881 by e2e-serving", d.PaymentID, d.Flagged, d.Rule, d.Score, d.ModelVersion)
			}
			if d.ShadowScore == nil || *d.ShadowScore != shadowScore || d.ShadowModelVersion != shadowVersion {
				t.Errorf("%s: shadow score %v by %q, want %v by %s", d.PaymentID, d.ShadowScore, d.ShadowModelVersion, shadowScore, shadowVersion)
			}
		}
		if seen != 20 {
			t.Errorf("%d decisions of %s-*, want the 20 of 80 EUR", seen, prefix)
		}
	}
	send("sh1")
	check("sh1", "e2e-shadow-always", 1)

	// Verdicts on six of the reviews: both models said fraud of each.
	base := "http://" + addr
	for i, label := range []string{"fraud", "fraud", "fraud", "fraud", "legitimate", "legitimate"} {
		postVerdict(t, s, base+"/v1", token, fmt.Sprintf("sh1-%02d", 2*i+1), label)
	}
	got := scrape(t, addr)
	for key, want := range map[string]float64{
		`fraud_model_verdicts_total{label="fraud",model="serving",predicted="fraud"}`:           4,
		`fraud_model_verdicts_total{label="legitimate",model="serving",predicted="fraud"}`:      2,
		`fraud_model_verdicts_total{label="fraud",model="shadow",predicted="fraud"}`:            4,
		`fraud_model_verdicts_total{label="legitimate",model="shadow",predicted="fraud"}`:       2,
		`fraud_model_verdicts_total{label="fraud",model="shadow",predicted="legitimate"}`:       0,
		`fraud_model_verdicts_total{label="legitimate",model="serving",predicted="legitimate"}`: 0,
		`fraud_model_score{model="serving"}_count`:                                              40,
		`fraud_model_score{model="shadow"}_count`:                                               40,
		`fraud_shadow_model_info{model_version="e2e-shadow-always"}`:                            1,
		`fraud_shadow_model_failures_total`:                                                     0,
		`fraud_decisions_total{outcome="flagged"}`:                                              20,
	} {
		if got[key] != want {
			t.Errorf("%s = %v, want %v", key, got[key], want)
		}
	}

	// Another challenger, renamed over the file: reloaded on its own, the serving model stays.
	b, err := (modeltest.Logistic{Features: fdmodel.FeatureNames, Version: "e2e-shadow-never", Bias: -100}).ONNX()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(shadow+".new", b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(shadow+".new", shadow); err != nil {
		t.Fatal(err)
	}
	waitForLog(t, s, `"msg":"model reloaded","role":"shadow"`)
	send("sh2")
	check("sh2", "e2e-shadow-never", 0)
	got = scrape(t, addr)
	if got[`fraud_shadow_model_info{model_version="e2e-shadow-never"}`] != 1 || got[`fraud_shadow_model_info{model_version="e2e-shadow-always"}`] != 0 {
		t.Errorf("fraud_shadow_model_info after the swap: %v", got)
	}
	if strings.Contains(s.logs.String(), "shadow model failed") {
		t.Errorf("the shadow model failed:\n%s", s.logs.tail(2048))
	}
	s.stop(t)
}
