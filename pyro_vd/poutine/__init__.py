"""Effect handlers of pyro_vd."""

from .local_reparameterization import LocalReparamWeight
from .local_reparameterization_messenger import LocalReparameterizationMessenger, local_reparameterization

__all__ = ["LocalReparamWeight", "LocalReparameterizationMessenger", "local_reparameterization"]
