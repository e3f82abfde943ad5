"""`alerter completion bash|zsh` and `alerter manpage`, generated from the parser alerter runs
with: the bash script is valid and completes in a real bash; the man page lists every command."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from test_cli import commands

from alerter.cli import main


@pytest.fixture(scope="module")
def bash_script(tmp_path_factory):
    import io
    from contextlib import redirect_stdout

    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["completion", "bash"]) == 0
    path = tmp_path_factory.mktemp("completion") / "alerter.bash"
    path.write_text(out.getvalue())
    return path


def complete(script, words: list[str], cwd) -> list[str]:
    """What bash offers for the last of `words` (as if typed after `alerter`), from the script."""
    words = ["alerter", *words]
    line = " ".join(words)
    program = (f'source "{script}"; COMP_WORDS=({" ".join(repr(w) for w in words)}); COMP_CWORD={len(words) - 1}; '
               f'COMP_LINE={line!r}; COMP_POINT=${{#COMP_LINE}}; _shtab_alerter; printf "%s\\n" "${{COMPREPLY[@]}}"')
    done = subprocess.run(["bash", "--norc", "--noprofile", "-c", program], capture_output=True, text=True, cwd=cwd, timeout=10)
    assert done.returncode == 0, done.stderr
    return sorted(filter(None, done.stdout.splitlines()))


def test_the_bash_script_is_valid_bash(bash_script):
    done = subprocess.run(["bash", "-n", str(bash_script)], capture_output=True, text=True, timeout=10)
    assert done.returncode == 0, done.stderr


def test_bash_completes_commands_options_choices_and_config_files(bash_script, tmp_path):
    (tmp_path / "alerter-prod.toml").write_text("")
    assert complete(bash_script, ["va"], tmp_path) == ["validate"]
    assert complete(bash_script, [""], tmp_path) == sorted(commands())
    assert complete(bash_script, ["test-notify", "--le"], tmp_path) == ["--level"]
    assert complete(bash_script, ["test-notify", "--level", "c"], tmp_path) == ["call", "critical"]
    assert complete(bash_script, ["completion", ""], tmp_path) == ["bash", "zsh"]
    assert complete(bash_script, ["run", "--config", "alerter-p"], tmp_path) == ["alerter-prod.toml"]


def test_the_zsh_script_lists_every_command(capsys):
    assert main(["completion", "zsh"]) == 0
    script = capsys.readouterr().out
    assert script.startswith("#compdef alerter")
    for name in commands():
        assert f"\n    {name}:'" in script
    if shutil.which("zsh"):  # not on every machine: the syntax check runs where zsh is
        done = subprocess.run(["zsh", "-n"], input=script, capture_output=True, text=True, timeout=10)
        assert done.returncode == 0, done.stderr


def test_an_unknown_shell_is_one_line(capsys):
    with pytest.raises(SystemExit) as e:
        main(["completion", "fish"])
    assert e.value.code == 2
    assert capsys.readouterr().err.strip().count("\n") == 0


def test_the_man_page_lists_every_command_with_its_options(capsys):
    assert main(["manpage"]) == 0
    page = capsys.readouterr().out
    assert page.startswith('.TH ALERTER "1"')
    for name in commands():
        roff = name.replace("-", r"\-")
        assert f"\\fBalerter\\fR \\fI\\,{roff}\\/\\fR" in page, f"{name} is not in the command list"
        assert f".SH COMMAND \\fI\\,'alerter {roff}'\\/\\fR" in page, f"{name} has no section of its own"
    assert r"\fB\-\-level\fR" in page and ".SH FILES" in page and ".SH EXIT STATUS" in page
    if shutil.which("man"):  # the page renders, and man finds nothing to warn about
        done = subprocess.run(["man", "--warnings", "-l", "-"], input=page, capture_output=True, text=True, timeout=30,
                              env={"MANWIDTH": "100", "PATH": "/usr/bin:/bin", "MANPAGER": "cat", "PAGER": "cat"})
        assert done.returncode == 0 and done.stderr == "", done.stderr
        assert "alerter test-notify" in done.stdout and "EXIT STATUS" in done.stdout
