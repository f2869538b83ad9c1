package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/paysentry/fraud-detector/internal/paygen"
)

// Card numbers sent every way a record can carry them (a valid payment, flagged or not, a payment
// with a bad field, broken JSON, the record key, an unknown field, a record too large) appear in
// no line of the service's log, even at debug level; nor does the card key. (TestMain searches
// every service log of the run for every card number the tests sent, too.)
func TestLogsCarryNoCardNumber(t *testing.T) {
	tp := newTopics(t, 2)
	s := startService(t, tp, "FRAUD_LOG_LEVEL=debug")
	ts := time.Now().UTC().Format(time.RFC3339)
	var lines []string
	var pans []string
	for i := range 8 {
		pan := paygen.PAN(900_000 + i)
		pans = append(pans, pan)
		amount := "20"
		if i%2 == 0 {
			amount = "500"
		}
		lines = append(lines, fmt.Sprintf(`k%d	{"payment_id":"log-%d","card_number":%q,"amount":%q,"currency":"EUR","timestamp":%q,"note":%q}`,
			i, i, pan, amount, ts, "card "+pan))
	}
	bad := paygen.PAN(900_100)
	pans = append(pans, bad)
	lines = append(lines,
		fmt.Sprintf(`%s	{"payment_id":"log-bad-1","card_number":%q,"amount":"oops","currency":"EUR","timestamp":%q}`, bad, bad, ts),
		fmt.Sprintf(`k-bad-2	{"payment_id":"log-bad-2","card_number":%q,`, bad),
		fmt.Sprintf(`k-bad-3	{"payment_id":"log-bad-3","card_number":"%s","amount":"1","currency":"EUR","timestamp":%q,"pad":%q}`,
			bad, ts, strings.Repeat("x", 70_000)),
	)
	kcatProduce(t, tp.payments, lines, false)
	waitCaughtUp(t, s, tp, 60*time.Second)
	s.stop(t)
	logs := s.logs.String()
	if !strings.Contains(logs, `"level":"DEBUG"`) && !strings.Contains(logs, `"level":"INFO"`) {
		t.Fatalf("no log lines captured:\n%s", logs)
	}
	for _, pan := range pans {
		if strings.Contains(logs, pan) {
			t.Errorf("the log holds the card number %s…%s in clear", pan[:6], pan[len(pan)-4:])
		}
	}
	if strings.Contains(logs, hmacKey) {
		t.Error("the log holds the card HMAC key")
	}
	if !strings.Contains(logs, `"hmac_key":"[redacted]"`) {
		t.Error(`the logged configuration does not show the card key as "[redacted]"`)
	}
}
