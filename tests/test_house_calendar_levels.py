"""One check of a calendar level's boundary keys (longstm/data/calendar_levels.py): the model
and the `calendar_boundaries` pipeline kind refuse the same mistakes with the same words."""

import pytest

from longstm.data.features import FeaturePipeline
from longstm.errors import ConfigError
from longstm.models.calendar import CalendarLSTM

BAD_LEVELS = [
    ({"every_events": 0}, "levels[0].every_events must be a positive integer; got 0"),
    ({"every": "1W"}, "levels[0].every must be a fixed positive span (a pandas offset like '1s', '10s', '1min', '1D'); got '1W'"),
    ({"every": "1s", "every_events": 2}, "levels[0] needs exactly one of every, every_events, column; got every, every_events"),
    ({"every_events": 2, "tz": "UTC"}, "levels[0].tz applies to every = \"<span>\" only; this level has every_events"),
    ({"every": "1D", "tz": "America"}, "levels[0].tz must be an IANA time zone like 'America/New_York'; got 'America'"),
    ({"column": ""}, "levels[0].column must be a column name; got ''"),
    ({"every": "1s", "stride": 2}, "levels[0] has unknown key(s) stride; a level has"),
]


@pytest.mark.parametrize("level, expected", BAD_LEVELS)
def test_model_and_pipeline_refuse_a_bad_level_with_the_same_message(level, expected):
    with pytest.raises(ConfigError) as model_error:
        CalendarLSTM([{"units": 4, **level}, {"units": 4}])
    with pytest.raises(ConfigError) as data_error:
        FeaturePipeline([{"kind": "calendar_boundaries", "levels": [level]}], ["price", "flag"])
    model_message, data_message = str(model_error.value), str(data_error.value)
    assert model_message.replace("`", "").startswith(f"CalendarLSTM argument {expected}")
    assert data_message.startswith(f"pipeline[0] (calendar_boundaries): {expected}")
    assert "\n" not in model_message and "\n" not in data_message


def test_a_good_level_reads_the_same_in_both():
    level = {"every": "1D", "tz": "America/New_York"}
    model = CalendarLSTM([{"units": 4, **level}, {"units": 4}])
    assert model.boundaries == (level,)
    pipeline = FeaturePipeline([{"kind": "calendar_boundaries", "levels": list(model.boundaries)}], ["price"])
    assert pipeline.output_columns == ["boundary_0"]
