package stack_test

import (
	"net/http"
	"testing"
)

// TestHTTPTraceLot: the lot's trace over the HTTP/JSON API, as a backend
// that cannot speak gRPC reads it.
func TestHTTPTraceLot(t *testing.T) {
	t.Parallel()
	_, base := startHTTPStack(t)
	if code, out := call(t, "POST", base+"/v1/farmers", `{"request_id": "reg-F1", "farmer_id": "F1", "name": "Wang Fang", "county": "Xunwu"}`); code != http.StatusOK {
		t.Fatalf("RegisterFarmer: %d %v", code, out)
	}
	code, out := call(t, "POST", base+"/v1/deliveries", `{"request_id": "wh-7/001", "farmer_id": "F1", "product": "xunwu-navel-orange",
		"net_grams": 12345, "price_fen_per_kg": 680, "grade": "A", "distribution_centre": "xunwu-dc-1"}`)
	if code != http.StatusOK {
		t.Fatalf("RecordDelivery: %d %v", code, out)
	}
	id := out["delivery_id"].(string)
	code, trace := call(t, "GET", base+"/v1/deliveries/"+id+"/trace", "")
	if code != http.StatusOK {
		t.Fatalf("TraceLot: %d %v", code, trace)
	}
	totals := trace["totals"].(map[string]any)
	if totals["delivered_grams"] != "12345" || totals["payable_fen"] != "8395" || totals["unpaid_fen"] != "8395" {
		t.Fatalf("TraceLot totals: %v", totals)
	}
	if code, out := call(t, "GET", base+"/v1/deliveries/nope/trace", ""); code != http.StatusNotFound {
		t.Errorf("TraceLot(nope): %d %v, want 404", code, out)
	}
	if code, out := call(t, "GET", base+"/v1/distribution-centres/intake?county=Xunwu", ""); code != http.StatusOK ||
		len(out["centres"].([]any)) != 1 {
		t.Errorf("ListCentreIntake: %d %v", code, out)
	}
}
