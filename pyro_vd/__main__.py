"""``python -m pyro_vd``: the ``pyro-vd`` command (:mod:`pyro_vd.cli`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
