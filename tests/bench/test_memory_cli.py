"""`longstm bench memory`: bad options are one-line errors before any measurement runs."""

import pytest

from longstm.cli import main


@pytest.mark.parametrize(
    "args, message",
    [
        (["--methods", "tbptt,lstm"], "--methods must be tbptt, full_bptt or both; got 'tbptt,lstm'"),
        (["--methods", ","], "--methods must be tbptt, full_bptt or both"),
        (["--sizes", "1e4,lots"], "--sizes must be comma-separated numbers like 1e4,1e5,1e6"),
    ],
)
def test_bad_options_are_one_line_errors(args, message, capsys):
    assert main(["bench", "memory", *args]) == 2
    assert message in " ".join(capsys.readouterr().err.split())
