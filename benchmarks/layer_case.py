"""
The seed's layer case at full length: 3FC(1000) on MNIST for every method of ``pyro-vd layer-case``
(α per layer clipped at 1, clipped with the KL divided by 3, free; binary, Gaussian and no dropout),
the methods spread over ``--processes`` processes of one thread each, then merged into one table
(final and best test error, final α per layer and its drift over the last 10 epochs) and the two plots.

    python benchmarks/layer_case.py --epochs 50 --processes 2 --out results/layer_case
    python benchmarks/layer_case.py --merge runA runB --out results/layer_case   # runs made apart

Each process is ``pyro-vd layer-case --methods ... --threads 1`` writing into ``--out/parts/<k>``, with
its log (a line per epoch) in ``--out/parts/<k>.log``; the merged results.json, results.md,
test_error.png and alpha_trajectories.png go into ``--out``. A VD method is counted as four times a
baseline's work (the trick's second matmul per layer forward and backward, the noise, the KL and the
variational parameters' updates) when the methods are shared out; with ``--processes 4`` each VD method
has its own process and the baselines share the fourth.
"""

import argparse
import json
import pathlib
import subprocess
import sys
import time

from _mnist_command import DEFAULT_DATA

from pyro_vd.cli import LAYER_CASE_METHODS, _agg, _write_results
from pyro_vd.experiments.layer_case import (
    METHOD_KEYS,
    VD_SETTINGS,
    format_layer_case,
    layer_case_figures,
    merge_layer_case,
)

#: Relative cost of a method's epoch (measured: see the module docstring).
COST = {key: 4.0 if METHOD_KEYS[key] in VD_SETTINGS else 1.0 for key in LAYER_CASE_METHODS}


def share(keys, processes):
    """Greedy longest-first: each method to the process with the least work so far."""
    loads = [[0.0, []] for _ in range(processes)]
    for key in sorted(keys, key=lambda k: -COST[k]):
        load = min(loads, key=lambda item: item[0])
        load[0] += COST[key]
        load[1].append(key)
    return [keys for _, keys in loads if keys]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--methods", default=",".join(LAYER_CASE_METHODS))
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA))
    parser.add_argument("--out", default="results/layer_case")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="the small network (--quick of the command)")
    parser.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    parser.add_argument(
        "--merge",
        nargs="+",
        metavar="DIR",
        help="only merge the results.json of these runs (of this script or of pyro-vd layer-case)",
    )
    args = parser.parse_args()
    out = pathlib.Path(args.out)
    if (out / "results.json").exists() and not args.overwrite:
        parser.error(f"{out} already holds a run; --overwrite replaces it")
    if args.merge:
        runs = [pathlib.Path(folder) / "results.json" for folder in args.merge]
        missing = [str(run) for run in runs if not run.is_file()]
        if missing:
            parser.error(f"no results in {', '.join(missing)}")
        write(out, merge_layer_case([json.loads(run.read_text()) for run in runs]))
        return
    keys = [key.strip() for key in args.methods.split(",")]
    unknown = [key for key in keys if key not in LAYER_CASE_METHODS]
    if unknown:
        parser.error(f"unknown methods {unknown}; choose from {', '.join(LAYER_CASE_METHODS)}")
    groups = share(keys, max(1, args.processes))
    parts = [out / "parts" / str(k) for k in range(len(groups))]
    tick = time.perf_counter()
    running = []
    for group, part in zip(groups, parts, strict=True):
        command = [sys.executable, "-m", "pyro_vd", "layer-case", "--methods", ",".join(group)]
        command += ["--epochs", str(args.epochs), "--threads", "1", "--seed", str(args.seed)]
        command += ["--data-dir", args.data_dir, "--out", str(part)]
        command += ["--quick"] if args.quick else []
        command += ["--overwrite"] if args.overwrite else []
        print(" ".join(command), flush=True)
        part.parent.mkdir(parents=True, exist_ok=True)
        with open(part.parent / f"{part.name}.log", "w") as log:  # each epoch's line: progress to watch
            running.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT))
    failed = [p.args for p in running if p.wait() != 0]
    if failed:
        sys.exit(f"{len(failed)} process(es) failed: {failed}")
    result = merge_layer_case([json.loads((part / "results.json").read_text()) for part in parts])
    result["config"]["processes"] = len(groups)
    result["config"]["wall_seconds"] = time.perf_counter() - tick
    write(out, result)


def write(out, result):
    """The table, results.json, results.md and the plots of ``result`` into ``out``."""
    table = format_layer_case(result)
    _agg()
    written = _write_results(out, result, table, layer_case_figures(result))
    print(table)
    seconds = result["config"].get("wall_seconds")
    took = "" if seconds is None else f"{seconds:.0f} s; "
    print(f"\n{took}results in {out}: results.json, results.md, " + ", ".join(p.name for p in written))


if __name__ == "__main__":
    main()
