"""Saving and resuming a training run: parameters, optimizer state, epoch and every RNG."""

import collections
import contextlib
import hashlib
import math
import numbers
import os
import pathlib
import random
import re
import socket
import sys
import tempfile
import time
import zipfile

import numpy as np
import pyro
import torch
from torch.distributions.constraints import Constraint

from .._param_store import adopt_store, pyro_parameters
from ..guides.auto_variational_dropout import AutoVariationalDropout, _check_averaging, vd_guides

_FORMAT = "pyro_vd.checkpoint/2"
_KEYS = (
    "format",
    "epoch",
    "param_store",
    "optim",
    "model",
    "guide",
    "guide_config",
    "kl_weight",
    "rng",
    "extra",
)
#: Packages whose constraint classes a checkpoint may name (a constraint is stored as class + attributes).
_CONSTRAINT_PACKAGES = ("torch", "pyro", "pyro_vd")
#: Temporary files of older versions carry no pid: removed only once this old (seconds).
_LEGACY_TMP_AGE = 3600.0
#: ``<checkpoint name>`` + this: a temporary file of save_checkpoint (mkstemp's random part has no dot).
_TMP = re.compile(r"\.(?P<writer>[0-9a-f]{8})\.(?P<pid>[0-9]+)\.[A-Za-z0-9_]+\.tmp")
_LEGACY_TMP = re.compile(r"\.[a-z0-9_]{8}\.tmp")
_PLAIN_LEAVES = (type(None), bool, int, float, complex, str, bytes, torch.Tensor, torch.nn.Parameter)
_PLAIN_CONTAINERS = (list, tuple, set, dict, collections.OrderedDict)


def save_checkpoint(path, *, optim, epoch, model=None, guide=None, elbo=None, extra=None):
    """
    Save a training run so that :func:`load_checkpoint` continues the same trajectory: Pyro's parameter
    store, the optimizer's state, the epoch, the KL weight of ``elbo``, the state dicts of ``model`` and
    ``guide`` (needed with ``pyro.settings.set(module_local_params=True)``), the guide's configuration
    (granularity, parameterization, KL method, clip of log α and sites of every
    :class:`~pyro_vd.guides.AutoVariationalDropout` in it, checked at loading) and its iterate averages
    (``averaging``: a resumed run's ``apply_average()`` then averages the same steps as an uninterrupted
    one), the torch / CUDA / numpy / Python RNG states, and ``extra``.

    The file is loaded with ``torch.load(weights_only=True)``, which never runs code from the file, so
    ``extra`` must be plain data: ``None``, bools, numbers, strings, bytes, torch tensors, and lists,
    tuples, sets and dicts of those (e.g. ``{"history": [{"epoch": 1, "test_error": 0.02}, ...]}``);
    numpy scalars are stored as Python numbers. Anything else (a numpy array, a dataclass, a
    namedtuple) is a ``TypeError`` here, before anything is written.

    The file is written to a temporary file ``<name>.<writer>.<pid>.<random>.tmp`` in the same folder,
    flushed to disk (``fsync``) and renamed over ``path`` only once complete, so an interrupted save never
    destroys the previous checkpoint. Temporary files of this checkpoint that a killed save left behind
    are removed at the next save, once their writer (a process on this machine) is gone.

    :param optim: the :class:`pyro.optim.PyroOptim` of the SVI run.
    :param int epoch: the number of epochs completed.
    """
    path = pathlib.Path(path)
    if path.is_dir():
        raise ValueError(f"path {str(path)!r} is a directory; give a file name")
    # the check load_checkpoint applies: a file it would refuse must not replace a good one
    if isinstance(epoch, bool) or not isinstance(epoch, numbers.Integral) or epoch < 0:
        raise ValueError(f"epoch must be a non-negative int (the epochs completed); got {epoch!r}")
    if not hasattr(optim, "get_state"):
        raise TypeError(f"optim must be a pyro.optim.PyroOptim; got {type(optim).__name__}")
    _check_modules(model, guide)
    store = pyro.get_param_store()
    params = dict(store.named_parameters())
    store_state = store.get_state()
    state = {
        "format": _FORMAT,
        "epoch": int(epoch),
        "param_store": {
            "params": params,
            "constraints": {
                name: _encode_constraint(c, f"the constraint of param {name!r}")
                for name, c in store_state["constraints"].items()
            },
        },
        "optim": _plain(_optim_state(optim, params), "the optimizer state"),
        "model": model.state_dict() if model is not None else None,
        "guide": guide.state_dict() if guide is not None else None,
        "guide_config": _guide_config(guide) if guide is not None else None,
        "averages": _average_states(guide),
        "kl_weight": None if getattr(elbo, "kl_weight", None) is None else float(elbo.kl_weight),
        "rng": _rng_state(),
        "extra": _plain(extra, "extra"),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(path)
    handle, tmp = tempfile.mkstemp(
        prefix=f"{path.name}.{_writer_tag()}.{os.getpid()}.", suffix=".tmp", dir=path.parent
    )
    try:
        # mkstemp makes the file private (0600): give it the mode an ordinary new file would have
        os.fchmod(handle, 0o666 & ~_umask())
        with os.fdopen(handle, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)  # make the rename itself durable
    return path


def load_checkpoint(path, *, optim, model=None, guide=None, elbo=None, map_location=None):
    """
    Restore what :func:`save_checkpoint` saved, into a fresh ``model``, ``guide`` (both built but not
    yet run is fine), ``optim`` and ``elbo``; the RNG states are restored last, so the next step draws
    what the uninterrupted run would have drawn. Pass the ``model`` when it has ordinary
    ``nn.Parameter``s: Pyro tracks those by object, and only the model's own tensors keep being optimized
    after a restore. The optimizer's state is the checkpoint's, also in a session that has trained. Pass
    the ``guide`` for its iterate averages (``averaging``) to go on from the saved ones; without it they
    start again at the resume.

    Everything is checked before anything changes: the file (a truncated, corrupt or foreign file, or one
    holding objects whose unpickling could run code, is a ``ValueError`` naming it), every entry, and the
    parameter names and shapes and the guide's configuration against the live session — the live
    parameter store, the ``model``'s state dict and, once it has been run, the ``guide``'s (run the
    guide once before loading, as the experiments do, for the sites' shapes to be checked too). A
    mismatch is a ``ValueError`` naming the file and what differs, and leaves the session as it was;
    should restoring fail part-way, the parameter store, the optimizer, the modules, ``elbo`` and the
    RNGs are put back as they were.

    In a process group (``pyro_vd.distributed``), the checkpoint holds the random state of the rank that
    saved it (rank 0, as scripts save): loaded on every rank, that rank goes on with its saved stream and
    every other rank with a fresh one of its own (from that state, the rank and the epoch), so the ranks'
    noise stays independent; a rank loading a file it saved itself goes on exactly.

    :returns: ``{"epoch": int, "extra": ...}``.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {str(path)!r}")
    if not hasattr(optim, "set_state"):
        raise TypeError(f"optim must be a pyro.optim.PyroOptim; got {type(optim).__name__}")
    _check_modules(model, guide)
    if guide is not None:
        _check_lazy_parts(guide)
    plan = _plan(path, _read(path, map_location), model, guide)
    snapshot = _snapshot(optim, model, guide, elbo)
    try:
        _restore(plan, optim, model, guide, elbo)
    except BaseException:
        with contextlib.suppress(Exception):
            _restore_snapshot(snapshot, optim, model, guide, elbo)
        raise
    return {"epoch": plan["epoch"], "extra": plan["extra"]}


# ------------------------------------------------------------------------------------------ reading
def _read(path, map_location):
    where = f"checkpoint {str(path)!r}"
    with open(path, "rb") as f:
        try:
            return torch.load(f, map_location=map_location, weights_only=True)
        except Exception as error:  # torch raises EOFError, RuntimeError, OSError, UnpicklingError, …
            message = str(error)
            detail = _detail(message) or type(error).__name__
            if re.search(r"unsupported (global|class)|\bGLOBAL\b", message, re.IGNORECASE):
                if _written_in_format_1(path):
                    raise ValueError(
                        f"{where} was written by an older pyro_vd (format 'pyro_vd.checkpoint/1'), whose "
                        f"files hold pickled objects that only an unsafe load could read ({detail}); this "
                        f"version reads {_FORMAT!r} files, loaded with weights_only=True"
                    ) from error
                raise ValueError(
                    f"{where} holds an object that is not plain data, and unpickling it could run code "
                    f"({detail}); it was refused. save_checkpoint never writes such objects: load only "
                    "checkpoints it wrote"
                ) from error
            if "map_location" in message:
                raise ValueError(f"{where} cannot be loaded on this machine: {detail}") from error
            raise ValueError(f"{where} is truncated or corrupt: {type(error).__name__}: {detail}") from error


def _written_in_format_1(path):
    with contextlib.suppress(Exception), zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n == "data.pkl" or n.endswith("/data.pkl")]
        return bool(pickles) and b"pyro_vd.checkpoint/1" in archive.read(pickles[0])
    return False


def _detail(message):
    """The informative line of a torch.load error (weights-only errors bury it after a long preamble)."""
    match = re.search(r"WeightsUnpickler error: ([^\n]*)", message)
    line = match.group(1) if match else next((s for s in message.splitlines() if s.strip()), "")
    return line.strip()[:300]


# --------------------------------------------------------------------------------------- validation
def _plan(path, state, model, guide):
    """Check every entry of ``state`` and compare it with the live session; returns what to restore."""
    where = f"checkpoint {str(path)!r}"
    if not isinstance(state, dict) or "format" not in state:
        raise ValueError(f"{str(path)!r} is not a pyro_vd checkpoint")
    if state["format"] != _FORMAT:
        if isinstance(state["format"], str) and state["format"].startswith("pyro_vd.checkpoint/"):
            raise ValueError(f"{where} has format {state['format']!r}; this pyro_vd reads {_FORMAT!r}")
        raise ValueError(f"{str(path)!r} is not a pyro_vd checkpoint")
    missing = [key for key in _KEYS if key not in state]
    if missing:
        raise ValueError(f"{where} is incomplete: it lacks {_names(missing)}")

    epoch = state["epoch"]
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise ValueError(f"{where}: the epoch must be a non-negative int; the file has {epoch!r}")
    kl_weight = state["kl_weight"]
    if kl_weight is not None and (isinstance(kl_weight, bool) or not isinstance(kl_weight, int | float)):
        raise ValueError(f"{where}: kl_weight must be a number or None; the file has {kl_weight!r}")
    params, constraints = _check_param_store(where, state["param_store"])
    optim_state = state["optim"]
    if not isinstance(optim_state, dict) or not all(isinstance(v, dict) for v in optim_state.values()):
        raise ValueError(f"{where}: the optimizer state must be a dict of per-parameter dicts")
    unknown = [name for name in optim_state if name not in params]
    if unknown:
        raise ValueError(
            f"{where}: the optimizer state names params the file does not hold: {_names(unknown)}"
        )
    for key in ("model", "guide"):
        saved = state[key]
        if saved is not None and not _is_tensor_dict(saved):
            raise ValueError(f"{where}: the {key} state must be a dict of tensors or None")
    if state["guide_config"] is not None and not isinstance(state["guide_config"], dict):
        raise ValueError(f"{where}: the guide configuration must be a dict or None")
    rng = _decode_rng(where, state["rng"])
    averages = _check_averages(where, state.get("averages"))  # (absent from files before it was saved)

    # --- against the live session
    _check_guide_config(where, state["guide_config"], guide)
    live = dict(pyro.get_param_store().named_parameters())
    guide_ran = guide is not None and _has_run(guide)
    _compare(where, "param", live, params, file_may_have_more=not (guide_ran and live))
    local = pyro.settings.get("module_local_params")
    model_state = state["model"]
    model_params = {}  # plain nn.Parameters of the model, tracked by the store by object
    if model is not None:
        here = model.state_dict()
        if model_state is not None:
            _compare(where, "model tensor", here, model_state, file_may_have_more=False)
        elif local and here:
            raise ValueError(
                f"{where} holds no model state (saved without model=), which module_local_params needs"
            )
        prefix = getattr(model, "_pyro_name", "")
        for name, param in model.named_parameters():
            fullname = f"{prefix}.{name}" if prefix else name
            if fullname in params:
                _compare(
                    where, "param", {fullname: param}, {fullname: params[fullname]}, file_may_have_more=True
                )
                model_params[fullname] = param
    guide_state = state["guide"] or None
    guide_extra = None  # the guides' counters (``hold_log_alpha``): restored even where the tensors are not
    if guide is not None:
        here = _tensors_only(guide.state_dict())
        if guide_state is not None:
            guide_extra = {k: v for k, v in guide_state.items() if _is_extra_state(k)}
        if here and guide_state is not None:
            _compare(where, "guide tensor", here, _tensors_only(guide_state), file_may_have_more=False)
        elif local and guide_state is not None:
            raise ValueError(
                f"{where}: with module_local_params the guide's parameters live in the guide only: run it "
                "once (e.g. guide(x, y)) before load_checkpoint, so that they exist to be restored"
            )
        elif local and here:
            raise ValueError(
                f"{where} holds no guide state (saved without guide=), which module_local_params needs"
            )
        if not here:
            guide_state = None
    return {
        "epoch": epoch,
        "extra": state["extra"],
        "kl_weight": kl_weight,
        "params": params,
        "constraints": constraints,
        "optim": optim_state,
        "model": model_state if model is not None else None,
        "model_params": model_params,
        "guide": guide_state if guide is not None else None,
        "guide_extra": guide_extra or {},
        "averages": averages if guide is not None else None,
        "rng": rng,
    }


def _check_param_store(where, saved):
    if not isinstance(saved, dict) or set(saved) != {"params", "constraints"}:
        raise ValueError(f"{where}: the param store must be a dict with 'params' and 'constraints'")
    params, encoded = saved["params"], saved["constraints"]
    if not _is_tensor_dict(params) or not isinstance(encoded, dict) or set(params) != set(encoded):
        raise ValueError(f"{where}: the param store must map every param name to a tensor and a constraint")
    constraints = {name: _decode_constraint(where, name, c) for name, c in encoded.items()}
    return params, constraints


def _is_extra_state(key):
    """A module's ``get_extra_state()`` entry in a state dict (the guide's ``hold_log_alpha`` count)."""
    return key == "_extra_state" or key.endswith("._extra_state")


def _tensors_only(state):
    """A state dict without its extra-state entries: the tensors whose names and shapes must match (a file
    saved before a guide had extra state is still read)."""
    return {k: v for k, v in state.items() if not _is_extra_state(k)}


def _is_tensor_dict(value):
    return isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items()
    )


def _refuse_unmatched(where, what, names, side):
    if names:
        plural = len(names) > 1
        raise ValueError(
            f"{where}: {what}{'s' if plural else ''} {_names(names)} {'are' if plural else 'is'} {side} "
            "(a checkpoint of another model or guide?)"
        )


def _compare(where, what, here, there, *, file_may_have_more):
    """Names, shapes and dtypes of the live tensors ``here`` against the file's ``there``."""
    _refuse_unmatched(where, what, [name for name in here if name not in there], "here but not in the file")
    if not file_may_have_more:
        _refuse_unmatched(
            where, what, [name for name in there if name not in here], "in the file but not here"
        )
    for name, value in here.items():
        saved = there[name]
        if value.shape != saved.shape:
            raise ValueError(
                f"{where}: {what} {name!r} has shape {tuple(value.shape)} here but {tuple(saved.shape)} "
                "in the file"
            )
        if value.dtype != saved.dtype:
            raise ValueError(
                f"{where}: {what} {name!r} has dtype {value.dtype} here but {saved.dtype} in the file"
            )


def _names(names, limit=5):
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _has_run(guide):
    if any(True for _ in guide.state_dict()):
        return True
    return any(getattr(m, "prototype_trace", None) is not None for m in guide.modules())


# ------------------------------------------------------------------------------- guide configuration
def _guide_config(guide):
    """The guide's class and, for every AutoVariationalDropout in it, its granularity, parameterization,
    ``log_alpha_scale``, objective (``kl_method`` and the clip of log α) and (once run) sites."""
    parts = {}
    for name, module in guide.named_modules():
        if not isinstance(module, AutoVariationalDropout):
            continue
        granularity = module._granularity
        part = {
            "granularity": dict(granularity) if isinstance(granularity, dict) else granularity,
            "parameterization": module._parameterization,
            "log_alpha_scale": module.log_alpha_scale,
            # the objective the trajectory follows: another KL or clip is another run (train_prune may
            # change on a resume, as its docstring says)
            "objective": {
                "kl_method": module.kl_method,
                # as Python floats: a numpy scalar given by the user would make the file unloadable
                "min_log_alpha": _plain_float(module.min_log_alpha),
                "max_log_alpha": _plain_float(module.max_log_alpha),
            },
        }
        if module.prototype_trace is not None:
            part["sites"] = {
                s: [module.granularity(s), module.parameterization(s)] for s in module.site_names
            }
            part["noise_sites"] = list(module.noise_site_names)
            # the truncation of each neuron-noise prior (the model's noise_bounds): q is truncated there too
            part["noise_bounds"] = {s: list(module.noise_bounds(s)) for s in module.noise_site_names}
        parts[name] = part
    return {"type": type(guide).__qualname__, "parts": parts}


def _plain_float(value):
    return None if value is None else float(value)


def _check_guide_config(where, saved, guide):
    if saved is None or guide is None:
        return
    live = _guide_config(guide)
    if saved.get("type") != live["type"]:
        raise ValueError(
            f"{where}: the checkpoint's guide is a {saved.get('type')}, this guide a {live['type']}"
        )
    saved_parts = saved.get("parts")
    if not isinstance(saved_parts, dict) or set(saved_parts) != set(live["parts"]):
        raise ValueError(f"{where}: the checkpoint's guide is made of other parts than this guide")
    modules = dict(guide.named_modules())
    for name, part in live["parts"].items():
        old = saved_parts[name]
        label = f" (part {name!r})" if name else ""
        if not isinstance(old, dict):
            raise ValueError(f"{where}: the guide configuration{label} is malformed")
        _check_guide_part(where + label, old, part, modules[name])


def _check_guide_part(where, old, new, module):
    objective = old.get("objective")  # (absent from checkpoints of earlier versions: not compared)
    if isinstance(objective, dict):
        for key, value in new["objective"].items():
            if key in objective and objective[key] != value:
                raise ValueError(
                    f"{where}: the checkpoint's guide was trained with {key}={objective[key]!r}, this guide "
                    f"has {key}={value!r}: a resumed run would follow another objective; build the guide "
                    f"with {key}={objective[key]!r} (or load the parameters with load_state_dict to start "
                    "another run from them)"
                )
    # log α is stored as log α / c: read with another c every α would be wrong (a checkpoint written
    # before the setting existed has c = 1)
    c_old, c_new = old.get("log_alpha_scale", 1.0), new["log_alpha_scale"]
    if not isinstance(c_old, (int, float)) or not math.isclose(c_old, c_new, rel_tol=1e-6):
        raise ValueError(
            f"{where}: the checkpoint's guide has log_alpha_scale {c_old!r}, this guide {c_new!r} (its "
            f"log α parameters hold log α / c); build the guide with log_alpha_scale={c_old!r} to load it"
        )
    g_old, g_new = old.get("granularity"), new["granularity"]
    both_str = isinstance(g_old, str) and isinstance(g_new, str)
    if both_str:
        if g_old != g_new:
            raise ValueError(
                f"{where}: the checkpoint's guide has granularity {g_old!r}, this guide {g_new!r}"
            )
        p_old, p_new = (_effective(p, g_new) for p in (old.get("parameterization"), new["parameterization"]))
        if p_old != p_new:
            raise ValueError(
                f"{where}: the checkpoint's guide has parameterization {p_old!r}, this guide {p_new!r}"
            )
    sites = old.get("sites")
    if not isinstance(sites, dict):  # saved before the guide ran: only the settings can be compared
        for key in () if both_str else ("granularity", "parameterization"):
            if old.get(key) != new[key]:
                raise ValueError(
                    f"{where}: the checkpoint's guide has {key} {old.get(key)!r}, this guide {new[key]!r}"
                )
        return
    if "sites" in new:
        for key in ("sites", "noise_sites"):
            saved_names, names = list(old.get(key) or ()), list(new[key])
            if sorted(saved_names) != sorted(names):
                kind = "weight sites" if key == "sites" else "neuron-noise sites"
                raise ValueError(
                    f"{where}: the checkpoint's guide has the {kind} {saved_names}, this guide {names}"
                )
    bounds = old.get("noise_bounds")  # (absent from checkpoints of earlier versions: not compared)
    if isinstance(bounds, dict) and "noise_bounds" in new:
        for site, here in new["noise_bounds"].items():
            there = bounds.get(site)
            if there is not None and [float(b) for b in there] != here:
                raise ValueError(
                    f"{where}: the checkpoint's model truncates the neuron noise at {site!r} to log θ in "
                    f"{tuple(there)}, this model to {tuple(here)}: its noise posterior would be another "
                    f"distribution; build the model with noise_bounds={tuple(there)}"
                )
    for site, setting in sites.items():
        if not isinstance(setting, list | tuple) or len(setting) != 2:
            raise ValueError(f"{where}: the guide configuration of site {site!r} is malformed")
        try:
            here = [module.granularity(site), module.parameterization(site)]
        except ValueError as error:
            raise ValueError(f"{where}: {error}") from error
        for key, value, saved_value in zip(("granularity", "parameterization"), here, setting, strict=True):
            if value != saved_value:
                raise ValueError(
                    f"{where}: the checkpoint's guide has {key} {saved_value!r} at site {site!r}, this guide "
                    f"{value!r}"
                )


def _effective(parameterization, granularity):
    if parameterization is not None:
        return parameterization
    return "additive" if granularity == "weight" else "multiplicative"


# ---------------------------------------------------------------------------------------- restoring
def _snapshot(optim, model, guide, elbo):
    return {
        "store": pyro.get_param_store().get_state(),
        "optim": {key: dict(getattr(optim, key)) for key in _optim_dicts(optim)},
        "model": _clone_state(model),
        "guide": _clone_state(guide),
        "averages": _average_states(guide),
        "kl_weight": getattr(elbo, "kl_weight", None),
        "rng": _live_rng_state(),
        # the modules' own PyroParam tensors, by object: the restore makes them the store's (adopt_store),
        # and a rollback puts these back (where they were not the store's, writing the old values into
        # the store's tensors overwrote them: another run's live parameters)
        "tensors": [
            (part, name, part._parameters.get(name + "_unconstrained"))
            for part, name, _ in pyro_parameters(*(m for m in (model, guide) if m is not None))
        ],
    }


def _clone_state(module):
    if module is None:
        return None
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _optim_dicts(optim):
    return [
        k
        for k in ("optim_objs", "grad_clip", "_state_waiting_to_be_consumed")
        if isinstance(getattr(optim, k, None), dict)
    ]


def _restore(plan, optim, model, guide, elbo):
    if plan["model"] is not None:
        model.load_state_dict(plan["model"])
    params = dict(plan["params"])
    with torch.no_grad():
        for fullname, param in plan["model_params"].items():
            if plan["model"] is None:  # saved without model=: the store's copy is the value
                param.copy_(params[fullname])
            params[fullname] = param  # the store tracks the module's own tensor
    if plan["guide"] is not None:
        guide.load_state_dict(plan["guide"])
    elif guide is not None:  # its tensors come from the store; its counters (a file without: past the hold)
        guide.load_state_dict(plan["guide_extra"], strict=False)
    store = pyro.get_param_store()
    store.clear()
    store.set_state({"params": params, "constraints": plan["constraints"]})
    adopt_store(model, guide)  # the modules' parameters are the store's tensors, as after a step
    # Optimizers are keyed by tensor: drop the live ones so that the checkpoint's states are used.
    for key in ("optim_objs", "grad_clip"):
        if isinstance(getattr(optim, key, None), dict):
            getattr(optim, key).clear()
    optim.set_state(plan["optim"])
    if elbo is not None and plan["kl_weight"] is not None:
        elbo.kl_weight = plan["kl_weight"]
    if guide is not None:
        for path, module in vd_guides(guide):
            module.load_average_state((plan["averages"] or {}).get(path))
    _set_rng_state(plan["rng"])
    _own_stream_on_other_ranks(plan["rng"]["rank"], plan["epoch"])


def _own_stream_on_other_ranks(saver, epoch):
    """On a rank of a process group other than the one that saved the checkpoint (``saver``: rank 0, as a
    script saves), a stream of the rank's own after the saver's was restored: seeded by
    :func:`~pyro_vd.distributed.noise_seed` from a draw of that state, the rank and ``epoch``. Without it
    every rank drew rank 0's noise after a resume (the ranks' noise no longer independent). Such a run
    continues on fresh independent streams, not bit for bit (the file holds one rank's state; a rank
    that loads its own file goes on exactly, and ``pyro-vd`` saves every rank's and puts them back
    itself)."""
    from .. import distributed

    session = distributed.current()
    if session.distributed and session.rank != saver:
        # the same on every such rank (the saver's state); below 2**32, as noise_seed takes
        base = int(torch.randint(2**32, ()))
        pyro.set_rng_seed(distributed.noise_seed(base, session.rank, epoch) % 2**32)


def _restore_snapshot(snapshot, optim, model, guide, elbo):
    _set_rng_state(snapshot["rng"])
    if elbo is not None and snapshot["kl_weight"] is not None:
        elbo.kl_weight = snapshot["kl_weight"]
    for key, saved in snapshot["optim"].items():
        live = getattr(optim, key)
        live.clear()
        live.update(saved)
    store = pyro.get_param_store()
    store.clear()
    store.set_state(snapshot["store"])
    for part, name, tensor in snapshot["tensors"]:  # the modules' own tensors, as before the load
        if tensor is not None:
            part._parameters[name + "_unconstrained"] = tensor
    for module, saved in ((guide, snapshot["guide"]), (model, snapshot["model"])):
        if module is not None:
            module.load_state_dict(saved)
    if guide is not None:  # (loading the guide's state restarted its averages)
        for path, module in vd_guides(guide):
            module.load_average_state(snapshot["averages"].get(path))


def _optim_state(optim, params):
    """The optimizer state of every param in the store, including states restored by load_checkpoint
    that no step has consumed yet (a save right after a load keeps them)."""
    state = dict(getattr(optim, "_state_waiting_to_be_consumed", None) or {})
    live = optim.get_state()
    if None in live and pyro.settings.get("module_local_params"):
        # module-local parameters are not in the store, so their optimizer states have no names
        raise ValueError(
            "under pyro.settings module_local_params=True the parameters live on the modules, not in "
            "Pyro's param store, so a pyro.optim optimizer's state cannot be saved by name: train with a "
            "torch optimizer on the ELBO module's parameters and save its state_dict() in extra= (as "
            "pyro_vd's experiments do), or train with the param store"
        )
    state.update(live)
    return {name: s for name, s in state.items() if name in params}


# ------------------------------------------------------------------------------------------ plain data
def _plain(value, where, _seen=None):
    """``value`` as data that ``torch.load(weights_only=True)`` reads back (numpy scalars become Python
    numbers); a ``TypeError`` naming where anything else is."""
    if isinstance(value, np.generic) and not isinstance(value, np.void):
        return value.item()
    if type(value) in _PLAIN_LEAVES:
        return value
    if type(value) not in _PLAIN_CONTAINERS:
        raise TypeError(
            f"{where} is a {type(value).__module__}.{type(value).__qualname__}, which a checkpoint cannot "
            "hold (it is loaded with weights_only=True): use None, bools, numbers, strings, bytes, "
            "tensors, and lists, tuples, sets and dicts of those"
        )
    _seen = _seen or set()
    if id(value) in _seen:
        raise TypeError(f"{where} contains itself")
    _seen = _seen | {id(value)}
    if isinstance(value, dict):
        items = [
            (_plain(k, f"a key of {where}", _seen), _plain(v, f"{where}[{k!r}]", _seen))
            for k, v in value.items()
        ]
        return type(value)(items)
    return type(value)(_plain(v, f"{where}[{i}]", _seen) for i, v in enumerate(value))


def _encode_constraint(constraint, where):
    """A constraint as ``{"class", "attributes"}``: weights-only loading cannot rebuild class instances."""
    cls = type(constraint)
    if not isinstance(constraint, Constraint) or cls.__module__.split(".")[0] not in _CONSTRAINT_PACKAGES:
        raise TypeError(
            f"{where} is a {cls.__module__}.{cls.__qualname__}; a checkpoint holds constraints of torch, "
            "pyro and pyro_vd only"
        )
    attributes = {}
    for key, value in vars(constraint).items():
        if isinstance(value, Constraint):
            attributes[key] = _encode_constraint(value, where)
        else:
            attributes[key] = _plain(value, f"{where}.{key}")
    return {"class": f"{cls.__module__}:{cls.__qualname__}", "attributes": attributes}


def _decode_constraint(where, name, encoded):
    """Rebuild a constraint from :func:`_encode_constraint`, importing nothing and creating instances of
    torch / pyro / pyro_vd constraint classes only."""
    try:
        module_name, qualname = encoded["class"].split(":")
        if module_name.split(".")[0] not in _CONSTRAINT_PACKAGES:
            raise ValueError(f"{module_name} is not a package a constraint may come from")
        cls = sys.modules[module_name]
        for part in qualname.split("."):
            cls = getattr(cls, part)
        if not (isinstance(cls, type) and issubclass(cls, Constraint)):
            raise ValueError(f"{encoded['class']} is not a constraint class")
        constraint = cls.__new__(cls)
        for key, value in encoded["attributes"].items():
            is_constraint = isinstance(value, dict) and set(value) == {"class", "attributes"}
            constraint.__dict__[key] = _decode_constraint(where, name, value) if is_constraint else value
    except (KeyError, AttributeError, TypeError, ValueError) as error:
        raise ValueError(f"{where}: the constraint of param {name!r} cannot be read: {error!r}") from error
    return constraint


# ------------------------------------------------------------------------------------------------ RNG
def _live_rng_state():
    """Every RNG state, in the form the setters take."""
    # The legacy global numpy generator is what np.random.* calls in user code draw from.
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}  # noqa: NPY002
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _rng_state():
    """Every RNG state as tensors and Python numbers (numpy's array would need pickled numpy code)."""
    live = _live_rng_state()
    kind, keys, pos, has_gauss, cached_gaussian = live["numpy"]
    version, internal, gauss_next = live["python"]
    state = {
        "torch": live["torch"],
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "python": {"version": int(version), "internal": list(internal), "gauss_next": gauss_next},
    }
    if "cuda" in live:
        state["cuda"] = live["cuda"]
    from .. import distributed

    state["rank"] = distributed.current().rank  # whose streams these are (see load_checkpoint)
    return state


def _decode_rng(where, state):
    """The file's RNG states in the form the setters take, each tried on a scratch generator first."""
    try:
        numpy_state = state["numpy"]
        python_state = state["python"]
        decoded = {
            "torch": state["torch"].cpu(),
            "numpy": (
                str(numpy_state["kind"]),
                numpy_state["keys"].cpu().numpy().astype(np.uint32),
                int(numpy_state["pos"]),
                int(numpy_state["has_gauss"]),
                float(numpy_state["cached_gaussian"]),
            ),
            "python": (
                int(python_state["version"]),
                tuple(int(v) for v in python_state["internal"]),
                None if python_state["gauss_next"] is None else float(python_state["gauss_next"]),
            ),
        }
        if state.get("cuda") is not None:
            decoded["cuda"] = [s.cpu() for s in state["cuda"]]
        decoded["rank"] = int(state.get("rank", 0))  # (files written before it was kept: rank 0's)
        torch.Generator().set_state(decoded["torch"])
        np.random.RandomState().set_state(decoded["numpy"])
        random.Random().setstate(decoded["python"])
    except (KeyError, AttributeError, TypeError, ValueError, RuntimeError) as error:
        raise ValueError(f"{where}: the RNG state is malformed: {error!r}") from error
    return decoded


def _set_rng_state(state):
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])  # noqa: NPY002
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        for device, cuda_state in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state, device)


# ------------------------------------------------------------------------------------- temporary files
def _writer_tag():
    """8 hex digits naming this machine and pid namespace, in which a temporary file's pid is checked."""
    namespace = ""
    with contextlib.suppress(OSError):
        namespace = str(os.stat("/proc/self/ns/pid").st_ino)
    return hashlib.sha1(f"{socket.gethostname()}/{namespace}".encode()).hexdigest()[:8]


def _pid_alive(pid):
    if pid == os.getpid():
        return True
    if os.name != "posix":  # os.kill would terminate the process there: assume it is alive
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):  # e.g. PermissionError: it exists, under another user
        return True
    with contextlib.suppress(OSError, IndexError):  # a zombie (killed, not yet reaped) writes no more
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    return True


def _remove_stale_temporaries(path):
    """Remove the temporary files of this checkpoint left by saves that were killed: those of a writer on
    this machine whose process is gone, and those of older versions (no pid) after an hour."""
    writer = _writer_tag()
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return
    for entry in entries:
        if not entry.name.startswith(path.name + "."):
            continue
        rest = entry.name[len(path.name) :]
        match = _TMP.fullmatch(rest)
        with contextlib.suppress(OSError):
            if match:
                stale = match["writer"] == writer and not _pid_alive(int(match["pid"]))
            elif _LEGACY_TMP.fullmatch(rest):
                stale = time.time() - entry.stat(follow_symlinks=False).st_mtime > _LEGACY_TMP_AGE
            else:
                continue
            if stale and entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)


def is_checkpoint_temporary(name, checkpoint_name):
    """Whether the file ``name`` is a temporary file of a save of the checkpoint ``checkpoint_name`` (the
    names :func:`save_checkpoint` gives them; not, say, a user's ``checkpoint.pt.bak``)."""
    if not name.startswith(checkpoint_name + "."):
        return False
    rest = name[len(checkpoint_name) :]
    return bool(_TMP.fullmatch(rest) or _LEGACY_TMP.fullmatch(rest))


def _umask():
    """The process's umask: read from /proc where it can be (setting it to read it, the fallback, is not
    thread-safe)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_folder(folder):
    """fsync a folder after a rename in it, where the OS allows it (not on Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _average_states(guide):
    if guide is None:
        return None
    return {path: module.average_state() for path, module in vd_guides(guide)}


def _check_averages(where, saved):
    """The saved iterate averages (None, or ``{guide path: None or {"eta", "averages"}}``), checked."""
    if saved is None:
        return None

    def bad(what):
        return ValueError(f"{where}: the iterate averages {what}")

    if not isinstance(saved, dict):
        raise bad("must be a dict or None")
    for path, state in saved.items():
        if state is None:
            continue
        if not isinstance(path, str) or not isinstance(state, dict) or set(state) != {"eta", "averages"}:
            raise bad(f"of guide {path!r} must be None or a dict of 'eta' and 'averages'")
        try:  # the guide's own rule for η
            valid = _check_averaging(state["eta"]) is not None
        except ValueError:
            valid = False
        if not valid:
            raise bad(f"of guide {path!r} have an invalid eta {state['eta']!r}")
        if not isinstance(state["averages"], dict):
            raise bad(f"of guide {path!r} must map parameter names to averages")
        for name, average in state["averages"].items():
            if (
                not isinstance(name, str)
                or not isinstance(average, dict)
                or set(average) != {"count", "mean", "last"}
                or isinstance(average["count"], bool)
                or not isinstance(average["count"], int)
                or average["count"] < 1
                or not isinstance(average["mean"], torch.Tensor)
                or not isinstance(average["last"], torch.Tensor)
                or average["mean"].shape != average["last"].shape
            ):
                raise bad(f"of guide {path!r}: the entry {name!r} must hold a count >= 1 and two tensors")
    return saved


def _check_modules(model, guide):
    for name, module in (("model", model), ("guide", guide)):
        if module is not None and not isinstance(module, torch.nn.Module):
            raise TypeError(
                f"{name} must be a torch.nn.Module (e.g. a PyroModule); got {type(module).__name__}"
            )


def _check_lazy_parts(guide):
    """A ValueError where ``guide`` holds one of Pyro's autoguides that has not been run: its set-up at
    the first step draws its start (init_to_median and the like) from the RNG this load restores, and the
    resumed run would leave the uninterrupted one's path without a word (an AutoGuideList of an
    AutoVariationalDropout and an AutoNormal: θ 0.045 apart after 15 steps). Ours draws nothing there."""
    from pyro.infer.autoguide import AutoCallable, AutoGuide, AutoGuideList

    from ..guides.auto_variational_dropout import AutoVariationalDropout

    lazy = [
        type(part).__name__
        for part in guide.modules()
        if isinstance(part, AutoGuide)
        # (a hand-written guide function, wrapped in AutoCallable, has no set-up and no prototype trace)
        and not isinstance(part, AutoVariationalDropout | AutoGuideList | AutoCallable)
        and getattr(part, "prototype_trace", None) is None
    ]
    if lazy:
        raise ValueError(
            f"the guide's parts {lazy} have not been run: their set-up at the first step would draw from "
            "the random state this checkpoint restores, and the run would not continue as it was. Run "
            "the guide once before load_checkpoint (e.g. guide(*batch), or one svi.step on a throwaway "
            "batch), as the experiments do"
        )
