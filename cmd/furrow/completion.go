package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
)

// commandTree lists every command and its subcommands, for shell
// completion (TestCompletionTree checks it against the dispatchers).
func commandTree() map[string][]string {
	names := func(cmds []opCommand) []string {
		var out []string
		for _, c := range cmds {
			out = append(out, c.name)
		}
		return out
	}
	return map[string][]string{
		"dev": nil, "certs": nil, "console": nil, "version": nil, "help": nil,
		"ledger":      {"trial-balance", "statement"},
		"reconcile":   {"resolve"},
		"trace":       {"lot", "farmer"},
		"admin":       {"streams", "backup", "restore"},
		"streams":     names(streamsCommands),
		"events":      names(eventsCommands),
		"projections": names(projectionsCommands),
		"dlq":         names(dlqCommands),
		"context":     {"add", "use", "ls", "show", "rm"},
		"completion":  {"bash", "zsh"},
	}
}

const completionUsage = `Usage: furrow completion bash|zsh

Prints a script that completes furrow's commands, subcommands, flags and
context names. Load it in the current shell, or from your shell's start-up
file:

  source <(furrow completion bash)     # bash (in ~/.bashrc)
  source <(furrow completion zsh)      # zsh (in ~/.zshrc)
`

// bashCompletion completes words from commandTree, flags from the
// command's own -h (so they never drift) and context names from
// furrow context ls.
const bashCompletion = `# furrow shell completion (furrow completion bash)
_furrow() {
  local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
  local top=%q
  COMPREPLY=()
  if [[ $prev == --context || $prev == -context ]]; then
    COMPREPLY=($(compgen -W "$(furrow context ls -o json 2>/dev/null | sed -n 's/.*"name": "\(.*\)".*/\1/p')" -- "$cur"))
    return
  fi
  if [[ $COMP_CWORD -eq 1 ]]; then
    COMPREPLY=($(compgen -W "$top" -- "$cur"))
    return
  fi
  local sub=""
  case ${COMP_WORDS[1]} in
%s  esac
  if [[ $cur == -* ]]; then
    local cmd=(${COMP_WORDS[1]})
    if [[ -n $sub && $COMP_CWORD -gt 2 ]]; then cmd+=(${COMP_WORDS[2]}); fi
    [[ ${cmd[0]} == admin && ${COMP_WORDS[2]} == streams ]] && cmd+=(apply)
    COMPREPLY=($(compgen -W "$(furrow "${cmd[@]}" -h 2>&1 | sed -n -e 's/^  \(-[a-z]\)\( .*\)\{0,1\}$/\1/p' -e 's/^  \(-[a-z][a-z0-9-]\{1,\}\).*/-\1/p')" -- "$cur"))
    return
  fi
  if [[ -n $sub && $COMP_CWORD -eq 2 ]]; then
    COMPREPLY=($(compgen -W "$sub" -- "$cur"))
  elif [[ ${COMP_WORDS[1]} == admin && ${COMP_WORDS[2]} == streams && $COMP_CWORD -eq 3 ]]; then
    COMPREPLY=($(compgen -W "apply" -- "$cur"))
  fi
}
complete -F _furrow furrow
`

func completionScript(shell string) (string, error) {
	tree := commandTree()
	var top []string
	for c := range tree {
		top = append(top, c)
	}
	slices.Sort(top)
	var cases strings.Builder
	for _, c := range top {
		if subs := tree[c]; len(subs) > 0 {
			fmt.Fprintf(&cases, "    %s) sub=%q ;;\n", c, strings.Join(subs, " "))
		}
	}
	script := fmt.Sprintf(bashCompletion, strings.Join(top, " "), cases.String())
	switch shell {
	case "bash":
		return script, nil
	case "zsh":
		return "# furrow shell completion (furrow completion zsh)\nautoload -U +X bashcompinit && bashcompinit\n" + script, nil
	}
	return "", usagef("furrow completion: want bash or zsh, got %q", shell)
}

func runCompletion(args []string, stdout, stderr io.Writer) error {
	if len(args) == 1 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
		fmt.Fprint(stdout, completionUsage)
		return nil
	}
	if len(args) != 1 {
		fmt.Fprint(stderr, completionUsage)
		return usagef("furrow completion: want bash or zsh")
	}
	script, err := completionScript(args[0])
	if err != nil {
		return err
	}
	_, err = io.WriteString(stdout, script)
	return err
}
