import numpy as np
import pytest

from cahp_core.errors import CAHPError
from cahp_core.method.specs import (
    format_head_spec,
    keep_from_dict,
    keep_to_removed,
    parse_head_spec,
    removed_to_keep,
)


def test_parse_and_format_round_trip():
    spec = parse_head_spec(" 0:0,1,2 ; 3: 5 ", 6, 12)
    assert spec == {0: [0, 1, 2], 3: [5]}
    assert format_head_spec(spec) == "0:0,1,2;3:5"
    assert parse_head_spec("2:*", 6, 4) == {2: [0, 1, 2, 3]}
    assert parse_head_spec("", 6, 12) == {}
    assert parse_head_spec("  ;", 6, 12) == {}
    assert parse_head_spec("1:3,0;", 2, 4) == {1: [0, 3]}


def test_format_sorts_and_skips_empty_layers():
    assert format_head_spec({3: [5, 1], 0: [2], 1: []}) == "0:2;3:1,5"
    assert format_head_spec({"2": [1]}) == "2:1"
    assert format_head_spec({}) == ""


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("0", "needs heads"),
        ("0:", "needs heads"),
        ("x:1", "malformed"),
        ("0:a", "malformed"),
        ("0:1,,2", "malformed"),
        ("0:*,1", "malformed"),
        ("0:1:2", "malformed"),
        ("6:0", "layer 6 in head spec is out of range 0..5"),
        ("-1:0", "layer -1 in head spec is out of range"),
        ("0:12", r"head\(s\) \[12\] of layer 0 in head spec out of range 0..11"),
        ("0:1;0:2", "layer 0 twice"),
        ("0:1,1", "a head of layer 0 twice"),
    ],
)
def test_bad_specs(spec, message):
    with pytest.raises(CAHPError, match=message):
        parse_head_spec(spec, 6, 12)


def test_non_text_spec_is_a_clear_error():
    with pytest.raises(CAHPError, match="must be text"):
        parse_head_spec(None, 6, 12)  # type: ignore[arg-type]


def test_keep_conversions():
    keep = removed_to_keep({0: [1], 1: [0, 1]}, 2, 2)
    assert keep.dtype == bool and keep.tolist() == [[True, False], [False, False]]
    assert keep_to_removed(keep) == {0: [1], 1: [0, 1]}
    assert keep_to_removed(np.ones((2, 2), dtype=bool)) == {}
    assert keep_from_dict({0: [0], 1: []}, 2, 2).tolist() == keep.tolist()
    assert keep_from_dict({"1": [1]}, 2, 2).tolist() == [[False, False], [False, True]]  # JSON
    assert removed_to_keep({"0": [0]}, 1, 2).tolist() == [[False, True]]


def test_round_trips_on_random_maps():
    rng = np.random.default_rng(0)
    for _ in range(20):
        keep = rng.random((4, 6)) < 0.5
        kept = {layer: np.flatnonzero(row).tolist() for layer, row in enumerate(keep)}
        assert np.array_equal(keep_from_dict(kept, 4, 6), keep)
        assert np.array_equal(removed_to_keep(keep_to_removed(keep), 4, 6), keep)
        removed = keep_to_removed(keep)
        assert parse_head_spec(format_head_spec(removed), 4, 6) == removed


@pytest.mark.parametrize("convert", [removed_to_keep, keep_from_dict])
def test_dict_conversions_check_ranges(convert):
    with pytest.raises(CAHPError, match="layer 2 in head map is out of range"):
        convert({2: [0]}, 2, 4)
    with pytest.raises(CAHPError, match="out of range 0..3"):
        convert({0: [4]}, 2, 4)
    with pytest.raises(CAHPError, match="out of range"):
        convert({-1: [0]}, 2, 4)  # would silently wrap round in numpy


def test_keep_must_be_two_dimensional():
    with pytest.raises(CAHPError, match="2-D"):
        keep_to_removed(np.ones(4, dtype=bool))
    assert keep_to_removed([[1, 0]]) == {0: [1]}  # lists (e.g. from JSON) are accepted
