"""Warnings attributed to the user's line: the first stack frame outside Pyro, pyro_vd and torch."""

import contextlib
import contextvars
import sys
import warnings

#: Packages whose frames a warning skips, to name the line of the user's code that led to it.
_LIBRARIES = ("pyro", "pyro_vd", "torch")


#: What the warnings issued now end with (:func:`warning_suffix`).
_SUFFIX = contextvars.ContextVar("pyro_vd_warning_suffix", default="")


@contextlib.contextmanager
def warning_suffix(suffix):
    """Every :func:`warn_at_caller` warning issued inside ends with ``suffix`` (e.g. which binary fit of a
    one-vs-rest classifier it comes from). Nothing is caught or issued again, so the warnings filters and
    their once-per-line registries work as for any warning."""
    token = _SUFFIX.set(_SUFFIX.get() + suffix)
    try:
        yield
    finally:
        _SUFFIX.reset(token)


def warn_at_caller(message, category=UserWarning):
    """
    ``warnings.warn(message, category)`` attributed to the first frame outside Pyro, pyro_vd and torch
    (by module name, wherever they are installed): the user's ``svi.step(...)``, ``loss_fn(x, y)``,
    ``estimator.fit(X, y)`` or other call, however deep inside those libraries (and torch's wrappers,
    such as ``inference_mode``) the warning is made. Under a scikit-learn meta-estimator that is
    scikit-learn's frame.
    """
    frame, level = sys._getframe(1), 2  # stacklevel 1 is this function, 2 its caller
    while frame is not None and frame.f_globals.get("__name__", "").split(".")[0] in _LIBRARIES:
        frame, level = frame.f_back, level + 1
    warnings.warn(message + _SUFFIX.get(), category, stacklevel=level)


__all__ = ["warn_at_caller", "warning_suffix"]
