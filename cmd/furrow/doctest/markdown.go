package doctest

import (
	"fmt"
	"regexp"
	"strings"
)

// Fence info strings the runner knows. Shell blocks must be written as sh so
// that none is silently left out: the other shell names are refused.
const (
	infoShell  = "sh"
	infoOutput = "text"
)

// refusedInfo are fence languages that look like shell but would not run.
var refusedInfo = map[string]bool{"bash": true, "shell": true, "console": true, "zsh": true, "shell-session": true, "terminal": true}

// Document is a parsed Markdown file: its lines and its shell blocks.
type Document struct {
	// Name is the path relative to the repository root, e.g. docs/walkthrough-brand.md.
	Name  string
	Lines []string
	// DevFlags are extra flags for furrow dev (<!-- doctest: dev FLAGS -->).
	DevFlags []string
	// Requires names commands the blocks need beyond bash, furrow, grpcurl
	// and nats (<!-- doctest: requires TOOL... -->).
	Requires []string
	Blocks   []Block
	// Links are the targets of inline Markdown links, with their line.
	Links []Link
}

// Block is one ```sh block and the ```text block after it, if any.
type Block struct {
	// Line is the 1-based line of the opening ```sh fence.
	Line int
	// Script is the block's text, run as it is.
	Script string
	// Skip is the reason given by <!-- doctest: skip (REASON) -->; empty runs the block.
	Skip string
	// Expected is the text block's content; HasExpected is false when the
	// block has no text block after it (its output is not compared).
	Expected    string
	HasExpected bool
	// ExpectedStart and ExpectedEnd are the 0-based line range of the text
	// block's content in Document.Lines (End exclusive), for rewriting.
	ExpectedStart, ExpectedEnd int
}

// Link is a Markdown link target.
type Link struct {
	Line   int
	Target string
}

var (
	directiveRE = regexp.MustCompile(`^<!--\s*doctest:\s*(.*?)\s*-->\s*$`)
	skipRE      = regexp.MustCompile(`^skip\s+\((.+)\)$`)
	linkRE      = regexp.MustCompile(`\]\(([^)\s]+)\)`)
)

type fence struct {
	info       string
	open       int // 0-based line of the opening fence
	start, end int // content lines [start, end)
}

// Parse reads a Markdown document. It fails on what the runner would
// otherwise have to guess: an unclosed fence, a shell block not marked sh,
// an unknown or misplaced directive.
func Parse(name, text string) (*Document, error) {
	d := &Document{Name: name, Lines: strings.Split(strings.TrimSuffix(text, "\n"), "\n")}
	var fences []fence
	// directives by the 0-based line they are on
	directives := map[int]string{}
	for i := 0; i < len(d.Lines); i++ {
		line := d.Lines[i]
		if m := directiveRE.FindStringSubmatch(line); m != nil {
			directives[i] = m[1]
			continue
		}
		if strings.HasPrefix(line, "```") {
			f := fence{info: strings.TrimSpace(strings.TrimPrefix(line, "```")), open: i, start: i + 1}
			j := i + 1
			for ; j < len(d.Lines) && strings.TrimSpace(d.Lines[j]) != "```"; j++ {
			}
			if j == len(d.Lines) {
				return nil, fmt.Errorf("%s:%d: fence is never closed", name, i+1)
			}
			f.end = j
			fences = append(fences, f)
			i = j
			continue
		}
		for _, m := range linkRE.FindAllStringSubmatch(line, -1) {
			d.Links = append(d.Links, Link{Line: i + 1, Target: m[1]})
		}
	}
	// A directive applies to the fence right after it (blank lines between
	// are allowed); "dev" must come before the first shell block.
	nextFence := func(line int) *fence {
		for k := range fences {
			if fences[k].open > line {
				for l := line + 1; l < fences[k].open; l++ {
					if strings.TrimSpace(d.Lines[l]) != "" {
						return nil
					}
				}
				return &fences[k]
			}
		}
		return nil
	}
	skips := map[int]string{} // fence open line → reason
	firstShell := -1
	for _, f := range fences {
		if f.info == infoShell {
			firstShell = f.open
			break
		}
	}
	for line, dir := range directives {
		switch {
		case dir == "dev" || strings.HasPrefix(dir, "dev "):
			if firstShell >= 0 && line > firstShell {
				return nil, fmt.Errorf("%s:%d: doctest: dev must come before the first sh block", name, line+1)
			}
			d.DevFlags = strings.Fields(strings.TrimPrefix(dir, "dev"))
		case strings.HasPrefix(dir, "requires "):
			if firstShell >= 0 && line > firstShell {
				return nil, fmt.Errorf("%s:%d: doctest: requires must come before the first sh block", name, line+1)
			}
			d.Requires = append(d.Requires, strings.Fields(strings.TrimPrefix(dir, "requires"))...)
		case skipRE.MatchString(dir):
			f := nextFence(line)
			if f == nil || f.info != infoShell {
				return nil, fmt.Errorf("%s:%d: doctest: skip must be directly before an sh block", name, line+1)
			}
			skips[f.open] = skipRE.FindStringSubmatch(dir)[1]
		default:
			return nil, fmt.Errorf("%s:%d: unknown doctest directive %q (want: skip (REASON), dev FLAGS, requires TOOL...)", name, line+1, dir)
		}
	}
	for k, f := range fences {
		if refusedInfo[f.info] {
			return nil, fmt.Errorf("%s:%d: a ```%s block is not run: write shell as ```sh (and its output as ```text)", name, f.open+1, f.info)
		}
		if f.info != infoShell {
			if f.end > f.start && strings.HasPrefix(d.Lines[f.start], "$ ") && f.info != infoOutput {
				return nil, fmt.Errorf("%s:%d: this block looks like a shell session but is not run: write the commands as ```sh and their output as ```text after it", name, f.open+1)
			}
			continue
		}
		b := Block{Line: f.open + 1, Script: strings.Join(d.Lines[f.start:f.end], "\n") + "\n", Skip: skips[f.open]}
		if k+1 < len(fences) && fences[k+1].info == infoOutput && blankBetween(d.Lines, f.end+1, fences[k+1].open) {
			o := fences[k+1]
			b.HasExpected, b.ExpectedStart, b.ExpectedEnd = true, o.start, o.end
			b.Expected = strings.Join(d.Lines[o.start:o.end], "\n")
		}
		d.Blocks = append(d.Blocks, b)
	}
	return d, nil
}

func blankBetween(lines []string, from, to int) bool {
	for i := from; i < to; i++ {
		if strings.TrimSpace(lines[i]) != "" {
			return false
		}
	}
	return true
}

// Rewrite returns the document's text with the expected output of the given
// blocks (by index) replaced.
func (d *Document) Rewrite(outputs map[int]string) string {
	var out []string
	next := 0
	for i, b := range d.Blocks {
		got, ok := outputs[i]
		if !ok || !b.HasExpected {
			continue
		}
		out = append(out, d.Lines[next:b.ExpectedStart]...)
		if got != "" {
			out = append(out, strings.Split(got, "\n")...)
		}
		next = b.ExpectedEnd
	}
	out = append(out, d.Lines[next:]...)
	return strings.Join(out, "\n") + "\n"
}
