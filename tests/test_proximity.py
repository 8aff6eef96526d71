import numpy as np
import pandas as pd
import pytest

from cahp_core.errors import CAHPError
from cahp_core.method.proximity import compare_depths, depth_stats


def _map(layers=6, heads=12, **rows):
    keep = np.zeros((layers, heads), dtype=bool)
    for layer, count in rows.items():
        keep[int(layer[1:]), :count] = True
    return keep


def test_everything_in_the_last_layer():
    stats = depth_stats(_map(l5=4))
    assert stats["mean_depth"] == 1 and stats["last_third_share"] == 1
    assert stats["heads_kept"] == 4 and stats["kept_per_layer"] == [0, 0, 0, 0, 0, 4]
    assert stats["uniform_distance"] == pytest.approx(5 / 6)  # TV from uniform: 1 - 1/6


def test_everything_in_the_first_layer():
    stats = depth_stats(_map(l0=3))
    assert stats["mean_depth"] == 0 and stats["last_third_share"] == 0


def test_uniform_map():
    keep = np.zeros((6, 12), dtype=bool)
    keep[:, :2] = True
    stats = depth_stats(keep)
    assert stats["uniform_distance"] == pytest.approx(0)
    assert stats["mean_depth"] == pytest.approx(0.5)
    assert stats["last_third_share"] == pytest.approx(1 / 3)
    assert stats["kept_per_layer"] == [2] * 6 and stats["heads_kept"] == 12


def test_known_mixed_values():
    # 4 layers: depths 0, 1/3, 2/3, 1; last ceil(4/3) = 2 layers are the "last third"
    stats = depth_stats(_map(layers=4, heads=4, l0=1, l3=3))
    assert stats["mean_depth"] == pytest.approx((0 + 3 * 1) / 4)
    assert stats["last_third_share"] == pytest.approx(3 / 4)
    # shares (1/4, 0, 0, 3/4) vs 1/4 each: TV = 0.5 * (0 + 1/4 + 1/4 + 1/2) = 1/2
    assert stats["uniform_distance"] == pytest.approx(0.5)
    assert isinstance(stats["kept_per_layer"][0], int) and isinstance(stats["heads_kept"], int)


def test_empty_map_raises():
    with pytest.raises(CAHPError, match="keeps no head"):
        depth_stats(np.zeros((6, 12), dtype=bool))
    with pytest.raises(CAHPError, match="2-D"):
        depth_stats(np.ones(5, dtype=bool))


def test_compare_depths_one_row_per_method():
    table = compare_depths({"cahp": _map(l0=1, l5=1), "last": _map(l5=4)})
    assert isinstance(table, pd.DataFrame)
    assert list(table["method"]) == ["cahp", "last"]
    assert table.set_index("method").loc["last", "mean_depth"] == 1
    assert table.set_index("method").loc["cahp", "mean_depth"] == pytest.approx(0.5)
    assert {"heads_kept", "last_third_share", "uniform_distance"} <= set(table.columns)
