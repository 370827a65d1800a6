//go:build !linux

package natstest

import "errors"

// probe fails: network namespaces are Linux's.
func (n *Network) probe() error { return errors.New("network namespaces need Linux") }
