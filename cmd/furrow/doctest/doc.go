// Package doctest runs the shell blocks of README.md and docs/*.md (TBD).
package doctest
