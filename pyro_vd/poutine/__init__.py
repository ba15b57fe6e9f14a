"""Effect handlers of pyro_vd."""

from .full_data_messenger import FullDataMessenger
from .local_reparameterization import LocalReparamWeight
from .local_reparameterization_messenger import LocalReparameterizationMessenger, local_reparameterization

__all__ = [
    "FullDataMessenger",
    "LocalReparamWeight",
    "LocalReparameterizationMessenger",
    "local_reparameterization",
]
