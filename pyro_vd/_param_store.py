"""Where Pyro's param store and a ``PyroModule``'s own parameters disagree.

A ``PyroModule`` reads the param store inside its own call (its forward, under SVI or ``Predictive``)
and returns its own tensors outside it. After ``pyro.get_param_store().load(...)``, or for a module kept
from an earlier run whose parameter names another run's parameters now hold, the two differ: what its
readers report is not what it computes with.
"""

import pyro
import torch
from pyro.nn import PyroModule


def pyro_parameters(*modules):
    """``(module, name, full name)`` of every ``PyroParam`` of ``modules`` and their submodules: the name
    Pyro's param store knows it by (``PyroModule._pyro_get_fullname``'s, which asserts until the module
    has run; a module loaded before it ran was then left out, and a rollback missed its tensors)."""
    found = []
    for module in modules:
        for part in module.modules() if isinstance(module, torch.nn.Module) else ():
            if not isinstance(part, PyroModule):
                continue
            prefix = part.__dict__.get("_pyro_name", "")
            for name in part._pyro_params:
                found.append((part, name, f"{prefix}.{name}" if prefix else name))
    return found


def store_disagreements(*modules, parameters=None):
    """The full names of the parameters of ``modules`` (or the ``parameters`` of :func:`pyro_parameters`)
    whose own value differs from the param store's entry of that name; empty under
    ``module_local_params`` (no store). The same tensor object is checked by identity alone."""
    if pyro.settings.get("module_local_params"):
        return []
    store = pyro.get_param_store()._params
    names = []
    for part, name, fullname in pyro_parameters(*modules) if parameters is None else parameters:
        own = part._parameters.get(name + "_unconstrained")
        stored = store.get(fullname)
        if own is None or stored is None or stored is own:
            continue
        if stored.shape != own.shape or not torch.equal(stored.detach(), own.detach()):
            names.append(fullname)
    return names


def adopt_store(*modules):
    """Make the parameters of ``modules`` the param store's tensors of their names where it holds one, as
    Pyro does at a module's next call (after ``set_state`` the store held new tensors while the modules
    kept their old ones, into which ``load_state_dict`` wrote: readers and the iterate averages then
    followed different tensors). Nothing under ``module_local_params``."""
    if pyro.settings.get("module_local_params"):
        return
    store = pyro.get_param_store()._params
    for module in modules:
        if not isinstance(module, PyroModule):
            continue
        context = module._pyro_context
        used = context.used  # (Pyro marks a module that ran: it may then not join a parent module)
        with context:  # inside it, reading a PyroParam takes the store's tensor
            for part, name, fullname in pyro_parameters(module):
                if fullname in store and part._parameters.get(name + "_unconstrained") is not store[fullname]:
                    getattr(part, name)
        context.used = used


__all__ = ["adopt_store", "pyro_parameters", "store_disagreements"]
