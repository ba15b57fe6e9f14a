"""Saving and resuming a training run: parameters, optimizer state, epoch and every RNG."""

import os
import pathlib
import random
import tempfile

import numpy as np
import pyro
import torch

_FORMAT = "pyro_vd.checkpoint/1"


def _rng_state():
    # The legacy global numpy generator is what np.random.* calls in user code draw from.
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}  # noqa: NPY002
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state):
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])  # noqa: NPY002
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path, *, optim, epoch, model=None, guide=None, elbo=None, extra=None):
    """
    Save a training run so that :func:`load_checkpoint` continues the same trajectory: Pyro's parameter
    store, the optimizer's state, the epoch, the KL weight of ``elbo``, the state dicts of ``model`` and
    ``guide`` (needed with ``pyro.settings.set(module_local_params=True)``), the torch / CUDA / numpy /
    Python RNG states, and ``extra`` (anything picklable, e.g. a history of metrics).

    The file is written to a temporary file in the same folder and renamed over ``path`` only once
    complete, so an interrupted save never destroys the previous checkpoint.

    :param optim: the :class:`pyro.optim.PyroOptim` of the SVI run.
    :param int epoch: the number of epochs completed.
    """
    path = pathlib.Path(path)
    if path.is_dir():
        raise ValueError(f"path {str(path)!r} is a directory; give a file name")
    if not hasattr(optim, "get_state"):
        raise TypeError(f"optim must be a pyro.optim.PyroOptim; got {type(optim).__name__}")
    state = {
        "format": _FORMAT,
        "epoch": int(epoch),
        "param_store": pyro.get_param_store().get_state(),
        "optim": optim.get_state(),
        "model": model.state_dict() if model is not None else None,
        "guide": guide.state_dict() if guide is not None else None,
        "kl_weight": getattr(elbo, "kl_weight", None),
        "rng": _rng_state(),
        "extra": extra,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as f:
            torch.save(state, f)
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path, *, optim, model=None, guide=None, elbo=None, map_location=None):
    """
    Restore what :func:`save_checkpoint` saved, into a fresh ``model``, ``guide`` (both built but not
    yet run is fine), ``optim`` and ``elbo``; the RNG states are restored last, so the next step draws
    what the uninterrupted run would have drawn. Pass the ``model`` when it has ordinary
    ``nn.Parameter``s (biases of a :class:`~pyro_vd.models.VDModel`): Pyro tracks those by object, and
    only the model's own tensors keep being optimized after a restore.

    :returns: ``{"epoch": int, "extra": ...}``.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {str(path)!r}")
    state = torch.load(path, map_location=map_location, weights_only=False)
    if not isinstance(state, dict) or state.get("format") != _FORMAT:
        raise ValueError(f"{str(path)!r} is not a pyro_vd checkpoint")
    store = pyro.get_param_store()
    store.set_state(state["param_store"])
    optim.set_state(state["optim"])
    if model is not None and state["model"] is not None:
        # A PyroModule's plain nn.Parameters (e.g. biases) are registered in the store by object: drop
        # the restored copies so that the module's own tensors, loaded here, are the ones optimized.
        prefix = getattr(model, "_pyro_name", "")
        for name, _ in model.named_parameters():
            fullname = f"{prefix}.{name}" if prefix else name
            if fullname in store:
                del store[fullname]
        model.load_state_dict(state["model"], strict=False)
    if guide is not None and state["guide"] is not None and _has_params(guide):
        guide.load_state_dict(state["guide"], strict=False)
    if elbo is not None and state["kl_weight"] is not None:
        elbo.kl_weight = state["kl_weight"]
    _set_rng_state(state["rng"])
    return {"epoch": state["epoch"], "extra": state["extra"]}


def _has_params(module):
    return any(True for _ in module.state_dict())
