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

from pyro_vd.cli import FIGURES, LAYER_CASE_METHODS, _agg, _method_list, _positive_int, _write_results
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
    parser.add_argument("--epochs", type=_positive_int, default=None, help="epochs (50)")
    parser.add_argument("--processes", type=_positive_int, default=2)
    parser.add_argument("--methods", type=_method_list, default=None, help="as the command's (all)")
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA))
    parser.add_argument("--out", default="results/layer_case")
    parser.add_argument("--seed", type=int, default=None, help="random seed (0)")
    parser.add_argument("--quick", action="store_true", help="the small network (--quick of the command)")
    parser.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    parser.add_argument(
        "--merge",
        nargs="+",
        metavar="DIR",
        help="only merge the results of these runs (of this script or of pyro-vd layer-case); "
        "--epochs, --methods, --seed and --quick are theirs, not to be given",
    )
    args = parser.parse_args()
    out = pathlib.Path(args.out)
    if (out / "results.json").exists() and not args.overwrite:
        parser.error(f"{out} already holds a run; --overwrite replaces it")
    if args.merge:
        given = [name for name in ("epochs", "methods", "seed") if getattr(args, name) is not None]
        if given or args.quick:
            parser.error(f"--merge takes the runs' own options; do not give {given or ['--quick']}")
        missing = [folder for folder in args.merge if not (pathlib.Path(folder) / "results.json").is_file()]
        if missing:
            parser.error(f"no results.json in {', '.join(missing)}")
        write(out, merge_layer_case([_load(pathlib.Path(folder)) for folder in args.merge]), args.overwrite)
        return
    epochs = 50 if args.epochs is None else args.epochs
    seed = 0 if args.seed is None else args.seed
    groups = share(args.methods or list(LAYER_CASE_METHODS), args.processes)
    parts = [out / "parts" / str(k) for k in range(len(groups))]
    busy = [str(part) for part in parts if part.exists()]
    if busy and not args.overwrite:
        parser.error(f"{', '.join(busy)} already exist; --overwrite replaces them")
    tick = time.perf_counter()
    running = []
    for group, part in zip(groups, parts, strict=True):
        command = [sys.executable, "-m", "pyro_vd", "layer-case", "--methods", ",".join(group)]
        command += ["--epochs", str(epochs), "--threads", "1", "--seed", str(seed)]
        command += ["--data-dir", args.data_dir, "--out", str(part)]
        command += ["--quick"] if args.quick else []
        command += ["--overwrite"] if args.overwrite else []
        print(" ".join(command), flush=True)
        part.parent.mkdir(parents=True, exist_ok=True)
        with open(part.parent / f"{part.name}.log", "w") as log:  # each epoch's line: progress to watch
            running.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT))
    while any(process.poll() is None for process in running):
        failed = [process for process in running if process.poll() not in (None, 0)]
        if failed:  # stop the others at once rather than after hours of training
            for process in running:
                if process.poll() is None:
                    process.terminate()
            sys.exit(f"stopped: {' '.join(failed[0].args)} failed (its log: {out / 'parts'})")
        time.sleep(1.0)
    failed = [process.args for process in running if process.returncode != 0]
    if failed:
        sys.exit(f"{len(failed)} process(es) failed: {failed}")
    result = merge_layer_case([_load(part) for part in parts])
    result["config"]["processes"] = len(groups)
    result["config"]["wall_seconds"] = time.perf_counter() - tick
    write(out, result, args.overwrite)


def _load(folder):
    """A run's result; its seed from its run.json when the result predates the seed's record."""
    result = json.loads((folder / "results.json").read_text())
    record = folder / "run.json"
    if "seed" not in result["config"] and record.is_file():
        result["config"]["seed"] = json.loads(record.read_text())["options"].get("seed")
    return result


def write(out, result, overwrite):
    """The table, results.json, results.md and the plots of ``result`` into ``out``."""
    table = format_layer_case(result)
    _agg()
    if overwrite:  # no plot of the run replaced may stay beside the new one
        for stem in FIGURES["layer-case"]:
            (out / f"{stem}.png").unlink(missing_ok=True)
    written = _write_results(out, result, table, layer_case_figures(result))
    print(table)
    seconds = result["config"].get("wall_seconds")
    took = "" if seconds is None else f"{seconds:.0f} s; "
    print(f"\n{took}results in {out}: results.json, results.md, " + ", ".join(p.name for p in written))


if __name__ == "__main__":
    main()
