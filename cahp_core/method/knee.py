"""Knee of a marginal-performance curve after a polynomial fit of user-chosen degree.

Default (``shape="concave"``), as the authors call it (yanivlivert/cahp
``cahp/graph/clustering.py``)::

    KneeLocator(k, quality, curve="concave", direction="increasing",
                interp_method="polynomial", polynomial_degree=degree)

kneed (Satopaa et al., 2011) fits the polynomial itself and finds the knee of the fitted
curve; the fitted values drawn and recorded are kneed's own. Where kneed finds no knee at
that degree, the knee falls back to the point of the fitted curve farthest from its chord
(ties and flat fits: the smallest x), and ``fallback`` and ``reason`` say so ("no knee at
degree d"). kneed reports the curve's first point when the fit has no interior knee (its
local-maximum search includes the ends; the authors' code would then keep k=2 clusters):
that counts as no knee here too. With the concave shape the fallback only looks at points above
the chord while there are any (a dip of a noisy curve is no knee). ``shape="auto"`` (not the paper's) guesses concave/convex and increasing /
decreasing from the fit first. Degree 1 is refused: a straight line has no knee.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from kneed import KneeLocator
from numpy.polynomial import Polynomial
from numpy.typing import ArrayLike

from cahp_core.choices import KNEE_SHAPES, check_choice
from cahp_core.errors import CAHPError


@dataclass(frozen=True)
class KneeResult:
    """The knee (an x of the grid) and everything needed to draw the fit."""

    knee: int
    knee_y: float
    degree: int
    fallback: bool
    reason: str
    curve: str
    direction: str
    x: np.ndarray
    y: np.ndarray
    y_fit: np.ndarray
    coefficients: np.ndarray
    shape: str = "concave"

    def to_dict(self) -> dict:
        """JSON-safe plain Python types."""
        return {
            "knee": int(self.knee),
            "knee_y": float(self.knee_y),
            "degree": int(self.degree),
            "fallback": bool(self.fallback),
            "reason": self.reason,
            "curve": self.curve,
            "direction": self.direction,
            "shape": self.shape,
            "x": self.x.tolist(),
            "y": self.y.tolist(),
            "y_fit": self.y_fit.tolist(),
            "coefficients": self.coefficients.tolist(),
        }


def check_degree(degree: object, n_points: int | None = None) -> int:
    """``degree`` as an int if a knee can be fitted with it, else a one-line CAHPError."""
    if isinstance(degree, bool) or not isinstance(degree, int | np.integer):
        raise CAHPError(f"degree must be a whole number; got {degree!r}")
    top = "" if n_points is None else f" to {n_points - 1}"
    if degree == 1:
        raise CAHPError(
            f"degree 1 has no knee (a degree-1 fit is a straight line); choose a degree from 2{top}"
        )
    if degree < 1:
        raise CAHPError(f"degree must be at least 2; got {degree}. Choose a degree from 2{top}")
    if n_points is not None and degree >= n_points:
        raise CAHPError(
            f"degree {degree} needs more than {n_points} curve points; choose a degree from 2{top}"
        )
    return int(degree)


def check_shape(shape: str) -> str:
    return check_choice("knee shape", shape, KNEE_SHAPES)


def validate_curve(x: np.ndarray, y: np.ndarray, degree: int) -> None:
    """Clear errors for curves and degrees the fit cannot use."""
    if x.shape != y.shape or x.ndim != 1:
        raise CAHPError(f"x and y must be 1-D and the same length; got {x.shape} and {y.shape}")
    if len(x) < 3:
        raise CAHPError(f"a knee needs at least 3 curve points; got {len(x)}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise CAHPError("the curve holds NaN or infinite values; recompute the clustering stage")
    if not (np.diff(x) > 0).all():
        raise CAHPError("curve x values must be strictly increasing; sort the points by x")
    check_degree(degree, len(x))


def fit_polynomial(x: np.ndarray, y: np.ndarray, degree: int) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares polynomial on a scaled domain (stable); returns (y_fit at x, coefficients)."""
    polynomial = Polynomial.fit(x, y, degree)
    return polynomial(x), polynomial.convert().coef


def chord_knee(x: np.ndarray, y: np.ndarray, above: bool = False) -> int:
    """Index of the point at maximum perpendicular distance from the chord joining the
    first and last points.

    With ``above``, only points above the chord count (a concave, increasing curve's knee:
    a dip of a noisy curve below its chord is no knee) while there are any.

    The perpendicular distance to a fixed line is the vertical distance times a constant, so
    the vertical distance on axes scaled to [0, 1] is used (same argmax, scale-free tie
    tolerance). Ties, and a flat curve, give the smallest x.
    """
    xs = (x - x[0]) / (x[-1] - x[0])
    span = y.max() - y.min()
    flat = span <= 1e-12 * max(1.0, float(np.abs(y).max()))
    ys = np.zeros_like(y) if flat else (y - y.min()) / span
    chord = ys[0] + (ys[-1] - ys[0]) * xs
    signed = ys - chord
    distance = (
        np.where(signed > 1e-12, signed, 0.0)
        if above and (signed > 1e-12).any()
        else np.abs(signed)
    )
    return int(np.flatnonzero(distance >= distance.max() - 1e-12)[0])


def _auto_shape(y_fit: np.ndarray) -> tuple[str, str]:
    direction = "increasing" if y_fit[-1] >= y_fit[0] else "decreasing"
    curve = "concave" if np.diff(y_fit, 2).mean() <= 0 else "convex"
    return curve, direction


def _is_flat(y_fit: np.ndarray) -> bool:
    return bool(np.ptp(y_fit) < 1e-12 * max(1.0, float(np.abs(y_fit).max())))


def _kneed(x: np.ndarray, y: np.ndarray, **options) -> KneeLocator:
    with warnings.catch_warnings():  # "No knee/elbow found" and RankWarning: see ``reason``
        warnings.simplefilter("ignore")
        return KneeLocator(x, y, **options)


def find_knee(x: ArrayLike, y: ArrayLike, degree: int = 6, shape: str = "concave") -> KneeResult:
    """Fit a polynomial of ``degree`` to (x, y) and return its knee (an x of the grid).

    Invalid input (including degree 1) raises a CAHPError; any valid curve gives a knee,
    flagged ``fallback`` with the ``reason`` where kneed found none.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    validate_curve(x, y, degree)
    check_shape(shape)
    degree = int(degree)
    coefficients = fit_polynomial(x, y, degree)[1]
    if shape == "concave":  # the authors' call: kneed fits the polynomial itself
        curve, direction = "concave", "increasing"
        locator = _kneed(
            x,
            y,
            curve=curve,
            direction=direction,
            interp_method="polynomial",
            polynomial_degree=degree,
        )
        y_fit = np.asarray(locator.Ds_y, dtype=float)
        knee_x = None if _is_flat(y_fit) else locator.knee
    else:  # not the paper's: guess the shape from our own fit, then kneed on the fit
        y_fit = fit_polynomial(x, y, degree)[0]
        curve, direction = _auto_shape(y_fit)
        knee_x = None
        if not _is_flat(y_fit):
            knee_x = _kneed(x, y_fit, curve=curve, direction=direction).knee
    edge = knee_x is not None and knee_x in (x[0], x[-1])
    fallback = knee_x is None or edge
    if fallback:
        index = chord_knee(x, y_fit, above=shape == "concave")
        what = "kneed found none"
        if _is_flat(y_fit):
            what = "the fitted curve is flat"
        elif edge:  # kneed's local-maximum search includes the ends: no interior knee
            what = f"kneed's knee fell on the end of the curve, k={knee_x:g}"
        reason = (
            f"no knee at degree {degree} ({what}); fell back to the point of the fitted "
            f"curve farthest {'above' if shape == 'concave' else 'from'} its chord "
            f"(k={x[index]:g})"
        )
    else:
        index = int(np.argmin(np.abs(x - knee_x)))
        reason = f"kneed's knee of the degree-{degree} fit ({curve}, {direction})"
    return KneeResult(
        knee=int(round(x[index])),
        knee_y=float(y_fit[index]),
        degree=degree,
        fallback=fallback,
        reason=reason,
        curve=curve,
        direction=direction,
        x=x,
        y=y,
        y_fit=y_fit,
        coefficients=coefficients,
        shape=shape,
    )
