"""The ``pyro-vd`` command: one subcommand per experiment, each printing its table and writing
``results.json`` and ``results.md`` into ``--out``."""

import argparse
import json
import pathlib
import sys


def _write_results(out, result, table):
    if out is None:
        return
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "results.md").write_text(table + "\n")


def _kl_table(args):
    from .experiments.kl_table import format_kl_table, kl_table

    result = kl_table()
    table = format_kl_table(result)
    print("KL(N(θ, αθ²) ‖ LogUniform), normalized so that KL → 0 as α → ∞\n")
    print(table)
    _write_results(args.out, result, table)
    return 0


def build_parser():
    parser = argparse.ArgumentParser(
        prog="pyro-vd", description="Variational dropout for Pyro: reproduce the seed's experiments."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    kl = commands.add_parser(
        "kl-table", help="the KL to the log-uniform prior by each method, and their errors"
    )
    kl.add_argument("--out", metavar="DIR", help="write results.json and results.md here")
    kl.set_defaults(run=_kl_table)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
