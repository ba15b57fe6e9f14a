"""Argument checks shared across the package."""

import math
import numbers


def is_finite_real(value):
    """Whether ``value`` is a finite real number: not a bool (``True`` is an ``int`` to Python, never a
    weight or a rate here), not NaN or ±inf."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
