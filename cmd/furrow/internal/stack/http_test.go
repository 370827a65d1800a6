package stack_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/furrow/furrow/pkg/httpapi"

	"github.com/furrow/furrow/cmd/furrow/internal/stack"
)

// startHTTPStack starts a stack with its HTTP listener on a free loopback
// port and returns it with the listener's base URL.
func startHTTPStack(t testing.TB) (*stack.Stack, string) {
	t.Helper()
	st, err := stack.Start(context.Background(), stack.Config{DataDir: t.TempDir(), GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		st.Shutdown(ctx)
	})
	return st, "http://" + st.HTTPAddr()
}

// call sends body (JSON, as curl -d would) with method to url and returns
// the status and decoded response.
func call(t testing.TB, method, url, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequestWithContext(testCtx(t), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("%s %s: %d, body %q is not JSON: %v", method, url, res.StatusCode, b, err)
	}
	return res.StatusCode, out
}

// TestHTTPRecordDeliveryAndBalance drives the HTTP/JSON API as a backend
// that cannot speak gRPC would: it registers a farmer and records a
// delivery with JSON bodies, reads the balance back (read-your-writes via
// the returned position), and sees a zero weight refused with 400, naming
// the field, appending nothing.
func TestHTTPRecordDeliveryAndBalance(t *testing.T) {
	t.Parallel()
	st, base := startHTTPStack(t)

	code, out := call(t, "POST", base+"/v1/farmers", `{"request_id": "reg-F1", "farmer_id": "F1", "name": "Wang Fang", "county": "Xunwu"}`)
	if code != http.StatusOK {
		t.Fatalf("RegisterFarmer: %d %v", code, out)
	}
	delivery := `{"request_id": "wh-7/001", "farmer_id": "F1", "product": "xunwu-navel-orange", "net_grams": 12345, "price_fen_per_kg": 680, "grade": "A"}`
	code, out = call(t, "POST", base+"/v1/deliveries", delivery)
	if code != http.StatusOK || out["amount_fen"] != "8395" {
		t.Fatalf("RecordDelivery: %d %v, want 200 with amount_fen 8395", code, out)
	}
	pos := out["position"].(map[string]any)
	// A retry is the same delivery (idempotent by request_id, as over gRPC).
	code, again := call(t, "POST", base+"/v1/deliveries", delivery)
	if code != http.StatusOK || again["delivery_id"] != out["delivery_id"] {
		t.Fatalf("retry: %d %v, first %v", code, again, out)
	}
	code, bal := call(t, "GET", base+"/v1/farmers/F1/balance?min_position.stream="+pos["stream"].(string)+"&min_position.sequence="+pos["sequence"].(string), "")
	if code != http.StatusOK || bal["purchases_fen"] != "8395" || bal["available_fen"] != "8395" {
		t.Fatalf("GetFarmerBalance: %d %v, want 8395 fen purchases and available", code, bal)
	}

	before := streamLast(t, st, "PROCUREMENT")
	code, out = call(t, "POST", base+"/v1/deliveries", `{"request_id": "wh-7/002", "farmer_id": "F1", "product": "xunwu-navel-orange", "net_grams": 0, "price_fen_per_kg": 680}`)
	if code != http.StatusBadRequest {
		t.Fatalf("net_grams 0: %d %v, want 400", code, out)
	}
	if out["code"] != float64(3) || !strings.Contains(out["message"].(string), "net_grams") {
		t.Errorf("net_grams 0: body %v, want code 3 (INVALID_ARGUMENT) and a message naming net_grams", out)
	}
	details, _ := out["details"].([]any)
	var fields []string
	for _, d := range details {
		d := d.(map[string]any)
		if d["@type"] != "type.googleapis.com/google.rpc.BadRequest" {
			continue
		}
		for _, v := range d["field_violations"].([]any) {
			fields = append(fields, v.(map[string]any)["field"].(string))
		}
	}
	if !slices.Equal(fields, []string{"net_grams"}) {
		t.Errorf("field violations %v, want [net_grams] (body %v)", fields, out)
	}
	if after := streamLast(t, st, "PROCUREMENT"); after != before {
		t.Errorf("a refused delivery appended: PROCUREMENT last sequence %d → %d", before, after)
	}

	// Unknown programme: 404; a malformed body: 400.
	if code, out := call(t, "GET", base+"/v1/programs/nope", ""); code != http.StatusNotFound {
		t.Errorf("GetProgram(nope): %d %v, want 404", code, out)
	}
	if code, out := call(t, "POST", base+"/v1/deliveries", `{"request_id": "x", "net_gram": 5}`); code != http.StatusBadRequest {
		t.Errorf("misspelt field: %d %v, want 400", code, out)
	}
}

func streamLast(t testing.TB, st *stack.Stack, name string) uint64 {
	t.Helper()
	s, err := st.JetStream().Stream(testCtx(t), name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.LastSeq
}

// TestOpenAPIListsEveryRPC checks that /openapi.json documents every
// method of the four services, and that each documented route answers
// (anything but the transcoder's "no such route" 404 with an empty body).
func TestOpenAPIListsEveryRPC(t *testing.T) {
	t.Parallel()
	_, base := startHTTPStack(t)
	res, err := http.Get(base + "/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var doc struct {
		Paths map[string]map[string]struct {
			OperationID string `json:"operationId"`
		} `json:"paths"`
	}
	if err := json.NewDecoder(res.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	ops := map[string]bool{}
	for _, methods := range doc.Paths {
		for _, op := range methods {
			ops[op.OperationID] = true
		}
	}
	for _, svc := range httpapi.Services {
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(svc))
		if err != nil {
			t.Fatal(err)
		}
		sd := d.(protoreflect.ServiceDescriptor)
		for i := range sd.Methods().Len() {
			id := string(sd.Name()) + "_" + string(sd.Methods().Get(i).Name())
			if !ops[id] {
				t.Errorf("/openapi.json lacks %s", id)
			}
		}
	}
	if len(ops) < 60 {
		t.Errorf("/openapi.json has %d operations, want every RPC (60)", len(ops))
	}
}

// TestHTTPTailEventsStreamsNDJSON: TailEvents, a server stream, is served
// on its REST route as newline-delimited JSON, one event a line.
func TestHTTPTailEventsStreamsNDJSON(t *testing.T) {
	t.Parallel()
	_, base := startHTTPStack(t)
	if code, out := call(t, "POST", base+"/v1/farmers", `{"request_id": "reg-F1", "farmer_id": "F1", "name": "Wang Fang", "county": "Xunwu"}`); code != http.StatusOK {
		t.Fatalf("RegisterFarmer: %d %v", code, out)
	}
	ctx, cancel := context.WithTimeout(testCtx(t), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/v1/admin/streams/LEDGER/events:tail?last=1", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "application/x-ndjson" {
		b, _ := io.ReadAll(res.Body)
		t.Fatalf("tail: %d %s %s", res.StatusCode, res.Header.Get("Content-Type"), b)
	}
	var first struct {
		Event struct {
			Subject string `json:"subject"`
			Type    string `json:"type"`
		} `json:"event"`
	}
	if err := json.NewDecoder(res.Body).Decode(&first); err != nil {
		t.Fatal(err)
	}
	if first.Event.Subject != "ledger.farmer.F1.farmer_registered" || first.Event.Type != "furrow.ledger.events.v1.FarmerRegistered" {
		t.Errorf("first line: %+v", first)
	}
	if code, out := call(t, "GET", base+"/v1/admin/streams/NOPE/events:tail", ""); code != http.StatusNotFound {
		t.Errorf("tail of an unknown stream: %d %v, want 404", code, out)
	}
}

// TestHTTPWatchProjectionStreamsNDJSON: WatchProjection, a server stream
// on a custom-verb route, is served as newline-delimited JSON too; with
// until_caught_up and no rebuild it ends after the first status, and an
// unknown projection is a 404.
func TestHTTPWatchProjectionStreamsNDJSON(t *testing.T) {
	t.Parallel()
	_, base := startHTTPStack(t)
	ctx, cancel := context.WithTimeout(testCtx(t), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/v1/admin/projections/ledger_balances:watch?until_caught_up=true&interval=100ms", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("watch: %d %s %s", res.StatusCode, res.Header.Get("Content-Type"), body)
	}
	lines := strings.Split(strings.TrimSpace(string(body)), "\n")
	var first struct {
		Projection struct {
			Name   string `json:"name"`
			Copies []struct {
				Role string `json:"role"`
			} `json:"copies"`
		} `json:"projection"`
	}
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatal(err)
	}
	if len(lines) != 1 || first.Projection.Name != "ledger_balances" || len(first.Projection.Copies) != 1 || first.Projection.Copies[0].Role != "live" {
		t.Errorf("watch until caught up without a rebuild: %d lines, first %+v\n%s", len(lines), first, body)
	}
	if code, out := call(t, "GET", base+"/v1/admin/projections/nope:watch", ""); code != http.StatusNotFound {
		t.Errorf("watch of an unknown projection: %d %v, want 404", code, out)
	}
	if code, out := call(t, "GET", base+"/v1/admin/projections/ledger_balances:watch?interval=soon", ""); code != http.StatusBadRequest {
		t.Errorf("watch with interval=soon: %d %v, want 400", code, out)
	}
	// The route beside it is still the transcoder's.
	if code, out := call(t, "GET", base+"/v1/admin/projections/ledger_balances", ""); code != http.StatusOK {
		t.Errorf("GetProjection: %d %v", code, out)
	}
}
