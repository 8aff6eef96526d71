import numpy as np
import pytest

from cahp_core.errors import CAHPError
from cahp_core.specs import format_head_spec, keep_to_removed, parse_head_spec, removed_to_keep


def test_parse_and_format_round_trip():
    spec = parse_head_spec(" 0:0,1,2 ; 3:5 ", 6, 12)
    assert spec == {0: [0, 1, 2], 3: [5]}
    assert format_head_spec(spec) == "0:0,1,2;3:5"
    assert parse_head_spec("2:*", 6, 4) == {2: [0, 1, 2, 3]}
    assert parse_head_spec("", 6, 12) == {}


def test_keep_conversions():
    keep = removed_to_keep({0: [1], 1: [0, 1]}, 2, 2)
    assert keep.tolist() == [[True, False], [False, False]]
    assert keep_to_removed(keep) == {0: [1], 1: [0, 1]}
    assert keep_to_removed(np.ones((2, 2), dtype=bool)) == {}


@pytest.mark.parametrize("spec", ["0", "x:1", "0:a", "6:0", "0:12", "0:1;0:2", "0:1,1", "0:"])
def test_bad_specs(spec):
    with pytest.raises(CAHPError):
        parse_head_spec(spec, 6, 12)
