"""Plots are written atomically (longstm/atomic.py `save_figure`): a run that fails or is killed
while a figure is saved leaves the previous file or none, never a truncated image."""

import json

import matplotlib.figure
import pytest

from longstm.atomic import save_figure
from longstm.bench.sweeps import plot_sweep
from longstm.train.logs import plot_losses

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class Killed(BaseException):
    """Stands for a Ctrl-C or a kill arriving in the middle of `savefig`."""


@pytest.fixture
def savefig_dies_halfway(monkeypatch):
    """Every `Figure.savefig` writes the start of a PNG to its file, then dies."""

    def half_written(self, fname, **options):
        with open(fname, "wb") as handle:
            handle.write(PNG_MAGIC + b"\x00" * 64)  # a valid-looking header, no image
        raise Killed()

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", half_written)


def _draw_loss_plot(folder):
    return plot_losses(folder, [{"epoch": 1, "train_mse": 1.0, "val_mse": 1.2}, {"epoch": 2, "train_mse": 0.8, "val_mse": 1.0}])


def _draw_sweep_plot(folder):
    rows = folder / "sweep.json"
    rows.write_text(json.dumps([{"model": "lstm", "T": 64, "ms_per_step": 2.0}, {"model": "lstm", "T": 128, "ms_per_step": 3.5}]))
    return plot_sweep(rows)


@pytest.mark.parametrize("draw, name", [(_draw_loss_plot, "loss.png"), (_draw_sweep_plot, "sweep.png")])
def test_a_plot_killed_while_saving_leaves_no_file(tmp_path, savefig_dies_halfway, draw, name):
    with pytest.raises(Killed):
        draw(tmp_path)
    assert not (tmp_path / name).exists()
    assert sorted(path.name for path in tmp_path.iterdir()) in ([], ["sweep.json"])  # no temporary left


def test_a_plot_killed_while_saving_keeps_the_previous_image(tmp_path, monkeypatch):
    path = _draw_loss_plot(tmp_path)
    before = path.read_bytes()
    assert before.startswith(PNG_MAGIC) and len(before) > 1000
    def killed_at_once(self, fname, **options):
        raise Killed()

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", killed_at_once)
    with pytest.raises(Killed):
        _draw_loss_plot(tmp_path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["loss.png"]


def test_save_figure_takes_the_format_from_the_ending(tmp_path):
    figure = matplotlib.figure.Figure(figsize=(2, 2))
    figure.subplots().plot([0, 1], [1, 0])
    assert save_figure(figure, tmp_path / "a.svg").read_text().lstrip().startswith("<?xml")
    assert save_figure(figure, tmp_path / "plain", dpi=50).read_bytes().startswith(PNG_MAGIC)
