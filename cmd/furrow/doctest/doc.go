// Package doctest runs the shell blocks of README.md and docs/*.md, in
// order, against a fresh `furrow dev`, and fails when what they print is not
// what the documents say they print. Its tests are the documents' tests:
// `make test` runs them, so a document that drifts from the code fails CI.
//
// # The convention (also in docs/ENGINEERING.md, "Docs that run")
//
//   - A ```sh block is run. Shell under any other name (```bash, ```console,
//     ```shell) is refused, so that no shell block is silently left out.
//   - The ```text block right after it (only blank lines between) is its
//     expected output: stdout and stderr as a terminal shows them. A block
//     without one must print nothing.
//   - A block that exits non-zero documents it: the last line of its output
//     is "(exit N)". A failing command ends its block (bash -e).
//   - "…" abbreviates: inside a line it stands for any text on that line; a
//     line that is only "…" stands for any number of lines (none included),
//     so a last line "…" makes a prefix match.
//   - Before anything is compared, the rules of Rules (normalise.go) turn
//     what changes from run to run — clock times, calendar days, durations,
//     rates, sizes, server-chosen consumer names, protojson's per-build
//     spaces, table padding — into placeholders, on both sides. Everything
//     else must match exactly; trailing blanks are ignored.
//   - <!-- doctest: skip (REASON) --> directly before a block leaves it out
//     (the runner reports every skip with its reason). Before the first block,
//     <!-- doctest: dev FLAGS --> starts furrow dev with extra flags, and
//     <!-- doctest: requires TOOL... --> names commands the blocks need
//     besides bash, furrow, grpcurl and nats (missing: the document is
//     skipped, or fails under CI=true).
//
// # How a document runs
//
// Each document gets a scratch directory that looks like a fresh clone after
// `make build cli-tools` (bin/furrow, bin/grpcurl, bin/nats) and a fresh
// `furrow dev` started there on the documented addresses 127.0.0.1:7070 and
// 127.0.0.1:4222 (data in .furrow); the documents run one after another, and
// a taken port fails the test with the reason. Every block runs with
// `bash -euo pipefail` in that directory; variables, exports and the working
// directory carry from one block to the next. The blocks see no FURROW_*
// variables, a private HOME and no PATH entry that provides furrow, grpcurl
// or nats, so a document must `export PATH=$PWD/bin:$PATH` as a reader would.
// The scratch directory's path prints as /path/to/furrow. Relative links in
// the documents must name files that exist (TestLinks).
//
// # Re-baselining
//
// FURROW_DOCTEST_UPDATE=1 rewrites the ```text block of every block whose
// output no longer matches with what it printed (blocks that match, with their
// abbreviations, are left alone). Review the result with git diff, and put
// back the "…" abbreviations worth keeping.
package doctest
