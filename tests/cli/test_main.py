import os
import subprocess
import sys

from longstm.cli import main


def test_unknown_command_is_a_usage_error_with_exit_code_2(capsys):
    assert main(["eval", "no-such-protocol"]) == 2
    assert "No such command 'no-such-protocol'" in capsys.readouterr().err


def test_user_errors_are_one_line_without_a_traceback(capsys, tmp_path):
    missing = tmp_path / "missing.csv"
    assert main(["eval", "ett", "--data", str(missing), "--model", "repeat", "--lookback", "8", "--horizons", "4"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(missing) in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_help_lists_every_command_group(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("data", "eval", "bench", "plot", "train", "evaluate", "predict", "demo", "report", "export"):
        assert command in out


def test_help_does_not_import_tensorflow():
    """The command boundary: TensorFlow and Keras load inside the commands that need them."""
    code = (
        "import sys; from longstm.cli import main; main(['--help']); main(['eval', '--help']); "
        "print([name for name in ('tensorflow', 'keras') if name in sys.modules])"
    )
    env = {**os.environ, "COLUMNS": "200"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert result.stdout.strip().splitlines()[-1] == "[]"
    assert "scores a trained run directory" in " ".join(result.stdout.split())
