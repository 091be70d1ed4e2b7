package cli

import (
	"fmt"
	"slices"
	"strings"

	ucli "github.com/urfave/cli/v2"

	shipped "github.com/mailchaos/mailchaos/experiments/catalog"
	"github.com/mailchaos/mailchaos/internal/suggest"
	"github.com/mailchaos/mailchaos/plugins"
	"github.com/mailchaos/mailchaos/plugins/builtin"
	"github.com/mailchaos/mailchaos/targets"
)

// completeCommand is the hidden command the completion scripts call:
// "mailchaos __complete WORD... CURRENT" prints the candidates for
// CURRENT, one a line, after the words before it. urfave/cli's own
// --generate-bash-completion completes command names and (reading
// os.Args) flag names only; this one walks the same command tree and also
// completes flag values and arguments: fault names, link names, catalog
// names, files. A line ":files" asks the script for file names, ":yaml"
// for experiment files (*.yaml, *.yml) and directories.
const completeCommand = "__complete"

// Directives of the completion protocol.
const (
	completeFiles = ":files"
	completeYAML  = ":yaml"
)

func completionCommand(st *state) *ucli.Command {
	return &ucli.Command{
		Name:      "completion",
		Usage:     "print a shell completion script: bash, zsh or fish",
		ArgsUsage: "bash|zsh|fish",
		Description: "Completes commands, subcommands, flags, fault names (inject, faults), link names (inject --link,\n" +
			"from the embedded stack or --target FILE), catalog names (init --from) and experiment files.\n\n" +
			"  bash: source <(mailchaos completion bash)     # in ~/.bashrc\n" +
			"  zsh:  source <(mailchaos completion zsh)      # in ~/.zshrc, after compinit\n" +
			"  fish: mailchaos completion fish > ~/.config/fish/completions/mailchaos.fish",
		Action: func(c *ucli.Context) error {
			scripts := map[string]string{"bash": bashCompletion, "zsh": zshCompletion, "fish": fishCompletion}
			if c.NArg() != 1 {
				return &usageError{fmt.Errorf("completion needs one shell: bash, zsh or fish; got %d arguments", c.NArg())}
			}
			script, ok := scripts[c.Args().First()]
			if !ok {
				return unknownChoice("shell", c.Args().First(), []string{"bash", "zsh", "fish"})
			}
			_, err := fmt.Fprint(st.env.Stdout, script)
			return err
		},
	}
}

// unknownChoice is the error for an argument that is not one of valid.
func unknownChoice(what, got string, valid []string) error {
	return &usageError{fmt.Errorf("unknown %s %q%s; valid: %s", what, got, suggest.Hint(got, valid), strings.Join(valid, ", "))}
}

// completeHiddenCommand answers the completion scripts.
func completeHiddenCommand(st *state) *ucli.Command {
	return &ucli.Command{
		Name:            completeCommand,
		Hidden:          true,
		SkipFlagParsing: true,
		HideHelp:        true,
		HideHelpCommand: true,
		Action: func(c *ucli.Context) error {
			words := c.Args().Slice()
			if len(words) == 0 {
				words = []string{""}
			}
			for _, w := range complete(st, c.App, words[:len(words)-1], words[len(words)-1]) {
				fmt.Fprintln(st.env.Stdout, w)
			}
			return nil
		},
	}
}

// complete returns the candidates for cur after the words prev (the
// command line without the program name).
func complete(st *state, app *ucli.App, prev []string, cur string) []string {
	cmds, flags := app.Commands, app.Flags
	var cmd *ucli.Command
	var args []string
	values := map[string]string{}
	for i := 0; i < len(prev); i++ {
		w := prev[i]
		if strings.HasPrefix(w, "-") && w != "-" {
			name, value, hasValue := strings.Cut(strings.TrimLeft(w, "-"), "=")
			if !hasValue && takesValue(flags, w) {
				if i+1 == len(prev) {
					return filter(flagValues(st, flagNamed(flags, name), values), cur)
				}
				i++
				value = prev[i]
			}
			values[name] = value
			continue
		}
		if next := findCommand(cmds, w); next != nil && len(args) == 0 {
			cmd, cmds, flags = next, next.Subcommands, next.Flags
			continue
		}
		args = append(args, w)
	}
	if name, value, ok := strings.Cut(cur, "="); ok && strings.HasPrefix(name, "-") {
		// --flag=value: the candidates are whole words, --flag=candidate;
		// a directive is for the value part.
		if !takesValue(flags, name) {
			return nil
		}
		var out []string
		for _, c := range filter(flagValues(st, flagNamed(flags, strings.TrimLeft(name, "-")), values), value) {
			if !strings.HasPrefix(c, ":") {
				c = name + "=" + c
			}
			out = append(out, c)
		}
		return out
	}
	if strings.HasPrefix(cur, "-") {
		var names []string
		for _, f := range flags {
			if vf, ok := f.(ucli.VisibleFlag); ok && !vf.IsVisible() {
				continue
			}
			for _, n := range f.Names() {
				names = append(names, dashes(n))
			}
		}
		return filter(append(names, "--help"), cur)
	}
	if cmd != nil && cmd.Name == "help" {
		// help takes a command path: complete it like one.
		cmds = app.Commands
		for _, a := range args {
			if next := findCommand(cmds, a); next != nil {
				cmds = next.Subcommands
			}
		}
		cmd = nil
	}
	if cmd == nil || len(cmd.Subcommands) > 0 {
		var names []string
		for _, sc := range cmds {
			if !sc.Hidden {
				names = append(names, sc.Name)
			}
		}
		return filter(names, cur)
	}
	return filter(argValues(st, cmd, args), cur)
}

// argValues are the candidates for the next argument of cmd.
func argValues(st *state, cmd *ucli.Command, args []string) []string {
	switch cmd.HelpName {
	case "mailchaos inject", "mailchaos faults":
		if len(args) == 0 {
			return faultNames(st)
		}
	case "mailchaos run", "mailchaos validate", "mailchaos check":
		return []string{completeYAML}
	case "mailchaos init", "mailchaos report", "mailchaos recover":
		if len(args) == 0 {
			return []string{completeFiles}
		}
	case "mailchaos completion":
		if len(args) == 0 {
			return []string{"bash", "zsh", "fish"}
		}
	case "mailchaos plugins describe", "mailchaos plugin describe":
		if len(args) == 0 {
			return faultNames(st)
		}
	}
	return nil
}

// flagValues are the candidates for the value of flag f.
func flagValues(st *state, f ucli.Flag, values map[string]string) []string {
	if f == nil {
		return nil
	}
	switch f.Names()[0] {
	case "link":
		return linkNames(values["target"])
	case "from":
		return shipped.Names()
	case "target":
		return []string{"mailstack", completeYAML}
	case "profile":
		return []string{"remediated", "incident"}
	case "log-level":
		return []string{"debug", "info", "warn", "error"}
	case "builtins":
		return []string{"plugin", "in-process"}
	}
	if u, ok := f.(ucli.DocGenerationFlag); ok {
		if usage := u.GetUsage(); strings.Contains(usage, "`FILE`") || strings.Contains(usage, "`DIR`") {
			return []string{completeFiles}
		}
	}
	return nil
}

// flagNamed is the flag of flags called name, or nil.
func flagNamed(flags []ucli.Flag, name string) ucli.Flag {
	for _, f := range flags {
		if slices.Contains(f.Names(), name) {
			return f
		}
	}
	return nil
}

// faultNames are the built-in faults and the plugins found on disk (not
// started: completion must be quick).
func faultNames(st *state) []string {
	names := builtin.Names()
	found, _ := plugins.Discover(plugins.DefaultDirs(st.env.Getenv))
	for _, f := range found {
		if !slices.Contains(names, f.Name) {
			names = append(names, f.Name)
		}
	}
	return names
}

// linkNames are the links of the target file, or of the embedded stack
// when there is none ("" or "mailstack").
func linkNames(target string) []string {
	var t targets.Spec
	if target == "" || target == "mailstack" {
		cfg, err := targets.MailstackConfig("")
		if err != nil {
			return nil
		}
		t.Mailstack = &cfg
	} else {
		f, err := targets.LoadFile(target, true)
		if err != nil {
			return nil
		}
		t.File = f
	}
	var names []string
	for _, l := range t.Describe().Links {
		names = append(names, l.Name)
	}
	return names
}

// filter keeps the candidates that start with prefix, and the directives.
func filter(cands []string, prefix string) []string {
	var out []string
	for _, c := range cands {
		if strings.HasPrefix(c, prefix) || strings.HasPrefix(c, ":") {
			out = append(out, c)
		}
	}
	return out
}

// bashCompletion asks mailchaos for the candidates of the word under the
// cursor. Bash hands the words over as typed (quotes and backslashes kept)
// and split at "=" (COMP_WORDBREAKS), so the script dequotes each word and
// joins "--flag", "=", "value" back into one before asking; the candidates
// then replace the value part only, and file names are looked up under the
// dequoted value (bash quotes them again: -o filenames).
const bashCompletion = `# bash completion for mailchaos: source <(mailchaos completion bash)
_mailchaos_dequote() {
    local w=$1 q= c i
    REPLY=
    for ((i = 0; i < ${#w}; i++)); do
        c=${w:i:1}
        if [[ $q == "'" ]]; then
            if [[ $c == "'" ]]; then q=; else REPLY+=$c; fi
        elif [[ $c == '\' && ( -z $q || ${w:i+1:1} == [\"\\\$] || ${w:i+1:1} == $'\x60' ) ]]; then
            ((i++))
            REPLY+=${w:i:1}
        elif [[ $c == [\"\'] && ( -z $q || $c == "$q" ) ]]; then
            if [[ -n $q ]]; then q=; else q=$c; fi
        else
            REPLY+=$c
        fi
    done
}
_mailchaos() {
    local -a words=()
    local i cur= prefix= line f REPLY
    for ((i = 1; i <= COMP_CWORD; i++)); do
        if [[ ${COMP_WORDS[i]} == = && ${#words[@]} -gt 0 && ${COMP_WORDS[i-1]} == -* ]]; then
            prefix=${words[-1]}=
            cur=
            if ((i < COMP_CWORD)); then
                ((i++))
                _mailchaos_dequote "${COMP_WORDS[i]}"
                cur=$REPLY
            fi
            words[-1]=$prefix$cur
            continue
        fi
        prefix=
        _mailchaos_dequote "${COMP_WORDS[i]}"
        cur=$REPLY
        words+=("$cur")
    done
    _mailchaos_dequote "${COMP_WORDS[0]}"
    COMPREPLY=()
    while IFS= read -r line; do
        case "$line" in
        :files)
            while IFS= read -r f; do COMPREPLY+=("$f"); done < <(compgen -f -- "$cur") ;;
        :yaml)
            while IFS= read -r f; do
                if [[ -d "$f" || "$f" == *.yaml || "$f" == *.yml ]]; then COMPREPLY+=("$f"); fi
            done < <(compgen -f -- "$cur") ;;
        *)
            COMPREPLY+=("${line#"$prefix"}") ;;
        esac
    done < <("$REPLY" __complete "${words[@]}" 2>/dev/null)
}
complete -o filenames -F _mailchaos mailchaos
`

// zshCompletion is the same for zsh: words are dequoted before asking;
// file names for --flag=value are completed after the "=".
const zshCompletion = `#compdef mailchaos
# zsh completion for mailchaos: source <(mailchaos completion zsh), after compinit
_mailchaos() {
    local -a cands
    local line files=0 yaml=0
    for line in "${(@f)$(${(Q)words[1]} __complete "${(@Q)words[2,CURRENT]}" 2>/dev/null)}"; do
        case $line in
        :files) files=1 ;;
        :yaml) yaml=1 ;;
        ?*) cands+=("$line") ;;
        esac
    done
    (( ${#cands} )) && compadd -- "${cands[@]}"
    (( files || yaml )) && [[ ${words[CURRENT]} == -*=* ]] && compset -P '*='
    (( files )) && _files
    (( yaml )) && _files -g '*.(yaml|yml)'
    return 0
}
if [[ "${funcstack[1]}" == "_mailchaos" ]]; then
    _mailchaos "$@"
else
    compdef _mailchaos mailchaos
fi
`

// fishCompletion is the same for fish; file names come from fish's own
// file completion, which reads the word as typed (quotes, "--flag=").
const fishCompletion = `# fish completion for mailchaos: mailchaos completion fish > ~/.config/fish/completions/mailchaos.fish
function __mailchaos_complete
    set -l words (commandline -opc)
    set -l cur (commandline -ct)
    for line in ($words[1] __complete $words[2..-1] "$cur" 2>/dev/null)
        switch $line
            case ':files'
                complete -C "__fish_command_without_completions $cur"
            case ':yaml'
                __fish_complete_suffix .yaml
                __fish_complete_suffix .yml
            case '*'
                echo $line
        end
    end
end
complete -c mailchaos -f -a '(__mailchaos_complete)'
`
