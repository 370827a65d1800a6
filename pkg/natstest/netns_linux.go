package natstest

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// probe checks the network carries TCP where the nodes need it: from the
// root namespace to node 0's client address, and from node 0 to node 1
// over the cluster bridge. Traffic a bridge forwards can be filtered (by
// br_netfilter and a firewall's FORWARD policy), so links that are up
// prove nothing.
func (n *Network) probe() error {
	if err := dialListener(n, "", 0, n.ClientHost(0)); err != nil {
		return fmt.Errorf("the test's namespace cannot reach node 0's client address: %w", err)
	}
	if n.nodes > 1 {
		if err := dialListener(n, n.Namespace(0), 1, n.ClusterHost(1)); err != nil {
			return fmt.Errorf("node 0 cannot reach node 1 over the cluster network: %w", err)
		}
	}
	return nil
}

// dialListener listens on host in node i's namespace and dials it from
// namespace from ("" is the test's own).
func dialListener(n *Network, from string, i int, host string) error {
	l, err := inNamespace(n.Namespace(i), func() (net.Listener, error) {
		return net.Listen("tcp", net.JoinHostPort(host, "0"))
	})
	if err != nil {
		return err
	}
	defer l.Close()
	dial := func() (net.Conn, error) { return net.DialTimeout("tcp", l.Addr().String(), 3*time.Second) }
	var c net.Conn
	if from == "" {
		c, err = dial()
	} else {
		c, err = inNamespace(from, dial)
	}
	if err != nil {
		return err
	}
	return c.Close()
}

// inNamespace runs fn on a thread of its own that has entered network
// namespace ns; sockets fn makes stay in ns. The thread is not given back
// to the runtime (it ends with its goroutine), so no other goroutine runs
// in ns.
func inNamespace[T any](ns string, fn func() (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	c := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with this goroutine
		var r result
		f, err := os.Open(filepath.Join("/run/netns", ns))
		if err != nil {
			r.err = err
			c <- r
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			r.err = fmt.Errorf("enter network namespace %s: %w", ns, err)
			c <- r
			return
		}
		r.v, r.err = fn()
		c <- r
	}()
	r := <-c
	return r.v, r.err
}
