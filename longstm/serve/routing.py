"""The part of `StreamingPredictor` that takes rows the way users hold them, and routes them by instrument.

`RowsByName` is a mixin of `StreamingPredictor` (kept here so each file holds one idea): a
pandas/dict/Arrow container is read by column name (`longstm.serve.rows.read_rows`); rows
with an instrument id go to their instrument's lane. Lanes are independent, so the k-th row
of every instrument is stepped together in one model call ("round" k), and the lanes with no
row in a round keep their model and pipeline state. NumPy rows never come here.
A run on a store's panel streams one lane per series, each with its own series' scaler
(`_from_panel`).
"""

from __future__ import annotations

import numpy as np

from longstm.data.features import as_nanoseconds
from longstm.errors import ConfigError, DataValidationError
from longstm.serve.rows import read_rows


def _states():
    from longstm.serve import state  # TensorFlow (keras.tree): imported when a routed row first runs

    return state


class RowsByName:
    """Mixin: `update`/`update_many` of pandas, dict and Arrow rows, and rows of mixed instruments."""

    @classmethod
    def _from_panel(cls, model, meta, pipeline, *, n_instruments, engine, instruments):
        """A predictor of a run on a store's panel: one lane per series (its name the id), each lane
        scaled with its series' train-only statistics (the scaler data.json keeps per series)."""
        series = list(meta["series"])
        instruments = series if instruments is None else list(instruments)
        unknown = [name for name in instruments if name not in series]
        if unknown:
            raise ConfigError(f"instruments {unknown} are not series of this run; it was trained on {series}")
        names, features, targets = meta["columns"], list(meta["feature_columns"]), list(meta["target_columns"])
        predictor = cls(
            model,
            n_instruments=len(instruments) if n_instruments is None else n_instruments,
            feature_pipeline=pipeline,
            feature_columns=features if pipeline is not None else None,
            engine=engine,
            column_names=pipeline.input_columns if pipeline is not None else [names[i] for i in features],
            instruments=instruments,
        )
        scalers = meta.get("scaler")
        if scalers is not None:  # (lanes, columns): broadcast over the ticks axis by `_scaled` and `_outputs`
            means = np.array([scalers[name]["mean"] for name in instruments], np.float64)
            scales = np.array([scalers[name]["scale"] for name in instruments], np.float64)
            inputs = list(range(pipeline.n_outputs)) if pipeline is not None else features
            predictor._input_mean, predictor._input_scale = means[:, inputs], scales[:, inputs]
            predictor._output_mean, predictor._output_scale = means[:, targets], scales[:, targets]
        predictor.target_columns = targets
        predictor._panel_meta = {
            "series": instruments,
            "scaler": None if scalers is None else {name: scalers[name] for name in instruments},
            "columns": names,
        }
        return predictor

    def update_instrument(self, instrument, x_t, timestamp=None) -> np.ndarray:
        """One NumPy row `(columns,)` of one instrument (its id) -> its `(outputs,)`; the other
        instruments' states are untouched. `timestamp` is needed only by a pipeline with time features."""
        row = np.asarray(x_t, np.float64)
        if row.shape != (self.n_columns,):
            raise DataValidationError(f"x_t must have shape (columns,) = ({self.n_columns},); got {row.shape}")
        stamps = None if timestamp is None else np.atleast_1d(np.asarray(timestamp))
        return self._update_routed(row[None], stamps, np.array([instrument], object), "x_t")[0]

    def _update_table(self, data, timestamps, instrument: str | None, what: str, many: bool) -> np.ndarray:
        """A pandas/dict/Arrow container matched by column name; routed by instrument when it has ids."""
        if self.column_names is None:
            raise DataValidationError(
                f"{what}: this predictor does not know its column names, so it cannot match the columns of a "
                f"{type(data).__name__}; build it with column_names= (from_run does) or pass a NumPy array"
            )
        needs = self.feature_pipeline is not None and self.feature_pipeline.needs_timestamps and timestamps is None
        required = None if self.feature_pipeline is None else self.feature_pipeline.required_columns
        rows = read_rows(
            data, self.column_names, source=what, needs_timestamps=needs, instrument=instrument,
            route=self.n_instruments > 1, required=required,
        )
        stamps = rows.timestamps if timestamps is None else np.atleast_1d(np.asarray(timestamps))
        if rows.instruments is not None:
            y = self._update_routed(rows.values, stamps, rows.instruments, what)
            return y[0] if rows.single else y
        if self.n_instruments == 1:
            if many:
                return self.update_many(rows.values, stamps)
            if len(rows.values) != 1:
                raise DataValidationError(f"{what}: update takes one row; got {len(rows.values)} (use update_many)")
            return self.update(rows.values[0], stamps)
        if many or len(rows.values) != self.n_instruments:
            raise DataValidationError(
                f"{what}: {len(rows.values)} rows for {self.n_instruments} instruments: name their instrument column "
                f"(instrument=, or a 'series' column of ids {self.instruments[:8]}), or pass one row per instrument to update"
            )
        return self.update(rows.values, stamps)

    def _update_routed(self, values: np.ndarray, stamps, ids: np.ndarray, what: str) -> np.ndarray:
        """Rows of mixed instruments, in order -> `(rows, outputs)`, each row stepping only its instrument.

        Lanes are independent, so a row's place among other instruments' rows does not matter:
        the k-th row of every instrument is stepped together (one model call per round), and the
        lanes with no row in a round keep their state.
        """
        lanes = self._lanes(ids, what)
        bad = np.argwhere(~np.isfinite(values))
        if len(bad):
            row, column = bad[0]
            raise DataValidationError(
                f"{what}: row {row}, column {self.column_names[column]!r}: expected a finite number, got "
                f"{values[row, column]}; the state was not changed"
            )
        if len(values) == 0:
            return np.zeros((0, self._n_outputs()), np.float32)
        rounds = np.zeros(len(lanes), np.intp)  # the k-th row of its instrument steps in round k
        seen = np.zeros(self.n_instruments, np.intp)
        for row, lane in enumerate(lanes):
            rounds[row] = seen[lane]
            seen[lane] += 1
        grid = np.zeros((seen.max(), self.n_instruments, values.shape[1]))
        grid[rounds, lanes] = values
        active = np.zeros(grid.shape[:2], bool)
        active[rounds, lanes] = True
        features, pipeline_state = grid, None
        if self.feature_pipeline is not None:
            stamp_grid = None
            if stamps is not None:
                stamp_grid = np.zeros(grid.shape[:2], np.int64)
                stamp_grid[rounds, lanes] = as_nanoseconds(stamps)
            features, pipeline_state = self._routed_features(grid, stamp_grid, active)
        scaled = self._scaled(features)
        state, outputs = self._model_state, []
        for tick, on in zip(scaled, active):
            if on.all():
                y, state = self._engine.step(tick, state)
            elif self.engine == "numpy":  # any batch size: step only the lanes with a row
                y, state = self._step_lanes(tick, state, np.flatnonzero(on))
            else:  # a compiled step has a fixed batch: step all lanes, keep the idle lanes' state
                y, new_state = self._engine.step(tick, state)
                state = self._engine.to_engine(_states().select_rows(on, new_state, state))
            outputs.append(y)
        self._model_state, self._pipeline_state = state, pipeline_state
        self.ticks += seen
        return self._outputs(np.stack(outputs))[rounds, lanes]

    def _routed_features(self, grid: np.ndarray, stamps, active: np.ndarray):
        """The pipeline over rounds, each round stepping only its active lanes' pipeline state."""
        pipeline = self.feature_pipeline
        state = {key: array.copy() for key, array in self._pipeline_state.items()}
        features = np.zeros(grid.shape[:2] + (pipeline.n_outputs,))
        for tick, on in enumerate(active):
            lanes = np.flatnonzero(on)
            lane_state = {key: array[lanes] for key, array in state.items()}
            outputs, lane_state = pipeline.step(grid[tick, lanes], lane_state, None if stamps is None else stamps[tick, lanes])
            features[tick, lanes] = outputs
            for key, array in lane_state.items():
                state[key][lanes] = array
        self._check_features(features[active])
        return features, state

    def _step_lanes(self, tick: np.ndarray, state, lanes: np.ndarray):
        """The NumPy engine on `lanes` only: `(outputs (n_instruments, ...), state)`, other lanes' outputs 0."""
        y, lane_state = self._engine.step(tick[lanes], _states().take_rows(state, lanes))
        outputs = np.zeros((len(tick),) + y.shape[1:], y.dtype)
        outputs[lanes] = y
        return outputs, _states().put_rows(state, lanes, lane_state)

    def _lanes(self, ids: np.ndarray, what: str) -> np.ndarray:
        lanes = np.empty(len(ids), np.intp)
        for row, instrument in enumerate(ids):
            lane = self._lane_of.get(instrument)
            if lane is None:
                raise DataValidationError(
                    f"{what}: row {row}: instrument {instrument!r} is not one of this predictor's instruments "
                    f"{self.instruments}; the state was not changed"
                )
            lanes[row] = lane
        return lanes
