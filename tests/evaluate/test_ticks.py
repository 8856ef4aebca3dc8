"""The tick protocol on a generated store: targets and features per session, one baseline's
numbers recomputed independently, no leakage past train_until, holdings that never overlap,
and the pooled figures made of the per-series ones."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from longstm.data.store import Store, convert
from longstm.errors import ConfigError, DataValidationError
from longstm.evaluate.ticks import POOLED, TickInputs, TicksConfig, evaluate_ticks, hold_ticks, parse_horizons
from longstm.models.hft_baselines import LinearAR, MeanReversion, Momentum, ZeroReturn

TRAIN_UNTIL, VAL_UNTIL = "2024-01-02T00:30", "2024-01-04"  # train_until cuts the second session
SESSION = 3600  # one tick a second, 00:00-01:00 UTC each day: sessions split at the 23-hour gap
BASELINES = {"zero": ZeroReturn, "momentum": Momentum, "ar": LinearAR, "meanrev": MeanReversion}


def make_tick_store(root, poison: bool = False) -> Store:
    """Series `a` (no crossed quotes) and `b` (a crossed quote every 97 ticks, and at its first
    test tick): 4 daily sessions of 3,600 one-second ticks; the mid is an AR(1) in its returns.
    With `poison`, every quote at or after TRAIN_UNTIL is replaced by a wild one."""
    frames = []
    for k, name in enumerate(("a", "b")):
        stamps = pd.DatetimeIndex(np.concatenate([pd.date_range(f"2024-01-0{day}", periods=SESSION, freq="s") for day in (1, 2, 3, 4)]))
        rng = np.random.default_rng(k)
        returns = np.zeros(stamps.size)
        shocks = rng.normal(0, 1e-5, stamps.size) * (rng.random(stamps.size) < 0.3)  # most ticks leave the mid unchanged
        for i in range(1, stamps.size):
            returns[i] = -0.3 * returns[i - 1] + shocks[i]
        mid = 1.3 * np.exp(np.cumsum(returns))
        half = 1e-5 * (1 + rng.random(stamps.size))
        bid, ask = mid - half, mid + half
        if name == "b":
            crossed = (np.arange(stamps.size) % 97 == 5) | (np.arange(stamps.size) == 3 * SESSION)
            bid[crossed], ask[crossed] = ask[crossed] + 1e-5, bid[crossed]
        if poison:
            late = stamps >= pd.Timestamp(TRAIN_UNTIL)
            bid[late], ask[late] = bid[late] * rng.uniform(0.5, 2, late.sum()), ask[late] * 3
        frames.append(pd.DataFrame({"unique_id": name, "ds": stamps, "bid": bid, "ask": ask}))
    root.mkdir(parents=True, exist_ok=True)
    pd.concat(frames).to_parquet(root / "ticks.parquet")
    convert([root / "ticks.parquet"], root / "store")
    return Store(root / "store")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_tick_store(tmp_path_factory.mktemp("ticks"))


@pytest.fixture(scope="module")
def evaluation(store):
    return evaluate_ticks(store, BASELINES, TicksConfig(TRAIN_UNTIL, VAL_UNTIL, horizons=("10s", "30s"), lags=5))


def _row(evaluation, model, horizon, series):
    return next(r for r in evaluation.rows() if (r["model"], r["horizon"], r["series"]) == (model, horizon, series))


def test_momentum_on_one_series_recomputed_with_numpy(store, evaluation):
    series = store.series("a")
    quotes = series.read(3 * SESSION, 4 * SESSION, ["bid", "ask"])  # the test part: the last session
    log_mid = np.log(quotes.mean(1))
    t = np.arange(5 * 10, SESSION - 10)  # 5 lags of 10 s behind, 10 s ahead, inside the session
    actual = 1e4 * (log_mid[t + 10] - log_mid[t])
    forecast = 1e4 * (log_mid[t] - log_mid[t - 10])
    moved = actual != 0
    hits = np.where(np.sign(forecast[moved]) == 0, 0.5, np.sign(forecast[moved]) == np.sign(actual[moved]))
    row = _row(evaluation, "momentum", "10s", "a")
    assert row["n"] == t.size
    assert row["mse_bp2"] == pytest.approx(np.mean((forecast - actual) ** 2), rel=1e-9)
    assert row["mse_zero_bp2"] == pytest.approx(np.mean(actual**2), rel=1e-9)
    assert row["directional_accuracy"] == pytest.approx(hits.mean(), rel=1e-12)
    # the sign held 10 ticks from tick 50, then re-decided; bought at the ask, sold at the bid
    position = np.zeros(SESSION - 1)
    held = np.arange(50, 50 + 10 * ((t.size + 9) // 10))
    held = held[held < SESSION - 1]
    position[held] = np.sign(forecast[(held - 50) // 10 * 10])
    mid = quotes.mean(1)
    half_spread = (quotes[:, 1] - quotes[:, 0]) / (2 * mid)
    cost = np.abs(np.diff(position, prepend=0.0)) * half_spread[:-1]
    equity = np.concatenate([[1.0], np.cumprod(1 + position * (mid[1:] / mid[:-1] - 1) - cost)])
    assert row["total_return"] == pytest.approx(equity[-1] - 1, rel=1e-9)
    assert row["spread_paid_bp"] == pytest.approx(1e4 * cost.sum(), rel=1e-9)
    # Sharpe and pooling read the equity at each minute: the last tick at or before it
    sampled = equity[np.minimum(60 * np.arange(61), SESSION - 1)]
    result = next(r for r in evaluation.results if (r.model, r.horizon, r.series) == ("momentum", "10s", "a"))
    np.testing.assert_allclose(result.bar_returns, sampled[1:] / sampled[:-1] - 1, rtol=1e-9, atol=1e-15)


def test_decision_ticks_are_never_crossed_and_targets_stay_in_the_session(store, evaluation):
    crossed = store.series("b").read(0, 4 * SESSION, ["crossed"])[:, 0] > 0
    for result in evaluation.results:
        assert result.series == "a" or not crossed[result.rows].any()
        within = result.rows - 3 * SESSION
        horizon = int(result.horizon[:-1])
        assert within.min() >= 5 * horizon and within.max() <= SESSION - 1 - horizon


def test_pooled_rows_are_made_of_the_series_rows(evaluation):
    for model in BASELINES:
        a, b, pooled = (_row(evaluation, model, "30s", s) for s in ("a", "b", POOLED))
        assert pooled["n"] == a["n"] + b["n"]
        assert pooled["mse_bp2"] == pytest.approx((a["n"] * a["mse_bp2"] + b["n"] * b["mse_bp2"]) / pooled["n"], rel=1e-9)
        assert pooled["pnl_sum"] == pytest.approx(a["total_return"] + b["total_return"], rel=1e-9, abs=1e-15)
        assert pooled["spread_paid_bp"] == pytest.approx(a["spread_paid_bp"] + b["spread_paid_bp"])
        book = np.mean([r.bar_returns for r in evaluation.results if r.model == model and r.horizon == "30s"], axis=0)
        assert pooled["total_return"] == pytest.approx(np.prod(1 + book) - 1, rel=1e-9, abs=1e-15)
    zero = _row(evaluation, "zero", "10s", POOLED)
    assert zero["mse_ratio"] == 1.0 and zero["units_traded"] == 0 and zero["total_return"] == 0


def test_fitted_coefficients_do_not_read_past_train_until(tmp_path, evaluation):
    poisoned = evaluate_ticks(make_tick_store(tmp_path, poison=True), BASELINES,
                              TicksConfig(TRAIN_UNTIL, VAL_UNTIL, horizons=("10s", "30s"), lags=5))
    fitted = [(a, b) for a, b in zip(evaluation.results, poisoned.results) if a.model in ("ar", "meanrev")]
    assert len(fitted) == 2 * 2 * 2
    for clean, dirty in fitted:
        assert (clean.model, clean.series, clean.horizon) == (dirty.model, dirty.series, dirty.horizon)
        np.testing.assert_array_equal(clean.predictor.coefficients, dirty.predictor.coefficients)
        assert clean.predictor.coefficients.any()
    assert not np.array_equal(evaluation.results[-1].predictions, poisoned.results[-1].predictions)  # the poison is there


def test_holdings_last_delta_and_never_overlap():
    stamps = np.array([0, 1, 2, 2, 5, 6, 7, 11, 12]) * 10**9
    decisions = np.array([0, 1, 3, 5, 7])
    wanted = hold_ticks(stamps, decisions, np.array([1.0, -1.0, -1.0, -1.0, 1.0]), 3 * 10**9)
    # tick 0 is held until the first tick at or after 3 s (tick 4, not a decision: flat until
    # tick 5 decides); tick 5 until 9 s (tick 7, which decides and holds to the end)
    assert wanted.tolist() == [1, 1, 1, 1, 0, -1, -1, 1, 1]


def test_mean_reversion_signal_is_the_log_price_deviation_from_its_mean():
    log_price = np.cumsum(np.random.default_rng(3).normal(size=(40, 7)), axis=1)
    inputs = TickInputs(np.diff(log_price, axis=1))
    model = MeanReversion()
    np.testing.assert_allclose(model.signal(inputs), log_price[:, -1] - log_price.mean(axis=1))
    targets = -0.5 * model.signal(inputs)
    model.fit(inputs, targets)
    np.testing.assert_allclose(model.coefficients, [-0.5])
    model.fit(inputs, -targets)  # a trending market: the direction stays a reversion, only the size is fitted
    np.testing.assert_allclose(model.predict(inputs), targets)


def test_momentum_and_ar_read_the_tick_inputs():
    lagged = np.random.default_rng(4).normal(size=(50, 3))
    inputs = TickInputs(lagged)
    np.testing.assert_allclose(Momentum().predict(inputs), lagged[:, -1])
    targets = lagged @ [0.1, -0.2, 0.3] + 0.05
    ar = LinearAR()
    ar.fit(inputs, targets)
    np.testing.assert_allclose(ar.coefficients, [0.1, -0.2, 0.3], atol=1e-9)


def test_bad_settings_and_splits_are_named(store):
    with pytest.raises(ConfigError, match="durations with a unit like 10s"):
        parse_horizons("10,60s")
    with pytest.raises(ConfigError, match=r"durations with a unit like 10s,60s,1min; got '10xyz'"):
        parse_horizons("10xyz,60s")  # an unknown unit: a one-line error, not pandas' ValueError
    with pytest.raises(ConfigError, match="distinct"):
        parse_horizons("60s,1min")
    with pytest.raises(ConfigError, match="lags must be a positive whole number"):
        TicksConfig(TRAIN_UNTIL, VAL_UNTIL, lags=0)
    with pytest.raises(DataValidationError, match=r"series 'a' has no row at or after val_until '2024-02-01': it spans 2024-01-01"):
        evaluate_ticks(store, BASELINES, TicksConfig(TRAIN_UNTIL, "2024-02-01"))
    with pytest.raises(DataValidationError, match=r"series 'a' has no row before train_until '2023-01-01'"):
        evaluate_ticks(store, BASELINES, TicksConfig("2023-01-01", "2024-01-04"))
    with pytest.raises(DataValidationError, match=r"no series 'x'"):
        evaluate_ticks(store, BASELINES, TicksConfig(TRAIN_UNTIL, VAL_UNTIL, series=["x"]))
    with pytest.raises(DataValidationError, match=r"series 'a': no test decision ticks for horizon 2h"):
        evaluate_ticks(store, BASELINES, TicksConfig(TRAIN_UNTIL, VAL_UNTIL, horizons=("2h",)))
