"""Knee of a marginal-performance curve after a polynomial fit of user-chosen degree.

The curve (k, cluster quality) is smoothed by a least-squares polynomial of ``degree``;
kneed (Satopaa et al., 2011) finds the knee of the fitted curve. Where kneed finds no knee,
only an end point, or the fit is flat or a straight line (degree 1), the knee falls back to
the grid point farthest from the chord joining the first and last fitted points (ties and
flat or straight fits: the smallest x), and ``fallback`` and ``reason`` say so.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from kneed import KneeLocator
from numpy.polynomial import Polynomial
from numpy.typing import ArrayLike

from .errors import CAHPError


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
            "x": self.x.tolist(),
            "y": self.y.tolist(),
            "y_fit": self.y_fit.tolist(),
            "coefficients": self.coefficients.tolist(),
        }


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
    if isinstance(degree, bool) or not isinstance(degree, int | np.integer):
        raise CAHPError(f"degree must be a whole number; got {degree!r}")
    if not 1 <= degree < len(x):
        raise CAHPError(
            f"degree must be between 1 and {len(x) - 1} (number of curve points - 1); "
            f"got {degree}. Pick a degree in that range."
        )


def fit_polynomial(x: np.ndarray, y: np.ndarray, degree: int) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares polynomial on a scaled domain (stable); returns (y_fit at x, coefficients)."""
    polynomial = Polynomial.fit(x, y, degree)
    return polynomial(x), polynomial.convert().coef


def chord_knee(x: np.ndarray, y: np.ndarray) -> int:
    """Index of the point at maximum perpendicular distance from the chord joining the
    first and last points.

    The perpendicular distance to a fixed line is the vertical distance times a constant, so
    the vertical distance on axes scaled to [0, 1] is used (same argmax, scale-free tie
    tolerance). Ties, and a flat curve, give the smallest x.
    """
    xs = (x - x[0]) / (x[-1] - x[0])
    span = y.max() - y.min()
    flat = span <= 1e-12 * max(1.0, float(np.abs(y).max()))
    ys = np.zeros_like(y) if flat else (y - y.min()) / span
    chord = ys[0] + (ys[-1] - ys[0]) * xs
    distance = np.abs(ys - chord)
    return int(np.flatnonzero(distance >= distance.max() - 1e-12)[0])


def _auto_shape(y_fit: np.ndarray, curve: str, direction: str) -> tuple[str, str]:
    if direction == "auto":
        direction = "increasing" if y_fit[-1] >= y_fit[0] else "decreasing"
    if curve == "auto":
        curve = "concave" if np.diff(y_fit, 2).mean() <= 0 else "convex"
    return curve, direction


def find_knee(
    x: ArrayLike,
    y: ArrayLike,
    degree: int = 6,
    curve: str = "auto",
    direction: str = "auto",
    online: bool = False,
) -> KneeResult:
    """Fit a polynomial of ``degree`` to (x, y) and return its knee (an x of the grid).

    Invalid input raises a CAHPError; any valid curve gives a knee (never a crash).

    kneed finds the knee of the fitted curve; where it finds none, finds only an end point of
    the curve, or the fit is flat, the point farthest from the chord of the fitted curve is
    used instead and ``fallback`` is True (``reason`` says which).
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    validate_curve(x, y, degree)
    if curve not in ("auto", "concave", "convex"):
        raise CAHPError(f"curve must be auto, concave or convex; got {curve!r}")
    if direction not in ("auto", "increasing", "decreasing"):
        raise CAHPError(f"direction must be auto, increasing or decreasing; got {direction!r}")
    y_fit, coefficients = fit_polynomial(x, y, int(degree))
    curve, direction = _auto_shape(y_fit, curve, direction)
    flat = np.ptp(y_fit) < 1e-12 * max(1.0, float(np.abs(y_fit).max()))
    knee_x, reason = None, "kneed knee of the fitted polynomial"
    if flat:
        reason = "the fitted curve is flat"
    elif degree == 1:
        reason = "a degree-1 fit is a straight line and has no knee"
    else:
        with warnings.catch_warnings():  # "No knee/elbow found" is reported in ``reason``
            warnings.simplefilter("ignore")
            locator = KneeLocator(x, y_fit, curve=curve, direction=direction, online=online)
        knee_x = locator.knee
        if knee_x is None:
            reason = "kneed found no knee on the fitted curve"
        elif knee_x in (x[0], x[-1]):  # an end point is no elbow (a wiggle of the fit's edge)
            knee_x, reason = None, f"kneed's knee fell on the end of the curve (x={knee_x:g})"
    fallback = knee_x is None
    if fallback:
        index = chord_knee(x, y_fit)
        reason += "; fell back to the point farthest from the chord of the fit"
    else:
        index = int(np.argmin(np.abs(x - knee_x)))
    return KneeResult(
        knee=int(round(x[index])),
        knee_y=float(y_fit[index]),
        degree=int(degree),
        fallback=fallback,
        reason=reason,
        curve=curve,
        direction=direction,
        x=x,
        y=y,
        y_fit=y_fit,
        coefficients=coefficients,
    )
