package console

import (
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	brandv1 "github.com/furrow/furrow/proto/furrow/brand/v1"
	procurementv1 "github.com/furrow/furrow/proto/furrow/procurement/v1"
)

// Chart colours: one palette for every chart.
var palette = []string{"#2f6f4f", "#d98c2b", "#4a78b5", "#b5484a", "#7a5ea8", "#6b8e23"}

// chart is a Chart.js configuration, serialised into a data-chart
// attribute.
type chart map[string]any

func barChart(labels []string, horizontal, stacked bool, yTitle string, sets ...dataset) chart {
	ds := make([]map[string]any, len(sets))
	for i, s := range sets {
		ds[i] = map[string]any{"label": s.Label, "data": s.Data, "backgroundColor": palette[i%len(palette)], "borderColor": palette[i%len(palette)]}
		if s.Type != "" {
			ds[i]["type"] = s.Type
			ds[i]["backgroundColor"] = "transparent"
			ds[i]["tension"] = 0.2
		}
		if s.Axis != "" {
			ds[i]["yAxisID"] = s.Axis
		}
	}
	opts := map[string]any{
		"responsive": true, "maintainAspectRatio": false, "animation": false,
		"plugins": map[string]any{"legend": map[string]any{"position": "bottom"}},
		"scales": map[string]any{
			"x": map[string]any{"stacked": stacked},
			"y": map[string]any{"stacked": stacked, "beginAtZero": true, "title": map[string]any{"display": yTitle != "", "text": yTitle}},
		},
	}
	if horizontal {
		opts["indexAxis"] = "y"
	}
	return chart{"type": "bar", "data": map[string]any{"labels": labels, "datasets": ds}, "options": opts}
}

type dataset struct {
	Label string
	Data  []float64
	Type  string
	Axis  string
}

type brandsData struct{ Brands []*brandv1.Brand }

func (c *Console) brands(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := rpcCtx(r)
	defer cancel()
	res, err := c.c.brand.ListBrands(ctx, &brandv1.ListBrandsRequest{PageSize: 1000})
	c.render(w, r, "brands", "Brands", "brands", brandsData{res.GetBrands()}, err)
}

type brandData struct {
	Brand     *brandv1.Brand
	Dashboard *brandv1.GetBrandDashboardResponse
	Chart     chart
	Channels  []channelRules
	Rules     []ruleRef
	// Preview, when asked for.
	Preview *previewData
}

type ruleRef struct {
	Channel, RuleID string
	Rate            int64
}

// channelRules is one channel's rules laid on a timeline from Start to
// End: each segment's Left and Width are percentages of it.
type channelRules struct {
	Channel    *brandv1.Channel
	Rules      []*brandv1.PremiumRule
	Segments   []segment
	Start, End string
}

type segment struct {
	Rule, From, To, Reason string
	Rate                   int64
	Version                int32
	Left, Width            float64
}

type previewData struct {
	Rule       ruleRef
	FenPerKg   int64
	From       string
	Res        *brandv1.PreviewRevisionResponse
	RequestID  string
	Query      string
	Err        string
	RuleString string
}

func (c *Console) loadBrand(r *http.Request) (brandData, []error) {
	ctx, cancel := rpcCtx(r)
	defer cancel()
	id := r.PathValue("id")
	var d brandData
	var errs []error
	b, err := c.c.brand.GetBrand(ctx, &brandv1.GetBrandRequest{BrandId: id})
	errs = append(errs, err)
	d.Brand = b.GetBrand()
	d.Dashboard, err = c.c.brand.GetBrandDashboard(ctx, &brandv1.GetBrandDashboardRequest{BrandId: id})
	errs = append(errs, err)
	var labels []string
	var perKg, premium []float64
	for _, m := range d.Dashboard.GetMonths() {
		labels = append(labels, m.GetMonth())
		perKg = append(perKg, float64(m.GetEffectiveFenPerKg())/100)
		premium = append(premium, float64(m.GetPremiumFen())/100)
	}
	d.Chart = barChart(labels, false, false, "yuan",
		dataset{Label: "premium per kg sold (yuan/kg)", Data: perKg},
		dataset{Label: "premium earned (yuan)", Data: premium, Type: "line", Axis: "y1"})
	d.Chart["options"].(map[string]any)["scales"].(map[string]any)["y"].(map[string]any)["title"] = map[string]any{"display": true, "text": "yuan per kg"}
	d.Chart["options"].(map[string]any)["scales"].(map[string]any)["y1"] = map[string]any{"position": "right", "beginAtZero": true,
		"grid": map[string]any{"drawOnChartArea": false}, "title": map[string]any{"display": true, "text": "yuan earned"}}

	chs, err := c.c.brand.ListChannels(ctx, &brandv1.ListChannelsRequest{})
	errs = append(errs, err)
	for _, ch := range chs.GetChannels() {
		rules, err := c.c.brand.ListPremiumRules(ctx, &brandv1.ListPremiumRulesRequest{BrandId: id, Channel: ch.GetChannelId()})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if len(rules.GetRules()) == 0 {
			continue
		}
		cr := channelRules{Channel: ch, Rules: rules.GetRules()}
		cr.lay()
		d.Channels = append(d.Channels, cr)
		for _, ru := range rules.GetRules() {
			rate := int64(0)
			if s := ru.GetSchedule(); len(s) > 0 {
				rate = s[len(s)-1].GetFenPerKg()
			}
			d.Rules = append(d.Rules, ruleRef{Channel: ch.GetChannelId(), RuleID: ru.GetRuleId(), Rate: rate})
		}
	}
	return d, errs
}

// lay places the rules' rate segments on one timeline.
func (cr *channelRules) lay() {
	const day = "2006-01-02"
	var start, end time.Time
	type seg struct {
		segment
		from, to time.Time
	}
	var segs []seg
	for _, ru := range cr.Rules {
		ruleEnd, _ := time.Parse(day, ru.GetEffectiveTo())
		open := ruleEnd.IsZero()
		for i, s := range ru.GetSchedule() {
			from, err := time.Parse(day, s.GetFrom())
			if err != nil {
				continue
			}
			to := ruleEnd.AddDate(0, 0, 1)
			toText := ru.GetEffectiveTo()
			if i+1 < len(ru.GetSchedule()) {
				to, _ = time.Parse(day, ru.GetSchedule()[i+1].GetFrom())
				toText = to.AddDate(0, 0, -1).Format(day)
			} else if open {
				to = from.AddDate(1, 0, 0)
				toText = "open-ended"
			}
			segs = append(segs, seg{segment{Rule: ru.GetRuleId(), From: s.GetFrom(), To: toText, Rate: s.GetFenPerKg(),
				Version: s.GetRuleVersion(), Reason: s.GetReason()}, from, to})
			if start.IsZero() || from.Before(start) {
				start = from
			}
			if to.After(end) {
				end = to
			}
		}
	}
	total := end.Sub(start).Hours()
	if total <= 0 {
		return
	}
	cr.Start, cr.End = start.Format(day), end.AddDate(0, 0, -1).Format(day)
	for _, s := range segs {
		s.Left = 100 * s.from.Sub(start).Hours() / total
		s.Width = 100 * s.to.Sub(s.from).Hours() / total
		cr.Segments = append(cr.Segments, s.segment)
	}
}

func (c *Console) brand(w http.ResponseWriter, r *http.Request) {
	d, errs := c.loadBrand(r)
	c.render(w, r, "brand", "Brand "+r.PathValue("id"), "brands", d, errs...)
}

// previewRevision shows what ReviseRule would change, per farmer, with the
// form that applies it.
func (c *Console) previewRevision(w http.ResponseWriter, r *http.Request) {
	d, errs := c.loadBrand(r)
	q := r.URL.Query()
	ch, rule, _ := strings.Cut(q.Get("rule"), "/")
	p := &previewData{Rule: ruleRef{Channel: ch, RuleID: rule}, From: q.Get("revised_from"), RuleString: q.Get("rule")}
	var err error
	if p.FenPerKg, err = strconv.ParseInt(q.Get("fen_per_kg"), 10, 64); err != nil {
		p.Err = "fen_per_kg: give the new rate in fen per kilogram (a whole number)"
	} else {
		ctx, cancel := rpcCtx(r)
		defer cancel()
		p.Res, err = c.c.brand.PreviewRevision(ctx, &brandv1.PreviewRevisionRequest{BrandId: r.PathValue("id"), Channel: ch, RuleId: rule,
			FenPerKg: p.FenPerKg, RevisedFrom: p.From})
		if err != nil {
			p.Err = errText(err)
		}
	}
	b := make([]byte, 9)
	_, _ = rand.Read(b)
	p.RequestID = "console:revise:" + base64.RawURLEncoding.EncodeToString(b)
	d.Preview = p
	c.render(w, r, "brand", "Brand "+r.PathValue("id"), "brands", d, errs...)
}

func (c *Console) reviseRule(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := rpcCtx(r)
	defer cancel()
	id := r.PathValue("id")
	ch, rule, _ := strings.Cut(r.FormValue("rule"), "/")
	rate, _ := strconv.ParseInt(r.FormValue("fen_per_kg"), 10, 64)
	res, err := c.c.brand.ReviseRule(c.actorCtx(ctx), &brandv1.ReviseRuleRequest{RequestId: r.FormValue("request_id"), BrandId: id,
		Channel: ch, RuleId: rule, FenPerKg: rate, RevisedFrom: r.FormValue("revised_from"), Reason: r.FormValue("reason")})
	back := "/brands/" + url.PathEscape(id)
	if err != nil {
		redirect(w, r, back, errText(err))
		return
	}
	flash := "Rule " + rule + " revised to version " + strconv.Itoa(int(res.GetRuleVersion())) + ": " +
		strconv.Itoa(int(res.GetAdjustedSales())) + " sales re-rated, " + yuan(res.GetDeltaFen()) + " yuan"
	if !res.GetChanged() {
		flash = "The rate already was " + strconv.FormatInt(rate, 10) + " fen/kg: nothing changed"
	}
	redirect(w, r, back, flash)
}

type procurementData struct {
	Programs []string
	Program  string
	Progress *procurementv1.GetProgramProgressResponse
	Burn     chart
	County   chart
	Product  chart
	Counties []*procurementv1.CountyTotals
	// DeliveredPct and ReservedPct of the budget.
	DeliveredPct, ReservedPct string
}

func (c *Console) procurement(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := rpcCtx(r)
	defer cancel()
	var d procurementData
	var errs []error
	// The API lists orders, not programmes: the programmes are those
	// orders were placed under, or the one asked for.
	seen := map[string]bool{}
	token := ""
	for range 20 {
		res, err := c.c.proc.ListOrders(ctx, &procurementv1.ListOrdersRequest{PageSize: 500, PageToken: token})
		if err != nil {
			errs = append(errs, err)
			break
		}
		for _, o := range res.GetOrders() {
			if !seen[o.GetProgramId()] {
				seen[o.GetProgramId()] = true
				d.Programs = append(d.Programs, o.GetProgramId())
			}
		}
		if token = res.GetNextPageToken(); token == "" {
			break
		}
	}
	slices.Sort(d.Programs)
	d.Program = r.URL.Query().Get("program")
	if d.Program == "" && len(d.Programs) > 0 {
		d.Program = d.Programs[0]
	}
	if d.Program != "" {
		p, err := c.c.proc.GetProgramProgress(ctx, &procurementv1.GetProgramProgressRequest{ProgramId: d.Program})
		errs = append(errs, err)
		d.Progress = p
		if p != nil {
			delivered := p.GetTotal().GetDeliveredFen()
			reserved := max(p.GetReservedFen()-delivered, 0)
			available := max(p.GetBudgetFen()-p.GetReservedFen(), 0)
			d.DeliveredPct = pct(delivered, p.GetBudgetFen())
			d.ReservedPct = pct(p.GetReservedFen(), p.GetBudgetFen())
			d.Burn = barChart([]string{"budget"}, true, true, "",
				dataset{Label: "delivered (yuan)", Data: []float64{float64(delivered) / 100}},
				dataset{Label: "reserved, not yet delivered (yuan)", Data: []float64{float64(reserved) / 100}},
				dataset{Label: "available (yuan)", Data: []float64{float64(available) / 100}})
			d.County = progressChart(p.GetByCounty())
			d.Product = progressChart(p.GetByProduct())
		}
	}
	ct, err := c.c.proc.ListCountyTotals(ctx, &procurementv1.ListCountyTotalsRequest{})
	errs = append(errs, err)
	d.Counties = ct.GetCounties()
	c.render(w, r, "procurement", "Procurement", "procurement", d, errs...)
}

func progressChart(rows []*procurementv1.Progress) chart {
	var labels []string
	var ordered, delivered, rejected []float64
	for _, p := range rows {
		labels = append(labels, p.GetKey())
		ordered = append(ordered, float64(p.GetOrderedGrams())/1000)
		delivered = append(delivered, float64(p.GetDeliveredGrams())/1000)
		rejected = append(rejected, float64(p.GetRejectedGrams())/1000)
	}
	return barChart(labels, false, false, "kg",
		dataset{Label: "ordered (kg)", Data: ordered},
		dataset{Label: "delivered (kg)", Data: delivered},
		dataset{Label: "rejected (kg)", Data: rejected})
}
