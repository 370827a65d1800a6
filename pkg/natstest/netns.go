package natstest

import (
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
)

// Network puts the nodes of a cluster on a private network, so that a test
// can partition one node off for real: every node runs in a network
// namespace of its own, joined to the test's (root) namespace by two veth
// pairs. One pair sits on a client bridge that the root namespace has an
// address on (10.77.S.254), so test clients and services reach node i at
// ClientHost(i) (10.77.S.i+1); the other sits on a cluster bridge that only
// the nodes are on (10.78.S.0/24) and carries nothing but the routes
// between them. S is a slot that keeps concurrent test processes on one
// machine apart.
//
// Cut takes a node's cluster link down: its process keeps running, its
// clients stay connected, but its peers and it see silence — a live
// minority node, as a network partition leaves it. Unplug takes both of its
// links down. Heal brings them up again.
//
// Creating one needs CAP_NET_ADMIN and the ip command (iproute2);
// NewNetwork says why when it cannot. The namespaces, links and bridges are
// deleted when the test ends, whatever its outcome, and leftovers of test
// processes that died before they could delete theirs are deleted when the
// next Network is created.
type Network struct {
	slot  int
	nodes int
	lock  net.Listener // held while the slot is in use
}

// Ports every node listens on in its own namespace.
const (
	NetworkClientPort  = 4222
	NetworkClusterPort = 6222
	NetworkMonitorPort = 8222
)

// networkSlots bounds how many Networks can exist at once on a machine.
const networkSlots = 64

// NewNetwork creates a Network for nodes nodes (at most 9). It returns an
// error, and changes nothing, when network namespaces cannot be made here
// (not privileged, no ip command); the caller may fall back to something
// else and should say so.
func NewNetwork(t testing.TB, nodes int) (*Network, error) {
	t.Helper()
	if nodes < 1 || nodes > 9 {
		return nil, fmt.Errorf("a network holds 1 to 9 nodes, not %d", nodes)
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return nil, fmt.Errorf("no ip command (iproute2): %w", err)
	}
	sweepNetworks()
	n := &Network{nodes: nodes, slot: -1}
	for s := range networkSlots {
		if l, ok := lockSlot(s); ok {
			n.slot, n.lock = s, l
			break
		}
	}
	if n.slot < 0 {
		return nil, errors.New("every network slot is in use")
	}
	deleteSlot(n.slot) // leftovers of a process that held the slot and died
	err := n.create()
	if err == nil {
		err = n.probe()
	}
	if err != nil {
		deleteSlot(n.slot)
		n.lock.Close()
		return nil, err
	}
	t.Cleanup(func() {
		deleteSlot(n.slot)
		n.lock.Close()
	})
	return n, nil
}

// lockSlot claims slot s for this process: an abstract unix socket, which
// the kernel releases when the process dies, however it dies.
func lockSlot(s int) (net.Listener, bool) {
	l, err := net.Listen("unix", fmt.Sprintf("@furrow-natstest-network-%d", s))
	return l, err == nil
}

// sweepNetworks deletes the namespaces, links and bridges of slots no live
// process holds.
func sweepNetworks() {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	seen := map[int]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		var s, i int
		if _, err := fmt.Sscanf(line, "furrow-s%d-n%d", &s, &i); err == nil && s >= 0 && s < networkSlots {
			seen[s] = true
		}
	}
	for s := range seen {
		if l, ok := lockSlot(s); ok {
			deleteSlot(s)
			l.Close()
		}
	}
}

func namespace(slot, i int) string { return fmt.Sprintf("furrow-s%d-n%d", slot, i) }

// Names of the root-namespace ends of the links (at most 15 bytes).
func clientLink(slot, i int) string  { return fmt.Sprintf("fw%dc%d", slot, i) }
func clusterLink(slot, i int) string { return fmt.Sprintf("fw%dr%d", slot, i) }
func clientBridge(slot int) string   { return fmt.Sprintf("fw%dcb", slot) }
func clusterBridge(slot int) string  { return fmt.Sprintf("fw%drb", slot) }

// deleteSlot deletes whatever exists of slot's network, ignoring what does
// not.
func deleteSlot(slot int) {
	for i := range 9 {
		_ = exec.Command("ip", "link", "del", clientLink(slot, i)).Run()
		_ = exec.Command("ip", "link", "del", clusterLink(slot, i)).Run()
		_ = exec.Command("ip", "netns", "del", namespace(slot, i)).Run()
	}
	_ = exec.Command("ip", "link", "del", clientBridge(slot)).Run()
	_ = exec.Command("ip", "link", "del", clusterBridge(slot)).Run()
}

// create makes the bridges, the namespaces and their links.
func (n *Network) create() error {
	s := n.slot
	steps := [][]string{
		{"link", "add", clientBridge(s), "type", "bridge"},
		{"addr", "add", fmt.Sprintf("10.77.%d.254/24", s), "dev", clientBridge(s)},
		{"link", "set", clientBridge(s), "up"},
		{"link", "add", clusterBridge(s), "type", "bridge"},
		{"link", "set", clusterBridge(s), "up"},
	}
	for i := range n.nodes {
		ns := namespace(s, i)
		steps = append(steps,
			[]string{"netns", "add", ns},
			[]string{"-n", ns, "link", "set", "lo", "up"},
			[]string{"link", "add", clientLink(s, i), "type", "veth", "peer", "name", "client", "netns", ns},
			[]string{"link", "set", clientLink(s, i), "master", clientBridge(s), "up"},
			[]string{"-n", ns, "addr", "add", n.ClientHost(i) + "/24", "dev", "client"},
			[]string{"-n", ns, "link", "set", "client", "up"},
			[]string{"link", "add", clusterLink(s, i), "type", "veth", "peer", "name", "cluster", "netns", ns},
			[]string{"link", "set", clusterLink(s, i), "master", clusterBridge(s), "up"},
			[]string{"-n", ns, "addr", "add", n.ClusterHost(i) + "/24", "dev", "cluster"},
			[]string{"-n", ns, "link", "set", "cluster", "up"},
		)
	}
	for _, args := range steps {
		if err := ip(args...); err != nil {
			return err
		}
	}
	return nil
}

func ip(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// ClientHost is node i's address on the client network, reachable from
// the test's namespace.
func (n *Network) ClientHost(i int) string { return fmt.Sprintf("10.77.%d.%d", n.slot, i+1) }

// ClusterHost is node i's address on the cluster network, reachable from
// the other nodes only.
func (n *Network) ClusterHost(i int) string { return fmt.Sprintf("10.78.%d.%d", n.slot, i+1) }

// Namespace is the name of node i's network namespace.
func (n *Network) Namespace(i int) string { return namespace(n.slot, i) }

// Command runs name with args in node i's namespace (ip netns exec, which
// execs name: the process is name's own, signals reach it directly).
func (n *Network) Command(i int, name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", n.Namespace(i), name}, args...)...)
}

// Cut takes node i's cluster link down: it and its peers no longer hear
// from each other, while its clients still reach it.
func (n *Network) Cut(i int) error {
	return ip("link", "set", clusterLink(n.slot, i), "down")
}

// Unplug takes both of node i's links down: neither its peers nor its
// clients hear from it.
func (n *Network) Unplug(i int) error {
	if err := n.Cut(i); err != nil {
		return err
	}
	return ip("link", "set", clientLink(n.slot, i), "down")
}

// Heal brings node i's links up again.
func (n *Network) Heal(i int) error {
	if err := ip("link", "set", clusterLink(n.slot, i), "up"); err != nil {
		return err
	}
	return ip("link", "set", clientLink(n.slot, i), "up")
}
