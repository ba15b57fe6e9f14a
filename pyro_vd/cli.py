"""The ``pyro-vd`` command (also ``python -m pyro_vd``): one subcommand per experiment of the seed. Each
prints its table and writes ``results.json``, ``results.md`` (the table) and its PNG plots into ``--out``.

``--out`` is checked before any work and held under a lock for the whole run; a folder that already
holds a run is refused unless ``--resume`` continues it or ``--overwrite`` replaces it
(:mod:`pyro_vd.experiments.run_dir`).

Under ``torchrun --nproc_per_node=N -m pyro_vd <command> ...`` the training commands
(:data:`DISTRIBUTED`) train data-parallel (:mod:`pyro_vd.distributed`): rank 0 alone checks and locks
``--out``, then tells the other ranks to start (or to stop with its exit status) and hands them its
completed options; rank 0 alone prints and writes. The other commands run on rank 0 alone."""

import argparse
import contextlib
import math
import os
import pathlib
import signal
import sys
import threading

from .experiments.run_dir import (
    RunDir,
    RunDirBusy,
    RunDirError,
    recorded_options,
    results_json,
    write_atomically,
)


def _write_results(out, result, table, figures=None):
    """Write results.json, results.md and the figures ``{stem: Figure}`` as PNGs into ``out``."""
    if out is None:
        return []
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_atomically(out / "results.json", results_json(result))
    write_atomically(out / "results.md", table + "\n")
    written = []
    if figures:
        import matplotlib.pyplot as plt

        for stem, fig in figures.items():
            path = out / f"{stem}.png"
            write_atomically(path, lambda f, fig=fig: fig.savefig(f, dpi=110, format="png"))
            plt.close(fig)
            written.append(path)
    return written


def _agg():
    import matplotlib

    matplotlib.use("Agg")


def _seed_everything(seed):
    import pyro

    pyro.set_rng_seed(seed)  # torch, python and numpy's legacy global generator


def _log(args):
    if args.quiet:
        return lambda *a, **k: None
    from tqdm.auto import tqdm

    return tqdm.write


def _report(args, table, written, header=""):
    if header:
        print(header + "\n")
    print(table)
    if written or args.out:
        print(f"\nresults in {args.out}: results.json, results.md" + "".join(f", {p.name}" for p in written))


# ------------------------------------------------------------------------------------------ commands
#: The sizes of the ARD commands: (full run, with --quick). --quick fixes them.
SIZES = {
    "ard-table": {"n": (1000, 150), "d": (1000, 40)},
    "ard-minibatch": {"n": (100000, 5000), "d": (100, 20), "steps": (3000, 300)},
}


def _kl_table(args):
    from .experiments.kl_table import format_kl_table, kl_table

    result = kl_table()
    table = format_kl_table(result)
    written = _write_results(args.out, result, table)
    _report(args, table, written, "KL(N(θ, αθ²) ‖ LogUniform), normalized so that KL → 0 as α → ∞")
    return 0


def _ard_table(args):
    _agg()
    from .experiments.ard import format_rows, more_features
    from .experiments.ard_data import make_ard_regression
    from .linear import VDRegression
    from .plots import plot_coefficients

    _seed_everything(args.seed)
    n, d = args.n, args.d
    result = more_features(n=n, d=d, n_relevant=args.n_relevant, seed=args.seed, log=_log(args))
    irrelevant = d - args.n_relevant
    table = (
        f"Regression ({n} objects, {args.n_relevant} relevant + {irrelevant} irrelevant features)\n\n"
        + format_rows(result["regression"])
        + "\n\nClassification\n\n"
        + format_rows(result["classification"])
    )
    X, y, *_ = make_ard_regression(n, d, args.n_relevant, seed=args.seed)
    figures = {"vd_rvr_coefficients": plot_coefficients(VDRegression().fit(X, y), max_features=30)}
    written = _write_results(args.out, result, table, figures)
    _report(args, table, written, "ARD: variational dropout against the RVM and G-KL (the seed's table)")
    return 0


def _ard_minibatch(args):
    _agg()
    from .experiments.ard import format_rows, minibatch
    from .plots import plot_batch_size

    _seed_everything(args.seed)
    n, d, steps = args.n, args.d, args.steps
    fractions = (0.01, 0.1) if args.quick else (0.001, 0.01, 0.1)
    include = None if not args.quick else ("VD-RVR", "RVR", "VD-RVC", "RVC")
    result = minibatch(
        n=n,
        d=d,
        n_relevant=args.n_relevant,
        fractions=fractions,
        steps=steps,
        seed=args.seed,
        include=include,
        log=_log(args),
    )
    table = (
        f"Regression ({n} × {d}, {args.n_relevant} relevant)\n\n"
        + format_rows(result["regression"])
        + "\n\nClassification\n\n"
        + format_rows(result["classification"])
    )
    figures = {
        f"batch_size_{task}": plot_batch_size(result[task]) for task in ("regression", "classification")
    }
    written = _write_results(args.out, result, table, figures)
    _report(args, table, written, "ARD with minibatch SVI across batch sizes (the seed's plots)")
    return 0


def _load(args):
    import torch

    from .datasets import load_cifar10, load_mnist

    loader = load_cifar10 if args.dataset == "cifar10" else load_mnist
    try:
        data = loader(args.data_dir)
    except (OSError, ValueError) as error:
        raise DataError(f"{error} (give the folder with --data-dir or $PYRO_VD_DATA)") from error
    if args.quick:  # a small slice: the command's plumbing in seconds
        data = type(data)(
            data.train_images[:500], data.train_labels[:500], data.test_images[:200], data.test_labels[:200]
        )
    threads = args.threads
    if threads is None:  # 2 for the machine, shared by the processes torchrun started on it
        threads = max(1, 2 // _env_int("LOCAL_WORLD_SIZE", 1))
    torch.set_num_threads(threads)
    return data


def _env_int(name, default):
    try:
        return int(os.environ.get(name) or default)
    except ValueError:
        return default


def _is_main():
    """Rank 0 of a distributed run, or the only process: the one that prints and writes."""
    from .distributed import is_main_process

    return is_main_process()


def _layer_case(args):
    _agg()
    from .experiments.layer_case import (
        HIDDEN,
        METHOD_KEYS,
        format_layer_case,
        layer_case_figures,
        run_layer_case,
    )

    data = _load(args)
    epochs = args.epochs
    hidden = (32, 32, 32) if args.quick else HIDDEN
    methods = [name for key, name in METHOD_KEYS.items() if key in args.methods]  # the experiment's order
    result = run_layer_case(
        data,
        epochs=epochs,
        hidden=hidden,
        methods=methods,
        seed=args.seed,
        device=args.device,
        average_every=args.average_every,
        progress=not args.quiet,
        log=_log(args),
    )
    if not _is_main():
        return 0
    result["config"]["dataset"] = args.dataset
    table = format_layer_case(result)
    written = _write_results(args.out, result, table, layer_case_figures(result))
    sizes = "-".join(str(s) for s in result["config"]["sizes"])
    _report(args, table, written, f"The layer case on {args.dataset} ({sizes}), {epochs} epochs")
    return 0


def _sparse_mnist(args):
    _agg()
    from .experiments.sparse_vd_mnist import run_sparse_vd_mnist
    from .plots import (
        plot_first_layer_masks,
        plot_log_alpha_histogram,
        plot_log_alpha_vs_theta,
        plot_training_curves,
    )

    data = _load(args)
    epochs = args.epochs
    result, report, _, guide = run_sparse_vd_mnist(
        data,
        arch=args.arch,
        epochs=epochs,
        kl_method=args.kl_method,
        clip_log_alpha=args.clip_log_alpha,
        train_prune=args.train_prune,
        pretrain_epochs=args.pretrain_epochs,
        device=args.device,
        average_every=args.average_every,
        seed=args.seed,
        out=args.out,
        resume=args.resume,
        progress=not args.quiet,
        log=_log(args),
    )
    if not _is_main():
        return 0
    table = (
        str(report)
        + f"\n\ntest error {100 * result['test_error']:.2f} % at {report.compression:.1f}× compression "
        f"after {epochs} epochs"
    )
    if result.get("pretrained_test_error") is not None:
        table += (
            f", from the deterministic network pretrained for {result['pretrain_epochs']} epochs "
            f"(test error {100 * result['pretrained_test_error']:.2f} %)"
        )
    figures = {
        "log_alpha_vs_theta": plot_log_alpha_vs_theta(guide),
        "log_alpha_histogram": plot_log_alpha_histogram(guide),
        "training": plot_training_curves(result["history"]),
    }
    if args.arch != "lenet5":
        figures["first_layer_masks"] = plot_first_layer_masks(guide)
    written = _write_results(args.out, result, table, figures)
    _report(args, table, written, f"Sparse VD, {args.arch} on MNIST")
    return 0


def _structured_mnist(args):
    _agg()
    from .experiments.structured_mnist import run_structured_mnist
    from .plots import plot_training_curves

    data = _load(args)
    epochs = args.epochs
    summary, small = run_structured_mnist(
        data,
        epochs=epochs,
        sparse_weights=args.sparse_weights,
        seed=args.seed,
        out=args.out,
        resume=args.resume,
        repeats=args.repeats,
        noise_lr=args.noise_lr,
        device=args.device,
        average_every=args.average_every,
        progress=not args.quiet,
        log=_log(args),
    )
    if not _is_main():
        return 0
    total = "-".join(str(v) for v in summary["neurons_total"].values())
    table = "\n".join(
        [
            "| quantity | value |",
            "|---|---:|",
            f"| test error (small network) | {100 * summary['test_error']:.2f} % |",
            f"| input neurons kept | {summary['architecture_kept']} of {total} |",
            f"| weights | {summary['weights_small']} of {summary['weights_dense']} |",
            f"| inference, batch 1000 (dense / small) | {1e3 * summary['dense_seconds']:.2f} / "
            f"{1e3 * summary['small_seconds']:.2f} ms |",
            f"| speedup | {summary['speedup']:.2f}× |",
        ]
    )
    figures = {"training": plot_training_curves(summary["history"])}
    written = _write_results(args.out, summary, table, figures)
    _report(args, table, written, f"Structured Bayesian Pruning of LeNet-500-300\n\n{small}")
    return 0


# ------------------------------------------------------------------------------------ option types
def _integer(minimum, maximum=None):
    """An argparse type: an integer in ``[minimum, maximum]``."""

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}; got {value}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"must be an integer <= {maximum}; got {value}")
        return value

    return parse


_positive_int = _integer(1)
# numpy's legacy generator, which pyro.set_rng_seed seeds too, takes 32 bits
_seed = _integer(0, 2**32 - 1)


def _optional(parse):
    """``parse``, or None for the word 'none'."""

    def parse_optional(text):
        return None if text.strip().lower() == "none" else parse(text)

    parse_optional.__name__ = parse.__name__
    return parse_optional


def _finite(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number; got {text}")
    return value


def _learning_rate(text):
    value = _finite(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive finite number; got {text}")
    return value


def _log_alpha_clip(text):
    """A positive clip C of log α, at most 1e4 (1e308 passed as finite and failed in the first step: no
    float32 clamp takes it; log α of 1e4 is pruned by any rule)."""
    value = _learning_rate(text)
    if value > 1e4:
        raise argparse.ArgumentTypeError(f"must be at most 1e4; got {text}")
    return value


#: ``pyro-vd layer-case --methods``: the short names of :data:`pyro_vd.experiments.layer_case.METHODS`.
LAYER_CASE_METHODS = ("clipped", "clipped-kl3", "free", "binary", "gaussian", "none")


def _method_list(text):
    keys = [key.strip() for key in text.split(",")]
    unknown = [key for key in keys if key not in LAYER_CASE_METHODS]
    if unknown or not text.strip():
        raise argparse.ArgumentTypeError(
            f"expected a comma-separated list of {', '.join(LAYER_CASE_METHODS)}; got {text!r}"
        )
    if len(set(keys)) != len(keys):
        raise argparse.ArgumentTypeError(f"a method is named twice in {text!r}")
    return keys


def _folder(text):
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


# -------------------------------------------------------------------------------------------- parser
#: The PNGs each command writes (``--overwrite`` removes them with the other files of the run).
FIGURES = {
    "ard-table": ("vd_rvr_coefficients",),
    "ard-minibatch": ("batch_size_regression", "batch_size_classification"),
    "layer-case": ("test_error", "alpha_trajectories"),
    "sparse-mnist": ("log_alpha_vs_theta", "log_alpha_histogram", "training", "first_layer_masks"),
    "structured-mnist": ("training",),
}
#: ``--epochs`` (and ``--repeats``) when not given: (full run, with --quick).
DEFAULTS = {
    "layer-case": {"epochs": (10, 1), "device": ("auto", "auto"), "average_every": (1, 1)},
    "sparse-mnist": {
        "epochs": (200, 1),
        "device": ("auto", "auto"),
        "pretrain_epochs": (0, 0),
        "average_every": (1, 1),
    },
    "structured-mnist": {
        "epochs": (200, 1),
        "repeats": (30, 5),
        "device": ("auto", "auto"),
        "average_every": (1, 1),
    },
}
#: Options a resumed run may change (recorded in run.json); every other recorded option must match.
MAY_CHANGE_ON_RESUME = ("epochs", "data_dir", "repeats", "device", "average_every")
#: The commands that train data-parallel under torchrun (the others run on rank 0 alone).
DISTRIBUTED = ("layer-case", "sparse-mnist", "structured-mnist")
#: The global batch of the training commands: the processes must divide it.
BATCH_SIZE = 100
#: Not part of a run's record: they change neither its data nor its trajectory.
NOT_RECORDED = ("run", "parser", "command", "out", "resume", "overwrite", "quiet", "threads")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="pyro-vd", description="Variational dropout for Pyro: reproduce the seed's experiments."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name, run, help_text, *, data=False, resume=False):
        # argparse %-formats help strings (not descriptions): a literal % must be doubled
        sub = commands.add_parser(name, help=help_text.replace("%", "%%"), description=help_text)
        sub.add_argument(
            "--out", metavar="DIR", type=_folder, default=f"results/{name}", help="where results go"
        )
        sub.add_argument("--seed", type=_seed, default=0, help="random seed, 0 to 2**32 - 1 (default 0)")
        sub.add_argument("--quick", action="store_true", help="a small, fast version (seconds)")
        sub.add_argument("--quiet", action="store_true", help="no progress output")
        reuse = sub.add_mutually_exclusive_group()
        reuse.add_argument(
            "--overwrite", action="store_true", help="replace the run already in --out (else it is refused)"
        )
        if resume:
            reuse.add_argument(
                "--resume",
                action="store_true",
                help="continue from the checkpoint in --out (a larger --epochs extends the run)",
            )
        if data:
            sub.add_argument(
                "--data-dir", metavar="DIR", help="the data folder (default: $PYRO_VD_DATA)", default=None
            )
            full, quick = DEFAULTS[name]["epochs"]
            sub.add_argument(
                "--epochs", type=_positive_int, default=None, help=f"epochs ({full}; {quick} with --quick)"
            )
            sub.add_argument(
                "--threads",
                type=_positive_int,
                default=None,
                help="torch CPU threads (2, shared by the processes torchrun starts on a machine)",
            )
            sub.add_argument(
                "--device",
                metavar="DEVICE",
                default=None,
                help="where it trains: auto (default: CUDA when available; under torchrun the rank's "
                "device; a resume keeps the run's), cpu, cuda or cuda:N",
            )
        sub.set_defaults(run=run, parser=sub)
        return sub

    command("kl-table", _kl_table, "the KL to the log-uniform prior by each method, and their errors")
    ard = command("ard-table", _ard_table, "the seed's ARD table: 1000 objects, 10 relevant + 990 irrelevant")
    ard.add_argument("--n", type=_integer(10), default=None, help="objects (at least 10; default 1000)")
    ard.add_argument("--d", type=_positive_int, default=None, help="features (default 1000)")
    ard.add_argument("--n-relevant", type=_integer(0), default=10, help="relevant features (at most --d)")
    mini = command(
        "ard-minibatch", _ard_minibatch, "100 000 × 100 ARD with minibatch SVI at 0.1/1/10 % batches"
    )
    mini.add_argument("--n", type=_integer(10), default=None, help="objects (at least 10; default 100000)")
    mini.add_argument("--d", type=_positive_int, default=None, help="features (default 100)")
    mini.add_argument("--n-relevant", type=_integer(0), default=10, help="relevant features (at most --d)")
    mini.add_argument(
        "--steps", type=_positive_int, default=None, help="SVI steps at each batch size (default 3000)"
    )
    layer = command(
        "layer-case",
        _layer_case,
        "α per layer (clipped at 1, clipped with the KL / 3, or free) against binary/Gaussian/no dropout",
        data=True,
    )
    layer.add_argument("--dataset", choices=("mnist", "cifar10"), default="mnist")
    layer.add_argument(
        "--methods",
        type=_method_list,
        default=list(LAYER_CASE_METHODS),
        metavar="M,M,...",
        help="the methods to train, comma-separated, from "
        + ", ".join(LAYER_CASE_METHODS)
        + " (default: all)",
    )
    sparse = command(
        "sparse-mnist",
        _sparse_mnist,
        "Sparse VD on MNIST (LeNet-300-100 or LeNet-5)",
        data=True,
        resume=True,
    )
    sparse.add_argument("--arch", choices=("lenet300100", "lenet5"), default="lenet300100")
    sparse.add_argument("--kl-method", choices=("molchanov", "kingma", "exact"), default="molchanov")
    sparse.add_argument(
        "--clip-log-alpha",
        type=_optional(_log_alpha_clip),
        default=8.0,
        metavar="C",
        help="clip log α to [-C, C] in the noise and the KL (default 8, the authors' code; 'none': no clip)",
    )
    sparse.add_argument(
        "--train-prune",
        type=_optional(_finite),
        default=3.0,
        metavar="T",
        help="zero the mean of the weights with log α >= T while training (default 3, the authors' "
        "train_clip; 'none': train the unpruned network)",
    )
    sparse.add_argument(
        "--pretrain-epochs",
        type=_integer(0),
        default=None,
        metavar="K",
        help="first train the deterministic network for K epochs and start Sparse VD from its weights "
        "(default 0: from scratch; the paper's LeNet-5 result starts from a pretrained network)",
    )
    structured = command(
        "structured-mnist",
        _structured_mnist,
        "neuron-level noise and pruning of LeNet-500-300",
        data=True,
        resume=True,
    )
    structured.add_argument("--sparse-weights", action="store_true", help="Sparse VD on the weights too")
    structured.add_argument(
        "--noise-lr", type=_learning_rate, default=1e-2, help="learning rate of the noise (> 0)"
    )
    structured.add_argument(
        "--repeats", type=_positive_int, default=None, help="timing repeats (30; 5 with --quick)"
    )
    for sub in (sparse, structured):
        sub.set_defaults(dataset="mnist")
    for sub in (layer, sparse, structured):
        sub.add_argument(
            "--average-every",
            type=_positive_int,
            default=None,
            metavar="K",
            help="under torchrun: 1 (default) averages the gradients every step (DDP); K > 1 lets each "
            "process take K steps on its own batches, then averages the parameters (local SGD: less "
            "communication, not the same trajectory); no effect in one process; a resume keeps the "
            "run's",
        )
    return parser


class DataError(Exception):
    """The data could not be found or read: reported in one line, exit status 1."""


def _complete(args):
    """Fill in the defaults that depend on --quick or on the run being resumed; check the options
    that depend on each other. Before any work."""
    sizes = SIZES.get(args.command, {})
    given = [name for name in sizes if getattr(args, name) is not None]
    if args.quick and given:  # --quick would silently run other sizes than the ones asked for
        flags = "/".join("--" + name for name in given)
        fixed = ", ".join(f"--{name} {quick}" for name, (_, quick) in sizes.items())
        args.parser.error(f"--quick runs at fixed sizes ({fixed}); leave out {flags} or --quick")
    for name, (full, quick) in sizes.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    clip = getattr(args, "clip_log_alpha", None)
    if clip is not None:
        from .inference.pruning import DEFAULT_THRESHOLD

        if clip <= DEFAULT_THRESHOLD:  # log α could never pass the pruning rule: nothing would be pruned
            args.parser.error(
                f"--clip-log-alpha {clip:g} holds log α below the pruning threshold {DEFAULT_THRESHOLD:g}: "
                f"nothing could be pruned; give C > {DEFAULT_THRESHOLD:g} (default 8) or 'none'"
            )
        if args.train_prune is not None and args.train_prune >= clip:
            args.parser.error(
                f"--train-prune {args.train_prune:g} is not below --clip-log-alpha {clip:g}: no weight "
                "could reach it; give a smaller --train-prune, or 'none'"
            )
    if hasattr(args, "n_relevant") and args.n_relevant > args.d:
        quick = " (--quick)" if args.quick else ""
        args.parser.error(f"--n-relevant {args.n_relevant} is more than the {args.d} features{quick}")
    recorded = recorded_options(args.out) if getattr(args, "resume", False) else None
    for name, (full, quick) in DEFAULTS.get(args.command, {}).items():
        if getattr(args, name) is None:  # a resume keeps the run's own value
            previous = (recorded or {}).get(name)
            setattr(args, name, previous if previous is not None else quick if args.quick else full)
    if getattr(args, "device", "auto") != "auto":
        from .distributed import resolve_device

        try:  # an unknown device, or CUDA where there is none: a usage error before the run folder is touched
            resolve_device(args.device)
        except ValueError as error:
            hint = " (a resume keeps the run's --device: give --device cpu or auto)" if recorded else ""
            args.parser.error(f"--device {args.device}: {error}{hint}")
    if getattr(args, "data_dir", None) is not None:
        if not args.data_dir.strip():  # ("" was read as the current folder)
            args.parser.error("--data-dir is empty; give the data folder (or leave it out for $PYRO_VD_DATA)")
        args.data_dir = str(pathlib.Path(args.data_dir).absolute())


def _run_dir(args):
    options = {k: v for k, v in vars(args).items() if k not in NOT_RECORDED}

    def note(message):
        print(f"pyro-vd {args.command}: {message}", file=sys.stderr)

    return RunDir(
        args.out,
        command=args.command,
        options=options,
        resume=getattr(args, "resume", False),
        resumable=hasattr(args, "resume"),
        overwrite=args.overwrite,
        fixed=[k for k in options if k not in MAY_CHANGE_ON_RESUME],
        # every command's: an --overwrite by another command must not leave the old run's plots behind
        figures=sorted({stem for stems in FIGURES.values() for stem in stems}),
        log=note,
    )


def main(argv=None):
    args = build_parser().parse_args(argv)
    if _env_int("WORLD_SIZE", 1) <= 1:
        return _main(args)
    from . import distributed

    session = distributed.init_from_env()
    try:
        with _terminate_as_exit():
            result = _lead(args, session) if session.is_main else _follow(args, session)
    except BaseException:
        # no barrier: the other ranks wait in a collective this one will not join; exiting with the
        # error lets torchrun stop them (with the barrier every rank hung, the traceback unprinted)
        distributed.close(failed=True)
        raise
    # A rank that failed (an exit status) leaves without close()'s barrier too: the others may wait in a
    # collective it will not join (a rank whose data did not load hung the run for gloo's 30 minutes, and
    # ranks stopped by rank 0's usage error printed gloo's "connection reset" from the barrier); so does
    # every rank of a command rank 0 runs alone (the others waited in the barrier, and a run longer than
    # gloo's timeout was killed)
    distributed.close(failed=bool(result) or args.command not in DISTRIBUTED)
    return result


@contextlib.contextmanager
def _terminate_as_exit():
    """SIGTERM raises SystemExit(143) meanwhile (in the main thread): torchrun stops the other ranks with
    it when one fails, and the default handler ended rank 0 without its run folder's clean-up (the run
    an --overwrite replaces stayed in .overwritten/, and a new run's run.json refused the next one)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum, frame):
        # once: a second SIGTERM (a scheduler's, forwarded by torchrun) would interrupt the clean-up
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _main(args, ready=None):
    try:
        _complete(args)
        with _run_dir(args):
            if ready is not None:
                ready()
            return args.run(args)
    except RunDirBusy as error:
        print(f"pyro-vd {args.command}: {error}", file=sys.stderr)
        return 1
    except RunDirError as error:
        args.parser.error(str(error))
    except DataError as error:
        print(f"pyro-vd {args.command}: {error}", file=sys.stderr)
        return 1


def _lead(args, session):
    """Rank 0: check and lock ``--out`` as a single process would, then start the other ranks with the
    completed options, or stop them with the exit status."""
    from .distributed import broadcast_object

    sent = []

    def send(message):
        if not sent:
            sent.append(message)
            broadcast_object(message)

    def ready():
        if args.command in DISTRIBUTED and BATCH_SIZE % session.world_size:
            raise RunDirError(
                f"the batch of {BATCH_SIZE} cannot be split evenly over {session.world_size} processes; "
                f"run a number of processes that divides {BATCH_SIZE}"
            )
        send(("start", {k: v for k, v in vars(args).items() if k not in ("run", "parser")}))

    try:
        status = _main(args, ready)
    except SystemExit as stop:
        send(("stop", stop.code))
        raise
    except BaseException:
        send(("stop", 1))
        raise
    send(("stop", status))
    return status


def _follow(args, session):
    """Another rank: wait for rank 0's verdict on ``--out``, then train with its options, quietly."""
    from .distributed import broadcast_object

    verdict, value = broadcast_object(None)
    if verdict == "stop":
        return value if isinstance(value, int) else 1
    vars(args).update(value)
    if args.command not in DISTRIBUTED:
        return 0
    args.quiet = True
    try:
        return args.run(args)
    except (DataError, RunDirError) as error:  # (rank 0 may never meet it: data local to this rank)
        print(f"pyro-vd {args.command} (rank {session.rank}): {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
