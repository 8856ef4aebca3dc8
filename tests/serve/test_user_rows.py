"""StreamingPredictor takes rows the way users hold them (pandas, dict, Arrow) by column name, and
routes rows of mixed instruments to their own state."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from longstm.errors import DataValidationError
from longstm.serve import StreamingPredictor
from tests.serve.run_fixture import make_run

TARGETS = ["OT+1", "HUFL+1", "OT+2", "HUFL+2"]
TIME_PIPELINE = [{"kind": "raw"}, {"kind": "time_of_day"}]


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("plain_run"), rows=48)


@pytest.fixture(scope="module")
def timed_run(tmp_path_factory):
    """A run whose pipeline reads the time of day of the CSV's `date` column."""
    return make_run(
        tmp_path_factory.mktemp("timed_run"), rows=48, pipeline=TIME_PIPELINE, features=("HUFL", "MUFL", "OT", "tod_sin", "tod_cos")
    )


def _csv(run):
    return pd.read_csv(run.parent / "etth1.csv")


def _stamps(frame):
    return pd.to_datetime(frame["date"]).to_numpy("datetime64[ns]")


def test_warm_up_on_the_csv_the_run_trained_on_equals_the_trainers_predict(timed_run):
    from longstm.train.run import predict_run

    frame = _csv(timed_run)  # its `date` column was a bare "could not convert string to float" before
    expected = predict_run(timed_run, timed_run.parent / "etth1.csv")
    got = StreamingPredictor.from_run(timed_run).warm_up(frame)
    assert got.shape == (len(frame), 4)
    np.testing.assert_allclose(got[expected["row"].to_numpy()], expected[TARGETS].to_numpy(), rtol=1e-5, atol=1e-4)


def test_timezone_aware_timestamps_are_converted_to_utc(timed_run):
    frame = _csv(timed_run)
    utc = StreamingPredictor.from_run(timed_run).warm_up(frame)
    local = frame.assign(date=pd.to_datetime(frame["date"]).dt.tz_localize("UTC").dt.tz_convert("Asia/Kolkata").astype(str))
    assert local["date"][0].endswith("+05:30")
    np.testing.assert_allclose(StreamingPredictor.from_run(timed_run).warm_up(local), utc, atol=1e-6)
    # A DatetimeIndex (aware) does as well as a column, and an Arrow table keeps its zone.
    indexed = frame.drop(columns="date").set_index(pd.DatetimeIndex(pd.to_datetime(local["date"]), name="when"))
    np.testing.assert_allclose(StreamingPredictor.from_run(timed_run).warm_up(indexed), utc, atol=1e-6)
    aware = frame.assign(date=pd.to_datetime(local["date"]))
    np.testing.assert_allclose(StreamingPredictor.from_run(timed_run).warm_up(pa.Table.from_pandas(aware)), utc, atol=1e-6)
    # Dict rows (read without pandas): a text stamp with its offset, and an aware Timestamp.
    predictor = StreamingPredictor.from_run(timed_run)
    texts = [predictor.update(row) for row in local.iloc[:3].to_dict("records")]
    stamps = [predictor.update(row) for row in aware.iloc[3:6].to_dict("records")]
    np.testing.assert_allclose(np.stack(texts + stamps), utc[:6], atol=1e-6)


@pytest.mark.parametrize("engine", ["numpy", "tf"])
def test_pandas_dict_and_arrow_rows_equal_numpy_rows(plain_run, engine):
    frame = _csv(plain_run)
    reference = StreamingPredictor.from_run(plain_run, engine=engine)
    columns = reference.column_names
    expected = reference.update_many(frame[columns].to_numpy())
    predictor = StreamingPredictor.from_run(plain_run, engine=engine)
    shuffled = frame[["OT", "date"] + columns[:-1][::-1]].assign(extra="ignored")  # order free, extras ignored
    got = [predictor.warm_up(shuffled.iloc[:10])]
    got.append(predictor.update_many(pa.RecordBatch.from_pandas(shuffled.iloc[10:20])))
    got.append(predictor.update_many({name: shuffled[name].to_numpy()[20:30] for name in shuffled.columns}))
    got.append(np.stack([predictor.update(shuffled.iloc[30])]))  # a pandas row (dtype object: it holds the date)
    got.append(np.stack([predictor.update(shuffled.iloc[31].to_dict())]))  # a dict of scalars
    got.append(np.stack([predictor.update(shuffled.iloc[32:33])]))  # a one-row DataFrame is one tick
    got.append(predictor.update_many(pa.Table.from_pandas(shuffled.iloc[33:])))
    np.testing.assert_allclose(np.concatenate(got), expected, atol=1e-5)
    assert list(predictor.ticks) == [len(frame)]


def test_bad_rows_are_one_clear_error_and_leave_the_state_unchanged(plain_run, timed_run):
    frame = _csv(plain_run)
    predictor = StreamingPredictor.from_run(plain_run)
    predictor.warm_up(frame.iloc[:5])
    with pytest.raises(DataValidationError, match=r"xs: the rows lack the column\(s\) \['OT'\]; the run reads \['HUFL', .*'OT'\]; got \['date'"):
        predictor.update_many(frame.drop(columns="OT"))
    text = frame.assign(MULL=frame["MULL"].astype(object))
    text.loc[7, "MULL"] = "n/a"
    with pytest.raises(DataValidationError, match=r"xs: column 'MULL' row 7: expected a number, got 'n/a'"):
        predictor.update_many(text)
    with pytest.raises(DataValidationError, match=r"x_t: column 'OT' row 0: expected a number, got '2016"):
        predictor.update(frame.iloc[5].to_dict() | {"OT": "2016-07-01 00:00:00"})
    with pytest.raises(DataValidationError, match=r"scalars or sequences of one length; got lengths \{'HUFL': 2, 'OT': 3\}"):
        predictor.update_many({"HUFL": [1.0, 2.0], "OT": [1.0, 2.0, 3.0]})
    with pytest.raises(DataValidationError, match=r"x_t: update takes one row; got 2 \(use update_many\)"):
        predictor.update(frame.iloc[5:7])
    assert list(predictor.ticks) == [5]
    np.testing.assert_array_equal(
        predictor.update(frame.iloc[5]), StreamingPredictor.from_run(plain_run).update_many(frame.iloc[:6])[-1]
    )
    timed = StreamingPredictor.from_run(timed_run)
    with pytest.raises(DataValidationError, match=r"needs timestamps, and the rows have none: expected a column named one of \['date'"):
        timed.warm_up(frame.drop(columns="date"))
    with pytest.raises(DataValidationError, match=r"column 'date' has 1 values that are not timestamps, first at row 3: 'soon'"):
        timed.warm_up(frame.assign(date=frame["date"].where(frame.index != 3, "soon")))
    nameless = StreamingPredictor(
        predictor.model, scaler=predictor.scaler, feature_columns=predictor.feature_columns.tolist(), target_columns=[6, 0], horizon=2
    )
    with pytest.raises(DataValidationError, match="does not know its column names, so it cannot match the columns of a DataFrame"):
        nameless.update_many(frame)


def _one_instrument_each(run, frames, engine):
    """What separate one-instrument predictors give on each instrument's own rows (timestamps too)."""
    outputs = []
    for frame in frames:
        predictor = StreamingPredictor.from_run(run, engine=engine)
        outputs.append(predictor.update_many(frame[predictor.column_names].to_numpy(), _stamps(frame)))
    return outputs


@pytest.mark.parametrize("engine", ["numpy", "tf"])
def test_rows_of_mixed_instruments_are_routed_to_their_own_state(timed_run, engine):
    frame = _csv(timed_run)
    own = {"eu": frame.iloc[:30], "nz": frame.iloc[10:48].reset_index(drop=True), "jp": frame.iloc[40:44]}
    expected = _one_instrument_each(timed_run, own.values(), engine)
    # Interleaved in time order as a feed delivers them; uneven lengths, so lanes fall idle.
    mixed = pd.concat([part.assign(series=name, order=np.arange(len(part)) * (i + 1.5)) for i, (name, part) in enumerate(own.items())])
    mixed = mixed.sort_values("order", kind="stable").reset_index(drop=True)
    predictor = StreamingPredictor.from_run(timed_run, n_instruments=3, engine=engine, instruments=["nz", "eu", "jp"])
    half = len(mixed) // 2
    got = np.concatenate([predictor.update_many(mixed.iloc[:half]), predictor.warm_up(pa.Table.from_pandas(mixed.iloc[half:]))])
    for name, want in zip(own, expected):
        np.testing.assert_allclose(got[(mixed["series"] == name).to_numpy()], want, atol=1e-5, err_msg=name)
    assert list(predictor.ticks) == [38, 30, 4]
    # One more row of one instrument (a dict) continues only that instrument.
    row = frame.iloc[44].to_dict() | {"series": "jp"}
    alone = StreamingPredictor.from_run(timed_run, engine=engine).update_many(frame.iloc[40:45])[-1]
    np.testing.assert_allclose(predictor.update(row), alone, atol=1e-5)
    assert list(predictor.ticks) == [38, 30, 5]


def test_routing_by_a_named_column_and_its_errors(plain_run):
    frame = _csv(plain_run).iloc[:12]
    predictor = StreamingPredictor.from_run(plain_run, n_instruments=2)  # ids default to the lanes 0, 1
    tagged = frame.assign(symbol=[0, 1] * 6)
    got = predictor.update_many(tagged, instrument="symbol")
    expected = StreamingPredictor.from_run(plain_run).update_many(frame.iloc[::2])
    np.testing.assert_allclose(got[::2], expected, atol=1e-5)
    with pytest.raises(DataValidationError, match=r"xs: row 3: instrument 'EURUSD' is not one of this predictor's instruments \[0, 1\]"):
        predictor.update_many(tagged.assign(symbol=[0, 1, 1, "EURUSD"] + [0] * 8), instrument="symbol")
    with pytest.raises(DataValidationError, match=r"no instrument column 'ticker'; got columns"):
        predictor.update_many(tagged, instrument="ticker")
    nan = tagged.assign(OT=frame["OT"].where(frame.index != 4))
    with pytest.raises(DataValidationError, match=r"xs: row 4, column 'OT': expected a finite number, got nan; the state was not changed"):
        predictor.update_many(nan, instrument="symbol")
    with pytest.raises(DataValidationError, match=r"xs: 12 rows for 2 instruments: name their instrument column"):
        predictor.update_many(frame)
    assert list(predictor.ticks) == [6, 6]
    # Without ids, a table of one row per instrument is one tick of all of them, in lane order.
    twin = StreamingPredictor.from_run(plain_run, n_instruments=2)
    twin.state = predictor.state
    np.testing.assert_allclose(
        predictor.update(frame.iloc[:2]), twin.update(frame.iloc[:2][predictor.column_names].to_numpy()), atol=1e-6
    )


def test_follow_passes_the_parsed_timestamps_to_a_run_with_time_features(timed_run, tmp_path):
    from longstm.serve import follow_stream

    frame = _csv(timed_run).iloc[:20]
    lines = frame.to_csv(index=False).splitlines()
    lines.insert(6, lines[6].replace(lines[6].split(",")[0], "not a time"))  # data line 6 (file line 7) is skipped
    source = tmp_path / "live.csv"
    source.write_text("\n".join(lines) + "\n")
    predictor = StreamingPredictor.from_run(timed_run)
    out, skipped = io.StringIO(), []
    report = follow_stream(predictor, source, out, target_names=TARGETS, idle_timeout=0, report_skip=skipped.append)
    assert report.forecasts == 20 and skipped == [f"{source} line 7: column 'date': expected a timestamp, got 'not a time'"]
    written = pd.read_csv(io.StringIO(out.getvalue()))
    expected = StreamingPredictor.from_run(timed_run).update_many(frame[predictor.column_names].to_numpy(), _stamps(frame))
    np.testing.assert_allclose(written[TARGETS].to_numpy(), expected, rtol=1e-6, atol=1e-5)
    source.write_text("\n".join([lines[0].replace("date", "when")] + lines[1:3]) + "\n")
    predictor = StreamingPredictor.from_run(timed_run)
    report = follow_stream(predictor, source, io.StringIO(), target_names=TARGETS, idle_timeout=0, report_skip=skipped.append)
    assert report.forecasts == 2  # the first other column is taken when none is named like a timestamp
    source.write_text(",".join(predictor.column_names) + "\n")
    with pytest.raises(DataValidationError, match=r"needs timestamps, and header \[.*\] has no timestamp column"):
        follow_stream(predictor, source, io.StringIO(), target_names=TARGETS, idle_timeout=0)
