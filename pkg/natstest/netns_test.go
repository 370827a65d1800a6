package natstest

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// network makes a Network or skips t, saying why.
func network(t *testing.T, nodes int) *Network {
	t.Helper()
	n, err := NewNetwork(t, nodes)
	if err != nil {
		t.Skipf("no network namespaces here: %v", err)
	}
	return n
}

func netnsList(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatalf("ip netns list: %v", err)
	}
	return string(out)
}

// listed reports whether ip netns list's output names ns.
func listed(list, ns string) bool {
	for _, line := range strings.Split(list, "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == ns {
			return true
		}
	}
	return false
}

// TestNetworkPartition cuts one node of a three-node cluster off its peers:
// the two others keep accepting writes to an R3 stream, the cut-off node —
// still running, its client still connected — cannot get one acknowledged,
// and after Heal it can again.
func TestNetworkPartition(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a nats-server cluster")
	}
	netw := network(t, 3)
	s := ClusterWith(t, Options{Network: netw})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	js := s.JetStream(t)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "P", Subjects: []string{"p.>"}, Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	const victim = 2
	direct := func(i int) jetstream.JetStream {
		nc, err := nats.Connect(s.URLs[i], nats.MaxReconnects(-1))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		return js
	}
	minority, majority := direct(victim), direct(0)
	publish := func(js jetstream.JetStream) error {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err := js.Publish(pctx, "p.x", []byte("x"))
		return err
	}
	eventually := func(what string, js jetstream.JetStream) time.Duration {
		t.Helper()
		began := time.Now()
		for {
			err := publish(js)
			if err == nil {
				return time.Since(began)
			}
			if time.Since(began) > time.Minute {
				t.Fatalf("%s: no publish acknowledged in a minute: %v", what, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	eventually("before the cut, via n2", minority)

	if err := netw.Cut(victim); err != nil {
		t.Fatal(err)
	}
	t.Logf("majority (n0, n1) acknowledges a publish %v after the cut", eventually("majority after the cut", majority).Round(time.Millisecond))
	for range 3 {
		if err := publish(minority); err == nil {
			t.Fatal("a publish via the cut-off node n2 was acknowledged: the cut does not partition it")
		} else if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, jetstream.ErrNoStreamResponse) {
			t.Logf("publish via the cut-off node: %v", err)
		}
	}

	if err := netw.Heal(victim); err != nil {
		t.Fatal(err)
	}
	t.Logf("n2 acknowledges a publish again %v after the heal", eventually("via n2 after the heal", minority).Round(time.Millisecond))
}

// TestNetworkCleanup checks a Network is gone when its test ends, and that
// leftovers of a dead test process (a namespace of a slot nobody holds)
// are deleted by the next NewNetwork.
func TestNetworkCleanup(t *testing.T) {
	leftover := namespace(networkSlots-1, 0)
	if l, ok := lockSlot(networkSlots - 1); ok {
		l.Close()
		if err := ip("netns", "add", leftover); err != nil {
			t.Skipf("no network namespaces here: %v", err)
		}
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", leftover).Run() })
	} else {
		leftover = ""
	}
	var made string
	var madeSlot int
	t.Run("network", func(t *testing.T) {
		n := network(t, 2)
		made, madeSlot = n.Namespace(1), n.slot
		if !listed(netnsList(t), made) {
			t.Fatalf("namespace %s not listed:\n%s", made, netnsList(t))
		}
		if err := ip("link", "show", clientBridge(n.slot)); err != nil {
			t.Fatal(err)
		}
	})
	list := netnsList(t)
	if made != "" && listed(list, made) {
		t.Errorf("namespace %s outlived its test:\n%s", made, list)
	}
	if made != "" && ip("link", "show", clientBridge(madeSlot)) == nil {
		t.Errorf("bridge %s outlived its test", clientBridge(madeSlot))
	}
	if leftover != "" && listed(list, leftover) {
		t.Errorf("leftover namespace %s of a slot nobody holds was not deleted:\n%s", leftover, list)
	}
}
