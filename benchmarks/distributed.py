"""
Data-parallel Sparse VD: seconds per training epoch of LeNet-300-100 (the recipe of
``pyro-vd sparse-mnist``) with 1 and with 2 processes of one thread each (gloo, CPU), the speed-up
(target ≥ 1.7× on a 2-core machine), and the peak resident memory of every rank.

Two ways to scale (``--scaling``):

* ``strong``: the global batch stays 100, so each of W ranks takes 100 / W rows a step, and an epoch
  has the same 600 steps: only the batch-proportional work (the matmuls) is shared; the per-parameter
  work (σ², the KL and Adam over all 532 000 variational parameters) and the framework's per-step cost
  are repeated on every rank, and the gradient all-reduce is added.
* ``weak`` (the usual data-parallel set-up): each rank keeps a local batch of 100, the global batch is
  100·W and an epoch has 600 / W steps.

``--average-every K ...`` also times the multi-process runs with local SGD
(:class:`pyro_vd.distributed.LocalSGD`: each rank steps on its own gradients, the parameters are averaged
every K steps) instead of DDP's gradient all-reduce every step (K = 1).

Each configuration runs in its own ``python -m torch.distributed.run --nproc_per_node N`` launch of
this script (``--worker``), through :func:`pyro_vd.experiments.run_sparse_vd_mnist`, whose
``train_seconds`` leave out the per-epoch evaluation. Data: random MNIST-shaped tensors (throughput
does not depend on the values), or the real files with ``--data-dir``. Timings mean something only on
an otherwise idle machine.

    python benchmarks/distributed.py [--processes 1 2] [--epochs 1] [--n-train 60000] [--data-dir DIR]
                                     [--scaling strong|weak|both] [--average-every 1 4]
"""

import argparse
import json
import os
import pathlib
import resource
import socket
import subprocess
import sys
import tempfile


def _worker(args):
    import torch

    from pyro_vd import distributed
    from pyro_vd.datasets import MNIST, load_mnist
    from pyro_vd.experiments import run_sparse_vd_mnist

    torch.set_num_threads(1)
    session = distributed.init_from_env()
    if args.data_dir:
        data = load_mnist(args.data_dir)
        data = MNIST(data.train_images[: args.n_train], data.train_labels[: args.n_train], *data[2:])
    else:
        generator = torch.Generator().manual_seed(0)
        data = MNIST(
            torch.rand(args.n_train, 1, 28, 28, generator=generator),
            torch.randint(0, 10, (args.n_train,), generator=generator),
            torch.rand(1000, 1, 28, 28, generator=generator),
            torch.randint(0, 10, (1000,), generator=generator),
        )
    batch_size = 100 * (session.world_size if args.scaling == "weak" else 1)
    result, _, _, _ = run_sparse_vd_mnist(
        data,
        epochs=args.epochs,
        batch_size=batch_size,
        average_every=args.average_every[0],
        log=lambda _: None,
    )
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    seconds = distributed.gather_objects(result["train_seconds"] / args.epochs)
    peaks = distributed.gather_objects(peak_mb)
    if session.is_main:
        record = {
            "processes": session.world_size,
            "average_every": args.average_every[0],
            "epoch_seconds": max(seconds),
            "peak_rss_mb": peaks,
            "test_error": result["test_error"],
            "compression": result["sparsity"]["compression"],
        }
        pathlib.Path(args.report).write_text(json.dumps(record))
    distributed.close()


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _launch(processes, scaling, average_every, args, report):
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        str(processes),
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_port()),
        __file__,
        "--worker",
        "--report",
        report,
        "--epochs",
        str(args.epochs),
        "--n-train",
        str(args.n_train),
        "--scaling",
        scaling,
        "--average-every",
        str(average_every),
        *(["--data-dir", args.data_dir] if args.data_dir else []),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    subprocess.run(command, check=True, env=env)
    return json.loads(pathlib.Path(report).read_text())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--n-train", type=int, default=60000)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--scaling", choices=["strong", "weak", "both"], default="both")
    parser.add_argument(
        "--average-every",
        type=int,
        nargs="+",
        default=[1],
        help="multi-process runs: 1 = DDP (gradients averaged every step), K > 1 = local SGD",
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--report", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return _worker(args)
    scalings = ["strong", "weak"] if args.scaling == "both" else [args.scaling]
    print(f"LeNet-300-100, {args.n_train} images, one thread per process\n")
    print(
        "| scaling | processes | averaging | batch per rank | s / epoch | speed-up | test error | "
        "compression | peak RSS per rank (MB) |"
    )
    print("|---|---:|---|---:|---:|---:|---:|---:|---|")
    records = {}

    def quality(row):  # random images and labels (no --data-dir): nothing to learn, nothing to report
        if not args.data_dir:
            return "– | –"
        return f"{100 * row['test_error']:.2f} % | {row['compression']:.1f}×"

    with tempfile.TemporaryDirectory() as folder:
        for scaling in scalings:
            rows = records[scaling] = []
            for processes in args.processes:
                for average_every in args.average_every if processes > 1 else [1]:
                    report = str(pathlib.Path(folder) / f"{scaling}-{processes}-{average_every}.json")
                    rows.append(_launch(processes, scaling, average_every, args, report))
                    row = rows[-1]
                    local = 100 // processes if scaling == "strong" else 100
                    speedup = rows[0]["epoch_seconds"] / row["epoch_seconds"]
                    peaks = " / ".join(f"{mb:.0f}" for mb in row["peak_rss_mb"])
                    how = "–" if processes == 1 else "DDP" if average_every == 1 else f"every {average_every}"
                    print(
                        f"| {scaling} | {processes} | {how} | {local} | {row['epoch_seconds']:.2f} | "
                        f"{speedup:.2f}× | {quality(row)} | "
                        f"{peaks} |",
                        flush=True,
                    )
    print("\n" + json.dumps(records))


if __name__ == "__main__":
    main()
