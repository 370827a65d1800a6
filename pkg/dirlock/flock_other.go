//go:build !(darwin || dragonfly || freebsd || linux || netbsd || openbsd)

package dirlock

import (
	"errors"
	"os"
)

var errWouldBlock = errors.New("would block")

// flock does not lock where the platform has no flock(2): the pid file is
// still written, but a second process is not refused.
func flock(*os.File) error { return nil }

func funlock(*os.File) error { return nil }
