package e2e

import (
	"bufio"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	paymentpkg "github.com/paysentry/fraud-detector/internal/payment"
)

// The README's first command, scripts/demo.sh, shows flagged payments within 30 seconds of its
// start (building included) and exits 0 on Ctrl-C (SIGINT), having said it stopped.
func TestDemoShowsFlaggedPaymentsAndStopsOnCtrlC(t *testing.T) {
	cmd := exec.Command("scripts/demo.sh")
	cmd.Dir = ".."
	cmd.Env = os.Environ()
	cmd.SysProcAttr = dieWithTest()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	cmd.Stderr = logs
	began := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	lines := make(chan string, 1024)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			logs.Write([]byte(sc.Text() + "\n"))
			select {
			case lines <- sc.Text():
			default: // the test has seen what it needs; keep draining
			}
		}
		close(lines)
		done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("demo output:\n%s", logs.tail(4096))
		}
	})

	limit := time.After(30*time.Second - time.Since(began))
	flagged := ""
wait:
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("the demo ended before showing a flagged payment: %v", <-done)
			}
			if strings.HasPrefix(l, "FLAGGED ") {
				flagged = l
				break wait
			}
		case <-limit:
			cmd.Process.Kill()
			t.Fatal("no flagged payment within 30 s of starting scripts/demo.sh")
		}
	}
	t.Logf("first flagged payment %.1f s after the start: %s", time.Since(began).Seconds(), flagged)
	for _, want := range []string{"console", "/ui", "sign in with the token demo-analyst-token", "review API", "metrics", "http://"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the demo's banner does not say where the %q is", want)
		}
	}

	cmd.Process.Signal(syscall.SIGINT)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("demo exited with %v after Ctrl-C, want 0", err)
		}
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatal("the demo did not stop within 20 s of Ctrl-C")
	}
	if !strings.Contains(logs.String(), "stopped.") {
		t.Error("the demo did not say it stopped")
	}
	// Some of the generated payments carry card numbers: neither the demo's output nor the
	// service's log may show one.
	serviceLog, err := os.ReadFile("../.cache/demo/service.log")
	if err != nil {
		t.Fatalf("the demo's service log: %v", err)
	}
	for name, text := range map[string][]byte{"output": []byte(logs.String()), "service log": serviceLog} {
		if _, found := paymentpkg.RedactPANs(text); found {
			t.Errorf("the demo's %s shows a card number", name)
		}
	}
	if !strings.Contains(string(serviceLog), `"hmac_key":"[redacted]"`) {
		t.Error("the demo's service log does not show its configuration with the card key redacted")
	}
}
