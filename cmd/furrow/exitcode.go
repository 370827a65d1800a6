package main

import (
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The exit codes a script can tell apart (listed in `furrow -h`).
const (
	exitFailed      = 1 // any other failure
	exitUsage       = 2 // a bad command line
	exitUnreachable = 3 // the server did not answer
	exitNotFound    = 4 // what the command names does not exist
	exitProblem     = 5 // a check ran and found a problem
)

const exitCodesHelp = `Exit codes:
  0  success
  1  failed: any other error
  2  usage: an unknown command or flag, wrong or missing arguments
  3  unreachable: the server did not answer (down, wrong --addr, timed out)
  4  not found: what the command names does not exist
  5  problem found: a check ran and failed (unbalanced trial balance,
     unhealthy projection, open reconciliation breaks)
`

// usageError is a bad command line: exit code 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// asUsage marks err (when not nil) as a bad command line.
func asUsage(err error) error {
	if err == nil {
		return nil
	}
	return usageError{err}
}

// usagef is a bad command line described by a format.
func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// callError is a failed call, reworded for an operator, that keeps the
// call's status code for the exit code.
type callError struct {
	code codes.Code
	err  error
}

func (e callError) Error() string { return e.err.Error() }
func (e callError) Unwrap() error { return e.err }

// codeNotFound is the status code of a local look-up that found nothing
// (a context), so it exits as a remote one would.
const codeNotFound = codes.NotFound

// problemError is a check that ran and found a problem: exit code 5.
type problemError struct{ err error }

func (e problemError) Error() string { return e.err.Error() }
func (e problemError) Unwrap() error { return e.err }

// problemf is a problem a check found, described by a format.
func problemf(format string, args ...any) error { return problemError{fmt.Errorf(format, args...)} }

// exitCode is the process's exit code for the error run returned.
func exitCode(err error) int {
	var (
		ue usageError
		ce callError
		pe problemError
	)
	code := codes.Unknown
	if errors.As(err, &ce) {
		code = ce.code
	} else if st, ok := status.FromError(err); ok {
		code = st.Code()
	}
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ue):
		return exitUsage
	case errors.As(err, &pe), errors.Is(err, errUnhealthy):
		return exitProblem
	case errors.Is(err, nats.ErrNoServers), errors.Is(err, nats.ErrTimeout), errors.Is(err, nats.ErrNoResponders):
		return exitUnreachable
	}
	switch code {
	case codes.Unavailable, codes.DeadlineExceeded:
		return exitUnreachable
	case codes.NotFound:
		return exitNotFound
	}
	return exitFailed
}
