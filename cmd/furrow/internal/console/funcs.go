package console

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"math"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/furrow/furrow/pkg/httpapi"
)

// shanghai is the time zone the console shows times in: Furrow's calendar
// days are China Standard Time (the brand service's dates), so are the
// console's.
var shanghai = time.FixedZone("CST", 8*3600)

var funcs = template.FuncMap{
	"yuan":    yuan,
	"kg":      kg,
	"num":     num,
	"unum":    func(n uint64) string { return group(strconv.FormatUint(n, 10)) },
	"bytes":   humanBytes,
	"ts":      ts,
	"tsShort": tsShort,
	"ago":     ago,
	"dur":     dur,
	"enum":    enum,
	"pct":     pct,
	"pretty":  prettyJSON,
	"protojson": func(m proto.Message) string {
		b, _ := protojson.MarshalOptions{UseProtoNames: true, Multiline: true, Indent: "  "}.Marshal(m)
		return string(b)
	},
	"chart": chartJSON,
	"clock": func(t time.Time) string { return t.In(shanghai).Format("15:04:05") },
	"roles": func(id *httpapi.Identity) string { return strings.ReplaceAll(id.RoleList(), ",", ", ") },
	"eq64":  func(a, b int64) bool { return a == b },
	"neg":   func(n int64) bool { return n < 0 },
	"add":   func(a, b int) int { return a + b },
}

// yuan formats fen as yuan with thousands separators: 123456 → "1,234.56".
func yuan(fen int64) string {
	sign := ""
	u := uint64(fen)
	if fen < 0 {
		sign, u = "-", uint64(-(fen+1))+1
	}
	return fmt.Sprintf("%s%s.%02d", sign, group(strconv.FormatUint(u/100, 10)), u%100)
}

// kg formats grams as kilograms with three decimals: 12345 → "12.345".
func kg(grams int64) string {
	sign := ""
	u := uint64(grams)
	if grams < 0 {
		sign, u = "-", uint64(-(grams+1))+1
	}
	return fmt.Sprintf("%s%s.%03d", sign, group(strconv.FormatUint(u/1000, 10)), u%1000)
}

func num(n any) string {
	switch v := n.(type) {
	case int:
		return group(strconv.Itoa(v))
	case int32:
		return group(strconv.FormatInt(int64(v), 10))
	case int64:
		return group(strconv.FormatInt(v, 10))
	case uint32:
		return group(strconv.FormatUint(uint64(v), 10))
	case uint64:
		return group(strconv.FormatUint(v, 10))
	case float64:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return fmt.Sprint(n)
}

// group puts thousands separators into a decimal string of digits.
func group(s string) string {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func humanBytes(n uint64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func ts(t *timestamppb.Timestamp) string {
	if t == nil || (t.GetSeconds() == 0 && t.GetNanos() == 0) {
		return "—"
	}
	return t.AsTime().In(shanghai).Format("2006-01-02 15:04:05")
}

func tsShort(t *timestamppb.Timestamp) string {
	if t == nil || (t.GetSeconds() == 0 && t.GetNanos() == 0) {
		return "—"
	}
	return t.AsTime().In(shanghai).Format("2006-01-02")
}

func ago(t *timestamppb.Timestamp) string {
	if t == nil || t.GetSeconds() == 0 {
		return "never"
	}
	d := time.Since(t.AsTime())
	switch {
	case d < 0:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return fmt.Sprintf("%dd ago", int(d.Hours()/24))
}

func dur(d *durationpb.Duration) string {
	if d == nil {
		return "0s"
	}
	v := d.AsDuration()
	switch {
	case v < time.Second:
		return fmt.Sprintf("%dms", v.Milliseconds())
	case v < time.Minute:
		return fmt.Sprintf("%.1fs", v.Seconds())
	}
	return v.Round(time.Second).String()
}

// enum turns PROJECTION_STATE_CATCHING_UP into "catching up".
func enum(v fmt.Stringer) string {
	s := v.String()
	for _, p := range []string{"PROJECTION_STATE_", "PAYOUT_STATUS_", "RECONCILIATION_RESULT_", "BREAK_DECISION_",
		"BRAND_KIND_", "BRAND_STAGE_", "ENROLMENT_STATUS_", "WITHHELD_REASON_", "PROGRAM_STATUS_", "ORDER_STATUS_"} {
		if strings.HasPrefix(s, p) {
			s = strings.TrimPrefix(s, p)
			break
		}
	}
	return strings.ToLower(strings.ReplaceAll(s, "_", " "))
}

func pct(done, total any) string {
	d, t := toF(done), toF(total)
	if t <= 0 {
		return "0"
	}
	v := math.Min(100, 100*d/t)
	if v > 0 && v < 1 {
		return "<1"
	}
	return strconv.FormatFloat(v, 'f', 0, 64)
}

func toF(v any) float64 {
	switch x := v.(type) {
	case int:
		return float64(x)
	case int64:
		return float64(x)
	case uint64:
		return float64(x)
	case float64:
		return x
	}
	return 0
}

func prettyJSON(s string) string {
	var b bytes.Buffer
	if json.Indent(&b, []byte(s), "", "  ") != nil {
		return s
	}
	return b.String()
}

// chartJSON serialises a chart's configuration for console.js, which reads
// it from a data-chart attribute (no inline script: the CSP forbids it).
func chartJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return "{}"
	}
	return string(b)
}
