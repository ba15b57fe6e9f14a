"""Guides of pyro_vd."""

from .auto_variational_dropout import GRANULARITIES, PARAMETERIZATIONS, AutoVariationalDropout

__all__ = ["GRANULARITIES", "PARAMETERIZATIONS", "AutoVariationalDropout"]
