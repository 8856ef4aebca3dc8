"""Every command of the tree (found from the Typer app, so a new command is covered
automatically): `--help` works, an unknown option is Typer's usage error with exit code 2, and a
missing input file is one line with exit code 2 and no traceback. An unexpected internal error is
one line naming a file with the full traceback, exit code 1."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer

from longstm.cli import app, main


def _leaves(command, path=()):
    """(path of names, command) of every leaf; Typer's click is vendored, so no isinstance."""
    if hasattr(command, "commands"):
        for name, sub in sorted(command.commands.items()):
            yield from _leaves(sub, (*path, name))
    else:
        yield path, command


LEAVES = list(_leaves(typer.main.get_command(app)))
IDS = [" ".join(path) for path, _ in LEAVES]


def test_the_tree_is_found():
    assert {"data inspect", "data convert", "train", "evaluate", "predict", "eval ett", "eval hft", "eval ticks", "export"} <= set(IDS)


@pytest.mark.parametrize("path, command", LEAVES, ids=IDS)
def test_help_and_an_unknown_option(path, command, capsys):
    assert main([*path, "--help"]) == 0
    assert "Usage" in capsys.readouterr().out
    assert main([*path, "--no-such-option"]) == 2
    assert "No such option" in capsys.readouterr().err


def _required_with_missing_files(command, missing: Path) -> list[str] | None:
    """Arguments that fill every required parameter, with a missing file for every path-like one;
    None when the command has no path-like required parameter (nothing to point at a missing file)."""
    words, positional, has_path = [], [], False
    for parameter in command.params:
        if not parameter.required:
            continue
        name = parameter.name.lower()
        annotation = parameter.type_descriptor.annotation
        pathlike = annotation is Path or any(k in name for k in ("path", "data", "config", "run", "dir", "source"))
        value = str(missing) if pathlike else ("1" if annotation in (int, float) else "x")
        has_path |= pathlike
        if parameter.param_type_name == "argument":
            positional.append(value)
        else:
            words += [parameter.opts[0], value]
    return [*positional, *words] if has_path else None


@pytest.mark.parametrize("path, command", LEAVES, ids=IDS)
def test_a_missing_input_is_one_line_with_exit_code_2(path, command, capsys, tmp_path):
    missing = tmp_path / "does-not-exist"
    arguments = _required_with_missing_files(command, missing)
    if arguments is None:
        pytest.skip(f"`longstm {' '.join(path)}` reads no required file")
    code = main([*path, *arguments])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 or "Usage" in err, err  # our one line, or Typer's usage box


def test_an_internal_error_is_one_line_naming_the_traceback_file(monkeypatch, capsys, tmp_path):
    def broken(*args, **kwargs):
        raise RuntimeError("something no user input explains")

    monkeypatch.setattr("longstm.cli.data.inspect_file", broken)
    (tmp_path / "x.csv").write_text("date,a\n2024-01-01,1\n")
    assert main(["data", "inspect", str(tmp_path / "x.csv")]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert err.startswith("internal error: RuntimeError: something no user input explains")
    saved = Path(re.search(r"full traceback in (\S+);", err).group(1))
    text = saved.read_text()
    assert "Traceback" in text and "RuntimeError: something no user input explains" in text
    saved.unlink()
