"""Shell completion scripts for bash, zsh and fish, generated from the argparse parser,
so they can never fall behind the CLI."""

from __future__ import annotations

import argparse

SHELLS = ("bash", "zsh", "fish")


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(parser: argparse.ArgumentParser) -> list[tuple[str, str, list[str] | None]]:
    """(flag, help, choices) for each long option of a parser."""
    out = []
    for action in parser._actions:
        longs = [s for s in action.option_strings if s.startswith("--")]
        if longs:
            choices = [str(c) for c in action.choices] if action.choices else None
            out.append((longs[0], (action.help or "").replace("'", ""), choices))
    return out


def _positional_choices(parser: argparse.ArgumentParser) -> list[str]:
    """The values of a command's first positional argument with fixed choices
    (`rcmd service install|uninstall|status`), or []."""
    for action in parser._actions:
        if not action.option_strings and action.choices and action.dest != "command":
            return [str(c) for c in action.choices]
    return []


def _help_of(parser: argparse.ArgumentParser, name: str) -> str:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                if choice.dest == name:
                    return (choice.help or "").replace("'", "")
    return ""


def bash(parser: argparse.ArgumentParser) -> str:
    cmds = _commands(parser)
    cases = "\n".join(
        f"        {name}) opts='{' '.join(o for o, _h, _c in _options(sub))}'; "
        f"words='{' '.join(_positional_choices(sub))}' ;;"
        for name, sub in cmds.items()
    )
    values = sorted(
        {(flag, " ".join(c)) for sub in cmds.values() for flag, _h, c in _options(sub) if c}
    )
    value_cases = "\n".join(f"        {flag}) vals='{v}' ;;" for flag, v in values)
    return f"""# bash completion for rcmd; install with:
#   rcmd completion bash > ~/.local/share/bash-completion/completions/rcmd
_rcmd() {{
    local cur=${{COMP_WORDS[COMP_CWORD]}} prev=${{COMP_WORDS[COMP_CWORD-1]}}
    local cmd=${{COMP_WORDS[1]}} opts words vals=''
    if [[ $COMP_CWORD -eq 1 ]]; then
        COMPREPLY=($(compgen -W '{" ".join(cmds)} --help --version' -- "$cur"))
        return
    fi
    case $prev in
{value_cases}
    esac
    if [[ -n $vals ]]; then
        COMPREPLY=($(compgen -W "$vals" -- "$cur"))
        return
    fi
    case $cmd in
{cases}
        *) opts=''; words='' ;;
    esac
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$opts --help" -- "$cur"))
    elif [[ -n $words ]]; then
        COMPREPLY=($(compgen -W "$words" -- "$cur"))
    else
        COMPREPLY=($(compgen -f -- "$cur"))
    fi
}}
complete -o filenames -F _rcmd rcmd
"""


def zsh(parser: argparse.ArgumentParser) -> str:
    cmds = _commands(parser)
    described = "\n".join(f"        '{name}:{_help_of(parser, name)}'" for name in cmds)
    cases = []
    for name, sub in cmds.items():
        specs = " ".join(
            f"'{flag}[{text}]" + (f":value:({' '.join(choices)})'" if choices else "'")
            for flag, text, choices in _options(sub)
        )
        words = _positional_choices(sub)
        rest = f"'1:value:({' '.join(words)})'" if words else "'*:file:_files'"
        cases.append(f"        {name}) _arguments {specs} {rest} ;;")
    body = "\n".join(cases)
    return f"""#compdef rcmd
# zsh completion for rcmd; install: rcmd completion zsh > "${{fpath[1]}}/_rcmd"
_rcmd() {{
    local -a commands
    commands=(
{described}
    )
    if (( CURRENT == 2 )); then
        _describe 'command' commands
        return
    fi
    case $words[2] in
{body}
    esac
}}
_rcmd "$@"
"""


def fish(parser: argparse.ArgumentParser) -> str:
    lines = [
        "# fish completion for rcmd; install with:",
        "#   rcmd completion fish > ~/.config/fish/completions/rcmd.fish",
        "complete -c rcmd -f",
    ]
    cmds = _commands(parser)
    for name in cmds:
        lines.append(
            f"complete -c rcmd -n __fish_use_subcommand -a {name} -d '{_help_of(parser, name)}'"
        )
    for name, sub in cmds.items():
        words = _positional_choices(sub)
        if words:
            lines.append(
                f"complete -c rcmd -n '__fish_seen_subcommand_from {name}' -a '{' '.join(words)}'"
            )
        for flag, text, choices in _options(sub):
            extra = f" -x -a '{' '.join(choices)}'" if choices else ""
            lines.append(
                f"complete -c rcmd -n '__fish_seen_subcommand_from {name}' "
                f"-l {flag[2:]} -d '{text}'{extra}"
            )
    return "\n".join(lines) + "\n"


def script(shell: str, parser: argparse.ArgumentParser) -> str:
    return {"bash": bash, "zsh": zsh, "fish": fish}[shell](parser)
