package pagetoken_test

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"slices"
	"strings"
	"testing"

	"github.com/furrow/furrow/pkg/failure"
	"github.com/furrow/furrow/pkg/pagetoken"
)

func TestRoundTrip(t *testing.T) {
	l := pagetoken.For("brand.premiums", "F1", "", "hema", "2026-01", "2026-12")
	for _, cursor := range [][]string{{"F1", "xunwu", "hema", "2026-11"}, {"", "", "", ""}, {"a:b\x1fc", "é", "🍊", strings.Repeat("x", 300)}} {
		tok := l.Next(cursor...)
		if strings.ContainsAny(tok, "+/=") {
			t.Fatalf("token %q is not unpadded base64url", tok)
		}
		got, err := pagetoken.For("brand.premiums", "F1", "", "hema", "2026-01", "2026-12").Cursor(tok, len(cursor))
		if err != nil || !slices.Equal(got, cursor) {
			t.Fatalf("Cursor(Next(%q)) = %q, %v", cursor, got, err)
		}
	}
	seq, err := l.Seq(l.NextSeq(1<<63 + 5))
	if err != nil || seq != 1<<63+5 {
		t.Fatalf("Seq(NextSeq) = %d, %v", seq, err)
	}
}

func TestNoTokenIsTheFirstPage(t *testing.T) {
	l := pagetoken.For("ledger.farmers", "Xunwu", "")
	if got, err := l.Cursor("", 2); err != nil || !slices.Equal(got, []string{"", ""}) {
		t.Fatalf("Cursor(\"\") = %q, %v", got, err)
	}
	if seq, err := l.Seq(""); err != nil || seq != 0 {
		t.Fatalf("Seq(\"\") = %d, %v", seq, err)
	}
}

// refused checks err is an Invalid naming page_token whose message says
// why (mention).
func refused(t *testing.T, what string, err error, mention string) {
	t.Helper()
	var f *failure.Error
	if failure.KindOf(err) != failure.KindInvalid || !errors.As(err, &f) || f.Field != "page_token" {
		t.Fatalf("%s: %v, want an Invalid naming page_token", what, err)
	}
	if !strings.Contains(err.Error(), mention) {
		t.Fatalf("%s: %q does not say %q", what, err, mention)
	}
}

func TestRefused(t *testing.T) {
	farmers := pagetoken.For("ledger.farmers", "Xunwu", "")
	tok := farmers.Next("A1")
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, token string
		list        pagetoken.List
		n           int
		mention     string
	}{
		{"other filter values", tok, pagetoken.For("ledger.farmers", "Qinglong", ""), 1, "other filters"},
		{"a filter added", tok, pagetoken.For("ledger.farmers", "Xunwu", "Navel Co-op"), 1, "other filters"},
		{"filters shifted between fields", tok, pagetoken.For("ledger.farmers", "", "Xunwu"), 1, "other filters"},
		{"another list's token", pagetoken.For("ledger.payouts", "Xunwu", "").Next("A1"), farmers, 1, "ledger.payouts list"},
		{"another cursor shape", tok, farmers, 2, "garbled"},
		{"not base64", "!!not base64!!", farmers, 1, "garbled"},
		{"padded base64", base64.URLEncoding.EncodeToString(raw), farmers, 1, "garbled"},
		{"truncated", tok[:len(tok)-3], farmers, 1, "garbled"},
		{"cut to one character", tok[:1], farmers, 1, "garbled"},
		{"an old-format token", base64.RawURLEncoding.EncodeToString([]byte("farmers:A1")), farmers, 1, "garbled"},
		{"too long", strings.Repeat("A", pagetoken.MaxLen+1), farmers, 1, "garbled"},
		{"a cursor that is not a sequence", tok, farmers, -1, "not a sequence"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if tc.n < 0 {
				_, err = tc.list.Seq(tc.token)
			} else {
				_, err = tc.list.Cursor(tc.token, tc.n)
			}
			refused(t, tc.name, err, tc.mention)
		})
	}
}

// TestTampering flips every bit of a token in turn: none is accepted.
func TestTampering(t *testing.T) {
	l := pagetoken.For("procurement.orders", "baba-2025", "", "Xunwu", "")
	raw, err := base64.RawURLEncoding.DecodeString(l.NextSeq(42))
	if err != nil {
		t.Fatal(err)
	}
	for i := range len(raw) * 8 {
		b := slices.Clone(raw)
		b[i/8] ^= 1 << (i % 8)
		if got, err := l.Cursor(base64.RawURLEncoding.EncodeToString(b), 1); err == nil {
			t.Fatalf("bit %d flipped: accepted with cursor %q", i, got)
		}
	}
}

// TestUnknownVersion: a well-formed token of another version is refused
// as such.
func TestUnknownVersion(t *testing.T) {
	l := pagetoken.For("ledger.farmers")
	raw, err := base64.RawURLEncoding.DecodeString(l.Next("A1"))
	if err != nil {
		t.Fatal(err)
	}
	body := slices.Clone(raw[:len(raw)-4])
	body[0] = pagetoken.Version + 1
	body = binary.BigEndian.AppendUint32(body, crc32.Checksum(body, crc32.MakeTable(crc32.Castagnoli)))
	_, err = l.Cursor(base64.RawURLEncoding.EncodeToString(body), 1)
	refused(t, "version 2", err, "version 2 token")
}
