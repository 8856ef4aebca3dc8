"""`longstm predict --follow`: the follow mode reached from `predict`."""

import numpy as np
import pandas as pd

from longstm.cli import main
from longstm.serve import StreamingPredictor
from tests.serve.run_fixture import make_run


def test_predict_follow_forecasts_every_row_from_the_carried_state(tmp_path):
    run = make_run(tmp_path)
    rows = pd.read_csv(tmp_path / "etth1.csv", nrows=25)
    rows.to_csv(tmp_path / "live.csv", index=False)
    out = tmp_path / "forecasts.csv"
    code = main(["predict", str(run), "--data", str(tmp_path / "live.csv"), "--follow", "--idle-timeout", "0.3", "--out", str(out)])
    assert code == 0
    frame = pd.read_csv(out)
    predictor = StreamingPredictor.from_run(run)
    expected = predictor.update_many(rows[predictor.column_names].to_numpy())
    assert list(frame["row"]) == list(range(25))
    np.testing.assert_allclose(frame[["OT+1", "HUFL+1", "OT+2", "HUFL+2"]].to_numpy(), expected.reshape(25, -1), rtol=1e-5, atol=1e-4)
