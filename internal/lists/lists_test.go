package lists

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/go-json-experiment/json"
	"github.com/redis/go-redis/v9"

	"github.com/paysentry/fraud-detector/internal/payment"
	"github.com/paysentry/fraud-detector/internal/redistest"
)

// The tests run on the real redis-server (scripts/stack.sh up, or set FD_TEST_REDIS), each under
// a key prefix of its own.

var t0 = time.Date(2026, 12, 1, 9, 30, 0, 0, time.UTC)

func fixed() time.Time { return t0 }

var specs = []Spec{
	{Name: "blocked_cards", Kind: KindCard, Description: "cards seen in fraud"},
	{Name: "allowed_cards", Kind: KindCard},
	{Name: "blocked_merchants", Kind: KindMerchant},
	{Name: "blocked_countries", Kind: KindCountry},
	{Name: "blocked_ips", Kind: KindIP},
	{Name: "blocked_devices", Kind: KindDevice},
	{Name: "blocked_bins", Kind: KindBIN},
}

func newStore(t *testing.T) (*Store, *redis.Client, string) {
	t.Helper()
	rdb, prefix := redistest.New(t, "liststest")
	s := NewStore(rdb, prefix, fixed)
	s.SetSpecs(specs)
	return s, rdb, prefix
}

func TestNormalize(t *testing.T) {
	const pan = "holds what looks like a card number"
	for _, tc := range []struct {
		kind, in, want string // want "" : invalid
		says           string // in the error
	}{
		// card: what the payment decoder takes as a card_id, and nothing that holds a card number.
		{KindCard, "tok_0123456789abcdef", "tok_0123456789abcdef", ""},
		{KindCard, "c1", "c1", ""},
		{KindCard, "a/b+c=", "a/b+c=", ""},
		{KindCard, "1234567890123456", "1234567890123456", ""}, // 16 digits, not Luhn-valid
		{KindCard, "4111111111111112", "4111111111111112", ""}, // a card number with a typo
		{KindCard, "acct 42", "acct 42", ""},
		{KindCard, "carte-é", "carte-é", ""},
		{KindCard, " c1 ", " c1 ", ""},
		{KindCard, "123456789012", "123456789012", ""},                 // 12 digits: not a card number
		{KindCard, "12345678901234567890", "12345678901234567890", ""}, // 20
		{KindCard, strings.Repeat("x", 128), strings.Repeat("x", 128), ""},
		{KindCard, strings.Repeat("é", 128), strings.Repeat("é", 128), ""},
		{KindCard, "4111111111111111", "", pan},
		{KindCard, "4111-1111-1111-1111", "", pan},
		{KindCard, "4111 1111 1111 1111", "", pan},
		{KindCard, "card 4111111111111111", "", pan},
		{KindCard, "4000000000006", "", pan},             // 13
		{KindCard, "4000000000000000006", "", pan},       // 19
		{KindCard, "4000000000002", "4000000000002", ""}, // 13 digits, not Luhn-valid
		{KindCard, "", "", "empty"},
		{KindCard, "   ", "", "blank"},
		{KindCard, strings.Repeat("x", 129), "", "129"},
		{KindCard, "a\tb", "", "not printable"},
		{KindCard, "a\x7fb", "", "not printable"},
		{KindCard, "a\u00a0b", "", "not printable"},
		{KindCard, "a\xffb", "", "UTF-8"},
		{KindMerchant, "m-42", "m-42", ""},
		{KindMerchant, "Café Zürich 12", "Café Zürich 12", ""},
		{KindMerchant, strings.Repeat("é", 256), strings.Repeat("é", 256), ""},
		{KindMerchant, strings.Repeat("é", 257), "", "257 characters"},
		{KindMerchant, "", "", "empty"},
		{KindMerchant, "   ", "", "blank"},
		{KindMerchant, "a\x00b", "", "not printable"},
		{KindMerchant, "a\xffb", "", "UTF-8"},
		{KindMerchant, "4111111111111111", "", pan},
		{KindMerchant, "4111 1111 1111 1111", "", pan},
		{KindMerchant, "shop/4111-1111-1111-1111/x", "", pan},
		{KindDevice, "dev:abc/123", "dev:abc/123", ""},
		{KindDevice, "", "", "empty"},
		{KindDevice, "a\u2028b", "", "not printable"},
		{KindDevice, "4111111111111111", "", pan},
		{KindDevice, "dev 5555 5555 5555 4444", "", pan},
		{KindCountry, "DE", "DE", ""},
		{KindCountry, "de", "DE", ""},
		{KindCountry, "gB", "GB", ""},
		{KindCountry, "XX", "", "not a country"},
		{KindCountry, "EU", "", "not a country"},
		{KindCountry, "XX1", "", "two letters"},
		{KindCountry, "D1", "", "two letters"},
		{KindCountry, "DEU", "", "ISO 3166 alpha-2"},
		{KindCountry, "ÄÖ", "", "two letters"},
		{KindCountry, "", "", "two letters"},
		{KindCountry, "4111111111111111", "", pan},
		{KindIP, "192.0.2.1", "192.0.2.1", ""},
		{KindIP, "2001:DB8:0:0::1", "2001:db8::1", ""},
		{KindIP, "::ffff:192.0.2.1", "192.0.2.1", ""},
		{KindIP, "::1", "::1", ""},
		{KindIP, "999.1.1.1", "", "not an IP address"},
		{KindIP, "192.0.2.01", "", "not an IP address"},
		{KindIP, "10.0.0.0/8", "", "not supported"},
		{KindIP, "fe80::1%eth0", "", "zone"},
		{KindIP, "", "", "not an IP address"},
		{KindIP, "4111 1111 1111 1111", "", pan},
		{KindBIN, "411111", "411111", ""},
		{KindBIN, "000000", "000000", ""},
		{KindBIN, "41111", "", "is not 6 digits"},
		{KindBIN, "4111111", "", "is not 6 digits"},
		{KindBIN, "41111111", "", "is not 6 digits"},
		{KindBIN, "41111a", "", "is not 6 digits"},
		{KindBIN, "４１１１１１", "", "is not 6 digits"}, // full-width digits
		{KindBIN, "4111111111111111", "", pan},
		{"colour", "red", "", "unknown kind"},
	} {
		t.Run(tc.kind+"/"+tc.in, func(t *testing.T) {
			got, err := Normalize(tc.kind, tc.in)
			switch {
			case tc.want != "" && (err != nil || got != tc.want):
				t.Errorf("got %q, %v; want %q", got, err, tc.want)
			case tc.want == "" && (err == nil || !errors.Is(err, ErrInvalidValue)):
				t.Errorf("got %q, %v; want ErrInvalidValue", got, err)
			case tc.want == "" && !strings.Contains(err.Error(), tc.says):
				t.Errorf("error %q does not say %q", err, tc.says)
			case tc.want == "" && tc.kind != "colour" && !strings.Contains(err.Error(), "kind "+tc.kind):
				t.Errorf("error %q does not name the kind", err)
			}
			if err != nil {
				if _, found := payment.RedactPANs([]byte(err.Error())); found || strings.Contains(err.Error(), "1111 1111") ||
					strings.Contains(err.Error(), "111111111") {
					t.Errorf("error %q quotes a card number", err)
				}
			}
		})
	}
	if !strings.Contains(expected(KindBIN), "a BIN: 6 digits (the first 6 of the card number)") {
		t.Errorf("a BIN's expected: %s", expected(KindBIN))
	}
}

// Errors that quote a value quote no card number: not one cut out of a longer run of digits,
// not one in a list's name, not one in a kind.
func TestErrorsQuoteNoCardNumber(t *testing.T) {
	// 20 digits are no card number, but the first 16 of them are: clip cuts 40 characters to
	// keep 24 x's and those 16.
	long := strings.Repeat("x", 24) + "41111111111111110000"
	if _, found := payment.RedactPANs([]byte(long)); found {
		t.Fatalf("%s holds a card number", long)
	}
	for _, tc := range []struct{ kind, value string }{
		{KindIP, long}, {KindBIN, long}, {KindCountry, long}, {long, "x"}, {"4111111111111111", "x"},
	} {
		_, err := Normalize(tc.kind, tc.value)
		if err == nil {
			t.Fatalf("%s %q accepted", tc.kind, tc.value)
		}
		if _, found := payment.RedactPANs([]byte(err.Error())); found || strings.Contains(err.Error(), "4111111111111111") {
			t.Errorf("%s %q: error %q quotes a card number", tc.kind, tc.value, err)
		}
	}
	s := NewStore(nil, "x", fixed)
	s.SetSpecs(specs)
	for _, list := range []string{"4111111111111111", long} {
		_, err := s.Get(context.Background(), list, "x")
		if _, found := payment.RedactPANs([]byte(err.Error())); !errors.Is(err, ErrUnknownList) || found {
			t.Errorf("list %q: %v", list, err)
		}
	}
}

// decodesCardID reports whether the payment decoder takes v as a card_id, and whether v could be
// sent at all (JSON strings are UTF-8).
func decodesCardID(d *payment.Decoder, v string) (ok, sendable bool) {
	id, err := json.Marshal(v)
	if err != nil || !utf8.ValidString(v) {
		return false, false
	}
	_, err = d.Decode(fmt.Appendf(nil, `{"payment_id":"p1","card_id":%s,"amount":"1","currency":"EUR","timestamp":"2026-12-01T09:30:00Z"}`, id))
	return err == nil, true
}

// A card list takes what the payment decoder takes as a card_id, so that every card that can
// pay can be blocked; but no value that holds a card number, which the decoder takes when it is
// not the whole card_id ("card 4111111111111111", "4111-1111-1111-1111").
func TestCardAsDecoder(t *testing.T) {
	d := payment.NewDecoder([]byte("k"), 1<<16)
	for _, v := range []string{"1234567890123456", "acct 42", "carte-é", "tok_abc", "a/b", " c1", strings.Repeat("é", 128),
		"4111111111111111", "4000000000006", "", " ", "a\tb", "a\u00a0b", "a\u2028b", strings.Repeat("x", 129),
		"card 4111111111111111", "4111-1111-1111-1111", "4111 1111 1111 1111"} {
		decodes, _ := decodesCardID(d, v)
		_, err := Normalize(KindCard, v)
		_, holdsPAN := payment.RedactPANs([]byte(v))
		if want := decodes && !holdsPAN; (err == nil) != want {
			t.Errorf("%q: the decoder takes it: %v, holds a card number: %v; the list: %v", v, decodes, holdsPAN, err)
		}
	}
}

func FuzzNormalize(f *testing.F) {
	for _, s := range []string{"", "DE", "de", "4111111111111111", "4111-1111-1111-1111", "4111 1111 1111 1111", "::ffff:1.2.3.4",
		"2001:DB8::1", "fe80::1%eth0", "411111", "tok_abc", "a b", "\xff", "10.0.0.0/8", "1234567890123", "acct 42", "carte-é",
		"xxxxxxxxxxxxxxxxxxxxxxxx41111111111111110000", "\u20281234567890"} {
		f.Add(s)
	}
	d := payment.NewDecoder([]byte("k"), 1<<16)
	f.Fuzz(func(t *testing.T, v string) {
		// A card list takes what the decoder takes as a card_id, but what holds a card number.
		decodes, sendable := decodesCardID(d, v)
		_, holdsPAN := payment.RedactPANs([]byte(v))
		if _, err := Normalize(KindCard, v); sendable && (err == nil) != (decodes && !holdsPAN) {
			t.Fatalf("card %q: the decoder takes it: %v, holds a card number: %v; the list: %v", v, decodes, holdsPAN, err)
		}
		for _, kind := range Kinds() {
			got, err := Normalize(kind, v)
			if err != nil {
				if !errors.Is(err, ErrInvalidValue) {
					t.Fatalf("%s %q: %v does not wrap ErrInvalidValue", kind, v, err)
				}
				if _, found := payment.RedactPANs([]byte(err.Error())); found {
					t.Fatalf("%s %q: the error %q holds a card number", kind, v, err)
				}
				continue
			}
			if _, found := payment.RedactPANs([]byte(got)); found {
				t.Fatalf("%s %q: accepted as %q, which holds a card number", kind, v, got)
			}
			if again, err := Normalize(kind, got); err != nil || again != got {
				t.Fatalf("%s %q: normalised to %q, which normalises to %q, %v", kind, v, got, again, err)
			}
		}
	})
}

func TestSpecValidate(t *testing.T) {
	for _, sp := range []Spec{{Name: "", Kind: KindCard}, {Name: "Blocked", Kind: KindCard}, {Name: "a-b", Kind: KindCard},
		{Name: "1a", Kind: KindCard}, {Name: "@epoch", Kind: KindCard}, {Name: "ok", Kind: "colour"}, {Name: strings.Repeat("a", 65), Kind: KindIP}} {
		if sp.Validate() == nil {
			t.Errorf("%+v is valid", sp)
		}
	}
	for _, sp := range specs {
		if err := sp.Validate(); err != nil {
			t.Error(err)
		}
	}
	s := NewStore(nil, "x", fixed)
	s.SetSpecs([]Spec{{Name: "b", Kind: KindIP}, {Name: "bad name", Kind: KindIP}, {Name: "a", Kind: KindCard, Description: "d"}})
	if got := s.Specs(); !slices.Equal(got, []Spec{{Name: "a", Kind: KindCard, Description: "d"}, {Name: "b", Kind: KindIP}}) {
		t.Errorf("specs %+v", got)
	}
}

func TestUnknownList(t *testing.T) {
	s, _, _ := newStore(t)
	ctx := context.Background()
	_, _, err1 := s.Put(ctx, "blocked_emails", "a@b", "ana", "")
	_, err2 := s.Delete(ctx, "blocked_emails", "a@b", "ana")
	_, err3 := s.Get(ctx, "blocked_emails", "a@b")
	_, _, err4 := s.Items(ctx, "blocked_emails", "", 10)
	_, err5 := s.Changes(ctx, "blocked_emails", 10)
	for i, err := range []error{err1, err2, err3, err4, err5} {
		if !errors.Is(err, ErrUnknownList) || !strings.Contains(fmt.Sprint(err), "allowed_cards, blocked_bins, blocked_cards") {
			t.Errorf("call %d: %v", i+1, err)
		}
	}
	// A list no longer declared is unknown.
	s.SetSpecs(specs[1:])
	if _, _, err := s.Put(ctx, "blocked_cards", "c1", "ana", ""); !errors.Is(err, ErrUnknownList) {
		t.Errorf("undeclared list: %v", err)
	}
	s.SetSpecs(nil)
	if _, err := s.Get(ctx, "allowed_cards", "c1"); !errors.Is(err, ErrUnknownList) || !strings.Contains(err.Error(), "none") {
		t.Errorf("no lists: %v", err)
	}
}

func TestPutGetDelete(t *testing.T) {
	s, rdb, prefix := newStore(t)
	ctx := context.Background()
	version := func() string { return rdb.HGet(ctx, prefix+":{lists}:v", "blocked_countries").Val() }

	it, created, err := s.Put(ctx, "blocked_countries", "kp", "ana", "sanctions")
	want := Item{List: "blocked_countries", Value: "KP", AddedBy: "ana", AddedAt: t0, Note: "sanctions"}
	if err != nil || !created || it != want {
		t.Fatalf("put: %+v %v %v", it, created, err)
	}
	if version() != "1" {
		t.Errorf("version %q after a put", version())
	}
	// Again, by someone else with another note: unchanged, no new version, no audit entry.
	if it, created, err := s.Put(ctx, "blocked_countries", "KP", "bob", "again"); err != nil || created || it != want {
		t.Errorf("put again: %+v %v %v", it, created, err)
	}
	if version() != "1" {
		t.Errorf("version %q after an idempotent put", version())
	}
	if it, err := s.Get(ctx, "blocked_countries", "kp"); err != nil || it != want {
		t.Errorf("get: %+v %v", it, err)
	}
	if _, _, err := s.Put(ctx, "blocked_countries", "XX1", "ana", ""); !errors.Is(err, ErrInvalidValue) {
		t.Errorf("put XX1: %v", err)
	}
	if _, err := s.Get(ctx, "blocked_countries", "FR"); !errors.Is(err, ErrNotFound) {
		t.Errorf("get FR: %v", err)
	}
	// The item removed, as the list held it: normalised.
	if it, err := s.Delete(ctx, "blocked_countries", "kp", "bob"); err != nil || it != want {
		t.Fatalf("delete: %+v %v", it, err)
	}
	if version() != "2" {
		t.Errorf("version %q after a delete", version())
	}
	if _, err := s.Delete(ctx, "blocked_countries", "KP", "bob"); !errors.Is(err, ErrNotFound) {
		t.Errorf("delete again: %v", err)
	}
	if _, err := s.Get(ctx, "blocked_countries", "KP"); !errors.Is(err, ErrNotFound) {
		t.Errorf("get after delete: %v", err)
	}
	if version() != "2" {
		t.Errorf("version %q after a delete of nothing", version())
	}
	changes, err := s.Changes(ctx, "blocked_countries", 10)
	wantChanges := []Change{
		{List: "blocked_countries", Value: "KP", Op: OpRemove, By: "bob", At: t0},
		{List: "blocked_countries", Value: "KP", Op: OpAdd, By: "ana", Note: "sanctions", At: t0},
	}
	if err != nil || !slices.Equal(changes, wantChanges) {
		t.Errorf("changes %+v %v", changes, err)
	}
	if changes, _ := s.Changes(ctx, "blocked_countries", 1); len(changes) != 1 || changes[0].Op != OpRemove {
		t.Errorf("last change %+v", changes)
	}
	if _, err := s.Changes(ctx, "blocked_countries", 0); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("limit 0: %v", err)
	}
	if changes, err := s.Changes(ctx, "blocked_ips", 10); err != nil || len(changes) != 0 {
		t.Errorf("changes of an untouched list %+v %v", changes, err)
	}
	// No key of the lists expires.
	keys, _ := rdb.Keys(ctx, prefix+":*").Result()
	for _, k := range keys {
		if ttl := rdb.TTL(ctx, k).Val(); ttl != -1 {
			t.Errorf("%s has a TTL %s", k, ttl)
		}
	}
	if len(keys) < 2 { // the versions and the audit trail; the items went with the last one
		t.Errorf("keys %v", keys)
	}
}

// A note is at most MaxNoteLen characters and holds no card number; one that does is refused,
// unquoted, and nothing is stored.
func TestNotes(t *testing.T) {
	s, _, _ := newStore(t)
	ctx := context.Background()
	for _, note := range []string{"4111111111111111", "card 4111 1111 1111 1111 stolen", "4111-1111-1111-1111",
		strings.Repeat("n", MaxNoteLen+1), "bad \xff"} {
		_, _, err := s.Put(ctx, "blocked_merchants", "m1", "ana", note)
		if !errors.Is(err, ErrInvalidNote) || strings.Contains(err.Error(), "1111") || strings.Contains(err.Error(), "nnn") {
			t.Errorf("note %.30q: %v", note, err)
		}
	}
	if _, err := s.Get(ctx, "blocked_merchants", "m1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("stored after a refused note: %v", err)
	}
	if changes, _ := s.Changes(ctx, "blocked_merchants", 10); len(changes) != 0 {
		t.Errorf("audited after a refused note: %v", changes)
	}
	// The value is checked first.
	if _, _, err := s.Put(ctx, "blocked_merchants", "", "ana", "4111111111111111"); !errors.Is(err, ErrInvalidValue) {
		t.Errorf("an empty value with a bad note: %v", err)
	}
	for _, note := range []string{strings.Repeat("é", MaxNoteLen), "order 1234567890123456, ticket 42", ""} {
		if it, created, err := s.Put(ctx, "blocked_merchants", "m-"+fmt.Sprint(len(note)), "ana", note); err != nil || !created || it.Note != note {
			t.Errorf("note %.30q: %+v %v %v", note, it, created, err)
		}
	}
}

func TestItemsPages(t *testing.T) {
	s, _, _ := newStore(t)
	ctx := context.Background()
	var values []string
	for i := range 25 {
		values = append(values, fmt.Sprintf("m-%02d", i))
	}
	rand.Shuffle(len(values), func(i, j int) { values[i], values[j] = values[j], values[i] })
	for _, v := range values {
		if _, _, err := s.Put(ctx, "blocked_merchants", v, "ana", ""); err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(values)
	if counts, err := s.Counts(ctx); err != nil || counts["blocked_merchants"] != 25 || counts["blocked_cards"] != 0 || len(counts) != len(specs) {
		t.Errorf("counts %v %v", counts, err)
	}
	var got []string
	cursor := ""
	for pages := 0; ; pages++ {
		items, next, err := s.Items(ctx, "blocked_merchants", cursor, 7)
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range items {
			got = append(got, it.Value)
			if it.AddedBy != "ana" || it.List != "blocked_merchants" {
				t.Errorf("item %+v", it)
			}
		}
		if pages == 0 {
			// Changes before the cursor neither repeat nor push items off the next page.
			s.Put(ctx, "blocked_merchants", "m-00a", "ana", "")
			s.Delete(ctx, "blocked_merchants", "m-01", "ana")
		}
		if next == "" {
			if len(items) == 0 {
				t.Error("an empty last page")
			}
			break
		}
		cursor = next
	}
	if !slices.Equal(got, values) {
		t.Errorf("pages:\n got  %v\n want %v", got, values)
	}
	// Exactly a page: no empty page after it.
	if items, next, err := s.Items(ctx, "blocked_merchants", "", 25); len(items) != 25 || next != "" || err != nil {
		t.Errorf("a page of all: %d %q %v", len(items), next, err)
	}
	if items, next, err := s.Items(ctx, "blocked_bins", "", 10); len(items) != 0 || next != "" || err != nil {
		t.Errorf("an empty list: %v %q %v", items, next, err)
	}
	for _, tc := range []struct {
		cursor string
		limit  int
	}{{"", 0}, {"", 1001}, {"%%%", 10}, {"", -1}} {
		if _, _, err := s.Items(ctx, "blocked_merchants", tc.cursor, tc.limit); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("cursor %q limit %d: %v", tc.cursor, tc.limit, err)
		}
	}
}

// Two instances on one Redis: a change on one is in the other's snapshot after one Refresh.
func TestTwoInstances(t *testing.T) {
	a, rdb, prefix := newStore(t)
	b := NewStore(rdb, prefix, fixed)
	b.SetSpecs(specs)
	ctx := context.Background()
	if b.Snapshot() == nil || b.Snapshot().Contains("blocked_cards", "c1") || b.Snapshot().Version() != "" {
		t.Fatal("a new store's snapshot is not empty")
	}
	if changed, err := b.Refresh(ctx); err != nil || changed || b.Snapshot().Version() != "" {
		t.Fatalf("refresh of nothing: %v %v %q", changed, err, b.Snapshot().Version())
	}
	if _, _, err := a.Put(ctx, "blocked_cards", "c1", "ana", ""); err != nil {
		t.Fatal(err)
	}
	if changed, err := b.Refresh(ctx); err != nil || !changed {
		t.Fatalf("refresh: %v %v", changed, err)
	}
	snap := b.Snapshot()
	if !snap.Contains("blocked_cards", "c1") || snap.Contains("allowed_cards", "c1") || snap.Len("blocked_cards") != 1 || snap.Version() == "" {
		t.Errorf("b's snapshot after a's put: %+v", snap)
	}
	a.Refresh(ctx)
	if a.Snapshot().Version() != snap.Version() {
		t.Errorf("versions differ: %q %q", a.Snapshot().Version(), snap.Version())
	}
	if _, err := a.Delete(ctx, "blocked_cards", "c1", "ana"); err != nil {
		t.Fatal(err)
	}
	b.Refresh(ctx)
	if b.Snapshot().Contains("blocked_cards", "c1") || b.Snapshot().Version() == snap.Version() {
		t.Errorf("after a's delete: %q", b.Snapshot().Version())
	}
	if !snap.Contains("blocked_cards", "c1") {
		t.Error("a snapshot changed after it was taken")
	}
	if b.Snapshot().Version() == "" {
		t.Error("an empty list that was changed has no version")
	}
}

// Refresh reads a list in full only when its version changed.
func TestRefreshReadsChangedListsOnly(t *testing.T) {
	s, _, _ := newStore(t)
	ctx := context.Background()
	s.Put(ctx, "blocked_cards", "c1", "ana", "")
	s.Put(ctx, "blocked_ips", "192.0.2.1", "ana", "")
	if _, err := s.Refresh(ctx); err != nil || s.reads.Load() != 2 {
		t.Fatalf("first refresh read %d lists, %v", s.reads.Load(), err)
	}
	ips := s.Snapshot().lists["blocked_ips"]
	if changed, _ := s.Refresh(ctx); changed || s.reads.Load() != 2 {
		t.Errorf("refresh without changes: changed %v, read %d", changed, s.reads.Load())
	}
	s.Put(ctx, "blocked_cards", "c2", "ana", "")
	s.Put(ctx, "blocked_cards", "c1", "ana", "") // no change
	if changed, _ := s.Refresh(ctx); !changed || s.reads.Load() != 3 {
		t.Errorf("refresh after one list changed: changed %v, read %d", changed, s.reads.Load())
	}
	if s.Snapshot().lists["blocked_ips"] != ips || s.Snapshot().Len("blocked_cards") != 2 {
		t.Error("the unchanged list was not kept")
	}
	// New specs change no contents: nothing to read.
	s.SetSpecs(specs[:3])
	if changed, _ := s.Refresh(ctx); changed || s.reads.Load() != 3 || !s.Snapshot().Contains("blocked_ips", "192.0.2.1") {
		t.Errorf("refresh after new specs: changed %v, read %d", changed, s.reads.Load())
	}
}

func TestContainsIP(t *testing.T) {
	s, _, _ := newStore(t)
	ctx := context.Background()
	for _, v := range []string{"::ffff:192.0.2.1", "2001:DB8::1"} {
		if _, _, err := s.Put(ctx, "blocked_ips", v, "ana", ""); err != nil {
			t.Fatal(err)
		}
	}
	s.Put(ctx, "blocked_devices", "::ffff:192.0.2.1", "ana", "")
	s.Refresh(ctx)
	snap := s.Snapshot()
	for v, want := range map[string]bool{"192.0.2.1": true, "::ffff:192.0.2.1": true, "2001:db8::1": true, "2001:DB8:0::1": true,
		"fe80::1%eth0": false, "2001:db8::1%eth0": true, "192.0.2.2": false, "not an ip": false, "": false} {
		if got := snap.Contains("blocked_ips", v); got != want {
			t.Errorf("blocked_ips has %q: %v", v, got)
		}
	}
	// Another kind compares as given.
	if !snap.Contains("blocked_devices", "::ffff:192.0.2.1") || snap.Contains("blocked_devices", "192.0.2.1") {
		t.Error("a device list compared as addresses")
	}
	if snap.Contains("nope", "x") || snap.Len("nope") != 0 {
		t.Error("a list that is not there has something")
	}
}

// Redis losing the lists' data empties the snapshot, counted once.
func TestLoss(t *testing.T) {
	s, rdb, prefix := newStore(t)
	ctx := context.Background()
	s.Put(ctx, "blocked_cards", "c1", "ana", "")
	s.Put(ctx, "blocked_ips", "192.0.2.1", "ana", "")
	s.Refresh(ctx)
	wipe := func() {
		keys, _ := rdb.Keys(ctx, prefix+":*").Result()
		rdb.Del(ctx, keys...)
	}
	wipe()
	if changed, err := s.Refresh(ctx); !changed || err != nil || s.Losses() != 1 {
		t.Fatalf("refresh after the loss: %v %v, losses %d", changed, err, s.Losses())
	}
	if snap := s.Snapshot(); snap.Contains("blocked_cards", "c1") || snap.Len("blocked_ips") != 0 || snap.Version() != "" {
		t.Errorf("snapshot after the loss: %+v", snap)
	}
	if changed, _ := s.Refresh(ctx); changed || s.Losses() != 1 {
		t.Errorf("a second refresh: changed %v, losses %d", changed, s.Losses())
	}
	// Items put back: no loss. Then a loss with a new item already put before the refresh sees
	// it: the epoch tells.
	s.Put(ctx, "blocked_cards", "c1", "ana", "")
	s.Put(ctx, "blocked_cards", "c2", "ana", "")
	s.Refresh(ctx)
	if s.Losses() != 1 || !s.Snapshot().Contains("blocked_cards", "c1") {
		t.Fatalf("after putting back: losses %d", s.Losses())
	}
	wipe()
	s.Put(ctx, "blocked_cards", "c3", "ana", "")
	s.Put(ctx, "blocked_cards", "c4", "ana", "") // version 2, as before the loss
	s.Refresh(ctx)
	if snap := s.Snapshot(); s.Losses() != 2 || snap.Contains("blocked_cards", "c1") || !snap.Contains("blocked_cards", "c3") || snap.Len("blocked_cards") != 2 {
		t.Errorf("a loss hidden by new puts: losses %d, %+v", s.Losses(), snap)
	}
}

// failing is a hook that makes every command fail while it is set: Redis down, as the client
// sees it.
type failing struct{ on atomic.Bool }

func (f *failing) DialHook(next redis.DialHook) redis.DialHook { return next }
func (f *failing) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if f.on.Load() {
			return &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
		}
		return next(ctx, cmd)
	}
}
func (f *failing) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if f.on.Load() {
			return &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
		}
		return next(ctx, cmds)
	}
}

// syncBuffer is a log destination safe for the Run goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}
func (b *syncBuffer) String() string { b.mu.Lock(); defer b.mu.Unlock(); return b.b.String() }

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// Run logs an outage once and its end once, a loss at ERROR, and returns nil when ctx ends.
func TestRunLogs(t *testing.T) {
	writer, rdb, prefix := newStore(t)
	hook := &failing{}
	rdb2 := redis.NewClient(&redis.Options{Addr: rdb.Options().Addr})
	t.Cleanup(func() { rdb2.Close() })
	rdb2.AddHook(hook)
	s := NewStore(rdb2, prefix, time.Now)
	s.SetSpecs(specs)
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, 5*time.Millisecond, log) }()

	writer.Put(ctx, "blocked_cards", "c1", "ana", "")
	waitFor(t, "the put", func() bool { return s.Snapshot().Contains("blocked_cards", "c1") })
	hook.on.Store(true)
	waitFor(t, "the outage logged", func() bool { return strings.Contains(logs.String(), "lists not refreshed") })
	time.Sleep(50 * time.Millisecond) // ten failed refreshes or so
	hook.on.Store(false)
	waitFor(t, "the recovery logged", func() bool { return strings.Contains(logs.String(), "lists refreshed again") })
	if !s.Snapshot().Contains("blocked_cards", "c1") {
		t.Error("the outage emptied the snapshot")
	}
	keys, _ := rdb.Keys(ctx, prefix+":*").Result()
	rdb.Del(ctx, keys...)
	waitFor(t, "the loss", func() bool { return s.Losses() == 1 })
	time.Sleep(30 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run returned %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return")
	}
	out := logs.String()
	for msg, want := range map[string]int{"level=WARN msg=\"lists not refreshed": 1, "level=INFO msg=\"lists refreshed again": 1,
		"level=ERROR msg=\"redis lost the lists' data:": 1} {
		if got := strings.Count(out, msg); got != want {
			t.Errorf("%d lines %s, want %d:\n%s", got, msg, want, out)
		}
	}
	if s.Snapshot().Contains("blocked_cards", "c1") {
		t.Error("the snapshot still has what Redis lost")
	}
}

// Writers, a refresher, readers and rules reloads at once (run with -race): in the end the
// snapshot is what Redis holds.
func TestConcurrent(t *testing.T) {
	s, rdb, prefix := newStore(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := range 4 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for range 200 {
				v := fmt.Sprintf("c%d", rng.IntN(40))
				if rng.IntN(3) == 0 {
					s.Delete(ctx, "blocked_cards", v, "ana")
				} else {
					s.Put(ctx, "blocked_cards", v, "ana", "")
				}
			}
		})
	}
	var readers sync.WaitGroup
	readers.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := s.Refresh(ctx); err != nil {
				t.Error(err)
				return
			}
			s.SetSpecs(specs)
		}
	})
	for range 2 {
		readers.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				snap := s.Snapshot()
				snap.Contains("blocked_cards", "c1")
				snap.Contains("blocked_ips", "::ffff:10.0.0.1")
				_ = snap.Version() + fmt.Sprint(snap.Len("blocked_cards"))
			}
		})
	}
	wg.Wait()
	close(stop)
	readers.Wait()
	s.Refresh(ctx)
	want, err := rdb.HKeys(ctx, prefix+":{lists}:i:blocked_cards").Result()
	if err != nil {
		t.Fatal(err)
	}
	snap := s.Snapshot()
	if snap.Len("blocked_cards") != len(want) {
		t.Errorf("snapshot has %d, Redis %d", snap.Len("blocked_cards"), len(want))
	}
	for _, v := range want {
		if !snap.Contains("blocked_cards", v) {
			t.Errorf("snapshot misses %s", v)
		}
	}
	changes, _ := s.Changes(ctx, "blocked_cards", 1000)
	version, _ := rdb.HGet(ctx, prefix+":{lists}:v", "blocked_cards").Int()
	if len(changes) != version {
		t.Errorf("%d audit entries, version %d", len(changes), version)
	}
}

// Refreshed is zero until a Refresh succeeds, then the time of the last success, whether or not
// it changed the snapshot; a failed Refresh leaves it.
func TestRefreshed(t *testing.T) {
	_, rdb, prefix := newStore(t)
	hook := &failing{}
	rdb2 := redis.NewClient(&redis.Options{Addr: rdb.Options().Addr})
	t.Cleanup(func() { rdb2.Close() })
	rdb2.AddHook(hook)
	now := t0
	s := NewStore(rdb2, prefix, func() time.Time { return now })
	s.SetSpecs(specs)
	ctx := context.Background()
	if got := s.Refreshed(); !got.IsZero() {
		t.Fatalf("refreshed %v before any Refresh", got)
	}
	hook.on.Store(true)
	if _, err := s.Refresh(ctx); err == nil || !s.Refreshed().IsZero() {
		t.Fatalf("a failed first Refresh: %v, refreshed %v", err, s.Refreshed())
	}
	hook.on.Store(false)
	if changed, err := s.Refresh(ctx); err != nil || changed || !s.Refreshed().Equal(t0) {
		t.Fatalf("a Refresh of nothing: %v %v, refreshed %v", changed, err, s.Refreshed())
	}
	now = t0.Add(time.Minute)
	s.Put(ctx, "blocked_cards", "c1", "ana", "")
	if changed, err := s.Refresh(ctx); err != nil || !changed || !s.Refreshed().Equal(now) {
		t.Fatalf("a Refresh of a change: %v %v, refreshed %v", changed, err, s.Refreshed())
	}
	now = t0.Add(2 * time.Minute)
	if changed, err := s.Refresh(ctx); err != nil || changed || !s.Refreshed().Equal(now) {
		t.Fatalf("a Refresh without changes: %v %v, refreshed %v", changed, err, s.Refreshed())
	}
	now = t0.Add(3 * time.Minute)
	hook.on.Store(true)
	if _, err := s.Refresh(ctx); err == nil || !s.Refreshed().Equal(t0.Add(2*time.Minute)) {
		t.Errorf("a failed Refresh: %v, refreshed %v", err, s.Refreshed())
	}
}
