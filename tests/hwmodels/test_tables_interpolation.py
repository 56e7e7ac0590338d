"""Log-space interpolation: exact at grid points, monotone between them, roofline-scaled outside."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from servesim.hwmodels.tables.interpolate import Curve, Surface


def linear_roofline(x):
    return 1e-6 * (np.asarray(x, dtype=float) + 10)


grids = st.lists(st.integers(1, 100_000), min_size=2, max_size=12, unique=True).map(sorted)


@settings(max_examples=60)
@given(grids, st.data())
def test_curve_is_exact_at_grid_points_and_monotone_between(sizes, data):
    increments = data.draw(st.lists(st.floats(0, 1e-3), min_size=len(sizes), max_size=len(sizes)))
    times = 1e-6 + np.cumsum(increments)
    curve = Curve.from_points(np.array(sizes), times)
    assert np.allclose(curve.evaluate(np.array(sizes), linear_roofline)[0], times, rtol=1e-12)
    xs = np.linspace(sizes[0], sizes[-1], 200)
    values, outside = curve.evaluate(xs, linear_roofline)
    assert not outside
    assert np.all(np.diff(values) >= -1e-15 * values[:-1])


def test_repeated_sizes_are_merged_by_median():
    curve = Curve.from_points(np.array([4, 4, 4, 8]), np.array([1.0, 2.0, 9.0, 4.0]))
    assert list(curve.sizes) == [4, 8] and list(curve.times) == [2.0, 4.0]


def test_outside_the_grid_the_edge_is_scaled_by_the_roofline_ratio():
    curve = Curve.from_points(np.array([1, 10, 100]), np.array([1e-5, 2e-5, 8e-5]))
    values, outside = curve.evaluate(np.array([1000.0]), linear_roofline)
    assert outside
    assert np.isclose(values[0], 8e-5 * linear_roofline(1000) / linear_roofline(100))
    assert not curve.evaluate(np.array([50.0]), linear_roofline)[1]


def test_surface_is_exact_at_grid_points_and_blends_rows_in_log_space():
    xs, ys = np.array([1, 1, 8, 8]), np.array([0, 64, 0, 64])
    times = np.array([1e-5, 2e-5, 4e-5, 8e-5])
    surface = Surface.from_points(xs, ys, times)
    roof = lambda x, y: np.full(np.shape(y), 1e-6 * x)  # noqa: E731
    for x, y, t in zip(xs, ys, times, strict=True):
        assert np.isclose(surface.evaluate(float(x), np.array([float(y)]), roof)[0][0], t, rtol=1e-12)
        assert np.isclose(surface.inside_scalar(float(x), float(y)), t, rtol=1e-12)
    middle = surface.evaluate(3.0, np.array([0.0, 32.0, 64.0]), roof)[0]
    assert np.all(np.diff(middle) > 0) and 1e-5 < middle[0] < 4e-5
    assert np.isclose(surface.inside_scalar(3.0, 32.0), middle[1], rtol=1e-12)
    scaled, outside = surface.evaluate(16.0, np.array([0.0]), roof)
    assert outside and np.isclose(scaled[0], 4e-5 * 2)
    assert surface.inside_scalar(16.0, 0.0) is None


def test_a_sparse_surface_names_the_span_measured_near_each_row():
    """Rows cover different second-axis spans (large batches are measured at short contexts only)."""
    xs = np.array([1, 1, 1, 64, 64, 256, 256])
    ys = np.array([16, 1024, 65536, 16, 4096, 16, 512])
    surface = Surface.from_points(xs, ys, np.linspace(1e-5, 7e-5, 7))
    assert surface.y_range == (16, 65536)
    assert surface.y_range_at(1) == (16, 65536)
    assert surface.y_range_at(64) == (16, 4096)
    assert surface.y_range_at(130) == (16, 512)  # between rows: the span both neighbours measured
    assert surface.y_range_at(300) is None
    assert surface.outside(130, np.array([400, 1027])).tolist() == [False, True]
