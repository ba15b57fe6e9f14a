"""Argument checks shared across the package."""

import math
import numbers


def is_finite_real(value):
    """Whether ``value`` is a finite real number: not a bool (``True`` is an ``int`` to Python, never a
    weight or a rate here), not NaN or ±inf."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def scalar(value):
    """A one-element torch tensor or numpy array as its Python number; anything else as it is."""
    if getattr(value, "ndim", None) is not None and math.prod(value.shape) == 1:
        return value.item()
    return value


def check_finite_real(value, name):
    """``value`` (a number, or a one-element tensor or array) as a float if it is finite and real, else a
    ValueError naming ``name``."""
    number = scalar(value)
    if not is_finite_real(number):
        raise ValueError(f"{name} must be a finite real number; got {value!r}")
    return float(number)


def positive_int(value, name):
    """``value`` as an int if it is an integer >= 1 (not a bool), else a ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer; got {value!r}")
    return int(value)


def nonnegative_int(value, name, below=None):
    """``value`` as an int if it is an integer >= 0 (not a bool) and below ``below`` (a power of two, if
    given: a seed's range), else a ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0; got {value!r}")
    if below is not None and value >= below:
        raise ValueError(f"{name} must be an integer in [0, 2**{below.bit_length() - 1}); got {value!r}")
    return int(value)


def check_bool(value, name):
    """A TypeError unless ``value`` is True or False (a numpy bool too): "no" is truthy, None falsy."""
    if type(value).__name__ not in ("bool", "bool_"):
        raise TypeError(f"{name} must be True or False; got {value!r}")
    return bool(value)
