"""Run a ``pyro-vd`` MNIST subcommand with the repository's ``../shared/data/mnist`` as the default
data folder (the benchmarks' only difference from the command)."""

import pathlib
import sys

from pyro_vd.cli import main

DEFAULT_DATA = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"


def run(command, default_out):
    argv = sys.argv[1:]
    if "--data-dir" not in argv and DEFAULT_DATA.is_dir():
        argv += ["--data-dir", str(DEFAULT_DATA)]
    if "--out" not in argv:
        argv += ["--out", default_out]
    sys.exit(main([command, *argv]))
