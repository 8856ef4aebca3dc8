"""Several trained models in the ETT protocol, scored as one forecast: the mean of theirs.

`longstm eval ett --model A.toml,B.toml --seeds 0,1,2` trains every config once per seed (each
a `TrainedEtt` member, in `OUT/<config stem>_s<seed>/`, exactly what `longstm eval ett --model
A.toml --set seed=S --out OUT/A_sS` writes) and scores the members' mean forecast on the same
test windows, beside each member's own score.

Why: a segment forecaster's test MSE on ETTh1 moves by about 0.003 from seed to seed, and much of
its error is that variance; the mean of several models trained from different seeds (and, more,
of differently built models) removes part of it. A protocol baseline may join as one more member
(`--model A.toml,B.toml,nlinear`: the closed-form NLinear, fitted on the training windows in
under a second, errs differently from a recurrent model). The ensemble's training time is the
sum of its members', and is reported that way.

With `weights="validation"` (`--weights validation`) the ensemble forecasts
`(1 - a) * mean(trained members) + a * mean(baselines)` instead, with `a` in [0, 1] fitted per
horizon by least squares on the validation windows. Why: how much a recurrent model should
lean on NLinear changes with the horizon (on ETTh1 at L = 336 the fit gives NLinear 0.2 of the
weight at H = 96 and 0.85 at H = 720), and one number per horizon is little to fit on ~2,800
windows. The ensemble's validation MSE is then the fitted one: it no longer ranks it fairly
against ensembles of other weights.

Members are trained one after another; `reuse=True` (`--resume`) loads a member horizon that an
earlier run finished with the same config instead of training it again, so an interrupted
ensemble loses at most the model it was training.

Example:

>>> ensemble = EttEnsemble([read_config("a.toml"), read_config("b.toml")], seeds=[0, 1], data="ETTh1.csv",
...                        lookback=720, run_dir="runs/ens", channel_independent=True)
>>> results, members = ensemble.evaluate([96], ["window"])
>>> results["window"][0].mse, [m["window"][0].mse for m in members.values()]
"""

from __future__ import annotations

import dataclasses
import hashlib
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from longstm.data.loaders import load_series
from longstm.data.series import TimeSeries
from longstm.errors import ConfigError
from longstm.evaluate.ett import evaluate_ett, prepare_ett
from longstm.evaluate.ett_trained import MODES, TrainedEtt
from longstm.models.baselines import BASELINES, make_baseline
from longstm.models.linear_baseline import LINEAR_BASELINES, make_linear_baseline

ENSEMBLE_WEIGHTS = ("equal", "validation")


class MeanForecaster:
    """The mean of several ETT forecasters' forecasts (`predict_windows` or `predict_at_rows`),
    plain or with `weights` (one per forecaster, summing to 1)."""

    def __init__(self, forecasters: Sequence[Any], weights: Sequence[float] | None = None):
        if not forecasters:
            raise ValueError("MeanForecaster needs at least one forecaster; got none")
        if weights is not None and (len(weights) != len(forecasters) or abs(sum(weights) - 1.0) > 1e-9):
            raise ValueError(f"MeanForecaster needs one weight per forecaster ({len(forecasters)}) summing to 1; got {list(weights)}")
        self.forecasters = list(forecasters)
        self.weights = None if weights is None else np.asarray(weights, np.float64)
        if all(hasattr(f, "predict_at_rows") for f in self.forecasters):
            self.predict_at_rows = self._mean_at_rows

    def _mean(self, forecasts: list[np.ndarray]) -> np.ndarray:
        if self.weights is None:
            return np.mean(forecasts, axis=0)
        return sum(weight * np.asarray(forecast, np.float64) for weight, forecast in zip(self.weights, forecasts) if weight)

    def predict_windows(self, x: np.ndarray) -> np.ndarray:
        return self._mean([np.asarray(f.predict_windows(x)) for f in self.forecasters])

    def _mean_at_rows(self, rows: np.ndarray) -> np.ndarray:
        return self._mean([np.asarray(f.predict_at_rows(rows)) for f in self.forecasters])


def fit_blend_weight(mse_at_0: float, mse_at_half: float, mse_at_1: float) -> float:
    """The weight a in [0, 1] that minimises the MSE of `(1 - a) * g + a * b`, from its MSE at a = 0, 1/2, 1.

    The MSE of a blend of two fixed forecasts is a quadratic in a, `A a^2 + B a + C` with
    `A = |b - g|^2 / n >= 0`, so three values give it exactly; its minimum is clipped to [0, 1].
    Forecasts that do not differ (A = 0) give 1/2.

    >>> round(fit_blend_weight(1.0, 0.5, 1.0), 6)  # (a - 1/2)^2 * 2 + 0.5
    0.5
    """
    curvature = 2.0 * (mse_at_0 + mse_at_1 - 2.0 * mse_at_half)  # A
    slope = 4.0 * mse_at_half - 3.0 * mse_at_0 - mse_at_1  # B
    if curvature <= 1e-12 * max(abs(mse_at_0), abs(mse_at_1), 1e-300):
        return 0.5
    return float(min(1.0, max(0.0, -slope / (2.0 * curvature))))


class RememberedForecaster:
    """A window forecaster (`predict_windows`) that keeps its forecast of each batch it is given,
    so the ensemble's mean reads the forecasts its members were scored with instead of running
    every member over the test windows a second time.

    A batch is known by a digest of its bytes, so a repeated batch is returned exactly as it was
    computed and any other batch is computed. What is kept is one forecast of every scored window
    (what a stream forecaster, read at rows, already holds), for as long as this object lives:
    `EttEnsemble.evaluate` makes one per member, horizon and mode.

    Args:
        forecaster: an object with `predict_windows(x) -> y`.

    Example:

    >>> kept = RememberedForecaster(make_baseline("repeat", 2, None))
    >>> x = np.ones((3, 4, 1), np.float32)
    >>> kept.predict_windows(x) is kept.predict_windows(x.copy())
    True
    """

    def __init__(self, forecaster: Any):
        self.forecaster = forecaster
        self._kept: dict[tuple, np.ndarray] = {}

    def predict_windows(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x)
        key = (x.shape, x.dtype.str, hashlib.blake2b(x.tobytes(), digest_size=16).digest())
        if key not in self._kept:
            self._kept[key] = np.asarray(self.forecaster.predict_windows(x))
        return self._kept[key]


def remembered(forecaster: Any) -> Any:
    """`forecaster` in a `RememberedForecaster` when it forecasts windows; one read at rows
    (`predict_at_rows`, a `StreamForecaster`) already reads one carried pass computed on first use."""
    return forecaster if hasattr(forecaster, "predict_at_rows") else RememberedForecaster(forecaster)


class EttEnsemble:
    """Configs x seeds trained in the ETT protocol, scored as the mean of their forecasts.

    Args:
        configs: training configs (`Config`, each with its `--set` values applied); their file
            names (stems) must differ, as they name the members' folders.
        seeds: the seeds each config is trained with (`seed` of the config is replaced), or None
            for each config's own seed.
        data: the ETT-format CSV or a loaded `TimeSeries`.
        lookback: input length L.
        run_dir: folder of the members: `run_dir/<stem>_s<seed>/runs/h<H>` (None: a temporary one).
        reuse: load member horizons finished earlier with the same config (`TrainedEtt(reuse=)`).
        baselines: protocol baselines that join as members, once each (`"nlinear"`, `"linear"`:
            fitted in closed form on the training windows; `"repeat"`, `"mean"`). An ensemble
            with a baseline is scored in window mode (a baseline has no carried stream).
        weights: `"equal"`: the plain mean of all members. `"validation"`: the trained members'
            mean and the baselines' mean blended as `(1 - a) * trained + a * baselines`, with the
            a in [0, 1] that minimises the blend's MSE on the validation windows, fitted per
            horizon (`fit_blend_weight`; `summary(H)["baseline_weight"]`). Needs a baseline.
        **protocol: `features`, `target`, `split`, `progress`, `channel_independent`, as for
            `TrainedEtt`.
    """

    def __init__(self, configs: Sequence[Any], seeds: Sequence[int] | None, data, lookback: int,
                 run_dir: str | Path | None = None, reuse: bool = False, baselines: Sequence[str] = (),
                 weights: str = "equal", **protocol):
        if not configs:
            raise ConfigError("an ensemble needs at least one training config; got none")
        if weights not in ENSEMBLE_WEIGHTS:
            raise ConfigError(f"ensemble weights must be one of {ENSEMBLE_WEIGHTS}; got {weights!r}")
        if weights == "validation" and not baselines:
            raise ConfigError("ensemble weights 'validation' blend the trained members with a baseline member "
                              "(e.g. --model A.toml,nlinear); got no baseline")
        self.weights = weights
        self._baseline_weight: dict[int, float] = {}
        unknown = [name for name in baselines if name not in BASELINES + LINEAR_BASELINES]
        if unknown or len(set(baselines)) != len(baselines):
            raise ConfigError(f"ensemble baselines must be distinct names among {BASELINES + LINEAR_BASELINES}; got {list(baselines)}")
        self.baselines = list(baselines)
        self._baseline_models: dict[tuple[str, int], tuple[Any, float]] = {}
        if seeds is not None:
            seeds = [int(seed) for seed in seeds]
            if not seeds or len(set(seeds)) != len(seeds):
                raise ConfigError(f"--seeds must list distinct seeds, e.g. 0,1,2; got {seeds}")
        stems = [Path(config.source).stem for config in configs]
        if len(set(stems)) != len(stems):
            raise ConfigError(f"ensemble configs must have different file names (they name the members' folders); got {stems}")
        self.series = data if isinstance(data, TimeSeries) else load_series(data, gap_policy="report")
        self._temporary = None
        if run_dir is None:
            self._temporary = tempfile.TemporaryDirectory(prefix="longstm-ett-ensemble-")
            run_dir = self._temporary.name
        self.lookback, self.run_dir, self.protocol = int(lookback), Path(run_dir), protocol
        self.members: dict[str, TrainedEtt] = {}
        for config, stem in zip(configs, stems):
            for seed in ([config.seed] if seeds is None else seeds):  # None: each config's own seed
                name = f"{stem}_s{seed}"
                self.members[name] = TrainedEtt(dataclasses.replace(config, seed=seed), self.series, self.lookback,
                                                run_dir=self.run_dir / name / "runs", reuse=reuse, **protocol)
        self.configs = list(configs)
        self._score_seconds: dict[tuple[int, str], float] = {}
        self._val_mse: dict[int, float] = {}

    @property
    def modes(self) -> tuple[str, ...]:
        """The modes every member can be scored in (window only if any member is window-only)."""
        if self.baselines:
            return ("window",)
        return tuple(mode for mode in MODES if all(mode in member.modes for member in self.members.values()))

    @property
    def name(self) -> str:
        seeds = len(self.members) // len(self.configs)
        trained = [f"{Path(c.source).stem} x{seeds}" for c in self.configs]
        if self.weights == "validation":
            return f"mean of {' + '.join(trained)}, blended with {' + '.join(self.baselines)} on validation"
        return "mean of " + " + ".join(trained + self.baselines)

    def baseline(self, name: str, horizon: int) -> tuple[Any, float]:
        """The baseline member `name` for `horizon` (fitted on the training part once) and its fit seconds."""
        key = (name, int(horizon))
        if key not in self._baseline_models:
            started = time.perf_counter()
            series, targets, split, scaler = prepare_ett(self.series, self.lookback, self.protocol.get("features", "M"),
                                                         self.protocol.get("target", "OT"), self.protocol.get("split", "auto"))
            if name in LINEAR_BASELINES:
                model = make_linear_baseline(name, int(horizon), targets).fit(series, self.lookback, start=split.train[0],
                                                                             stop=split.train[1], scaler=scaler)
            else:
                model = make_baseline(name, int(horizon), targets)
            self._baseline_models[key] = (model, time.perf_counter() - started)
        return self._baseline_models[key]

    def evaluate(self, horizons: Sequence[int], modes: Sequence[str], drop_last_batch: int | None = None,
                 on_member: Callable[[str, int, dict], None] | None = None) -> tuple[dict[str, list], dict[str, dict]]:
        """Train (or reuse) every member for each horizon, then score the members and their mean.

        Each member forecasts the test windows once per horizon and mode: the mean reads the
        forecasts the member was scored with (`RememberedForecaster`; a stream forecaster reads
        one carried pass). The ensemble's `score_seconds_<mode>` is that whole scoring.

        Returns:
            `({mode: [EttResult of the mean per horizon]}, {member: {mode: [EttResult per horizon]}})`.
            `summary(horizon)` then gives the ensemble's training summary and, scored in window
            mode, the mean forecast's validation MSE.
        """
        missing = [mode for mode in modes if mode not in self.modes]
        if missing:
            raise ConfigError(f"the ensemble can be scored in {list(self.modes)} (a window-only member has no stream); got {missing}")
        ensemble = {mode: [] for mode in modes}
        members = {name: {mode: [] for mode in modes} for name in [*self.members, *self.baselines]}
        options = dict(drop_last_batch=drop_last_batch, features=self.protocol.get("features", "M"),
                       target=self.protocol.get("target", "OT"), split=self.protocol.get("split", "auto"))
        for horizon in (int(h) for h in horizons):
            for name, member in self.members.items():
                trained = member.train(horizon)
                if on_member is not None:
                    on_member(name, horizon, trained.summary)
            for mode in modes:
                started = time.perf_counter()
                forecasters = {name: member.forecaster(horizon, mode) for name, member in self.members.items()}
                forecasters.update({name: self.baseline(name, horizon)[0] for name in self.baselines})
                kept = {name: remembered(forecaster) for name, forecaster in forecasters.items()}  # each window forecast once
                batch = next(iter(self.members.values())).windows_per_call()
                if mode == "window" and self.weights == "validation" and horizon not in self._baseline_weight:
                    self._fit_blend(horizon, forecasters, batch, options)  # part of making the forecast: timed with it
                for name, forecaster in kept.items():
                    members[name][mode] += evaluate_ett(self.series, forecaster, self.lookback, [horizon], batch_size=batch, **options)
                ensemble[mode] += evaluate_ett(self.series, MeanForecaster(list(kept.values()), self.member_weights(horizon)),
                                               self.lookback, [horizon], batch_size=batch, **options)
                self._score_seconds[(horizon, mode)] = time.perf_counter() - started  # the members' scoring and the mean's
                if mode == "window" and horizon not in self._val_mse:  # what a choice between ensembles may look at
                    self._val_mse[horizon] = self._validation_mse(horizon, MeanForecaster(list(forecasters.values())),
                                                                  batch, options)
        return ensemble, members

    def member_weights(self, horizon: int) -> list[float] | None:
        """Each member's weight in the ensemble's forecast at `horizon` (trained members, then
        baselines), or None for the plain mean."""
        if self.weights == "equal":
            return None
        blend = self._baseline_weight[int(horizon)]
        return ([(1.0 - blend) / len(self.members)] * len(self.members)
                + [blend / len(self.baselines)] * len(self.baselines))

    def _validation_mse(self, horizon: int, forecaster: Any, batch: int, options: dict) -> float:
        (val,) = evaluate_ett(self.series, forecaster, self.lookback, [horizon], batch_size=batch, part="val",
                              **dict(options, drop_last_batch=None))
        return val.mse

    def _fit_blend(self, horizon: int, forecasters: dict[str, Any], batch: int, options: dict) -> None:
        """`weights="validation"`: the baselines' weight at `horizon`, fitted on the validation
        windows, and the blend's validation MSE there. Three MSEs of the trained and the baseline
        mean give the blend's whole quadratic (`fit_blend_weight`); each member forecasts each
        window once."""
        trained = RememberedForecaster(MeanForecaster([forecasters[name] for name in self.members]))
        baselines = RememberedForecaster(MeanForecaster([forecasters[name] for name in self.baselines]))
        at = [self._validation_mse(horizon, MeanForecaster([trained, baselines], [1.0 - a, a]), batch, options)
              for a in (0.0, 0.5, 1.0)]
        blend = self._baseline_weight[horizon] = fit_blend_weight(*at)
        self._val_mse[horizon] = self._validation_mse(horizon, MeanForecaster([trained, baselines], [1.0 - blend, blend]),
                                                      batch, options)

    def member_summary(self, name: str, horizon: int) -> dict[str, Any]:
        """A member's training summary for `horizon` (a baseline's: its fit seconds)."""
        if name in self.baselines:
            return {"epochs_run": 0, "best_epoch": None, "val_mse": None, "train_seconds": self.baseline(name, horizon)[1]}
        return self.members[name].models[int(horizon)].summary

    def summary(self, horizon: int) -> dict[str, Any]:
        """The ensemble's training summary for `horizon`: members' seconds summed, epochs listed."""
        summaries = [self.member_summary(name, horizon) for name in [*self.members, *self.baselines]]
        row: dict[str, Any] = {
            "epochs_run": "+".join(str(s.get("epochs_run")) for s in summaries),
            "best_epoch": "+".join(str(s.get("best_epoch")) for s in summaries),
            "val_mse": self._val_mse.get(int(horizon)),  # the mean forecast's, window mode
            "baseline_weight": self._baseline_weight.get(int(horizon)),  # weights="validation": the fitted blend
            "train_seconds": float(sum(s.get("train_seconds", 0.0) for s in summaries)),
        }
        for mode in MODES:
            if (int(horizon), mode) in self._score_seconds:
                row[f"score_seconds_{mode}"] = self._score_seconds[(int(horizon), mode)]
        return row
