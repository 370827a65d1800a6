package console_test

import (
	"context"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/furrow/furrow/cmd/furrow/internal/stack"
)

// TestStateChangingFormsNeedTheCSRFToken: a post without the visitor's
// token, with another token, or from another origin is refused and
// changes nothing; with the token from the cookie it goes through.
func TestStateChangingFormsNeedTheCSRFToken(t *testing.T) {
	t.Parallel()
	st, err := stack.Start(context.Background(), stack.Config{DataDir: t.TempDir(), GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		st.Shutdown(ctx)
	})
	base := "http://" + st.HTTPAddr()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := c.Get(base + "/projections/ledger_balances")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	u, _ := url.Parse(base)
	var token string
	for _, ck := range jar.Cookies(u) {
		if ck.Name == "furrow_csrf" {
			token = ck.Value
		}
	}
	if token == "" {
		t.Fatal("the console set no CSRF cookie")
	}
	post := func(form url.Values, origin string) int {
		req, _ := http.NewRequest("POST", base+"/projections/ledger_balances/pause", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		res, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	paused := func() bool {
		for _, r := range st.Projections() {
			if r.Name() == "ledger_balances" {
				s, err := r.Status(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				return s.Paused
			}
		}
		t.Fatal("no ledger_balances")
		return false
	}
	for name, tc := range map[string]struct {
		form   url.Values
		origin string
	}{
		"no token":     {url.Values{"reason": {"x"}}, ""},
		"wrong token":  {url.Values{"reason": {"x"}, "csrf": {strings.Repeat("A", 43)}}, ""},
		"other origin": {url.Values{"reason": {"x"}, "csrf": {token}}, "http://evil.example"},
	} {
		if code := post(tc.form, tc.origin); code != http.StatusForbidden {
			t.Errorf("%s: %d, want 403", name, code)
		}
		if paused() {
			t.Fatalf("%s: the projection was paused", name)
		}
	}
	if code := post(url.Values{"reason": {"maintenance"}, "csrf": {token}}, base); code != http.StatusSeeOther {
		t.Fatalf("with the token: %d, want 303", code)
	}
	if !paused() {
		t.Error("with the token the projection was not paused")
	}
}
