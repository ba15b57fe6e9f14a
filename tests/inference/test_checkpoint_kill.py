"""Saves killed by SIGKILL part-way: the previous checkpoint survives, and the next save removes what
the killed writers left behind."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pyro
import pytest
import torch

from pyro_vd.inference import checkpoint, load_checkpoint, save_checkpoint

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL"),
]

# Saves the same checkpoint over and over with a large payload, printing each completed epoch.
WRITER = textwrap.dedent(
    """
    import sys
    import pyro, torch
    from pyro_vd.inference import save_checkpoint

    pyro.param("w", torch.ones(3))
    optim = pyro.optim.Adam({"lr": 0.1})
    payload = torch.randn(8_000_000)  # 32 MB: the temporary file lives long enough to be caught
    epoch = 0
    while True:
        save_checkpoint(sys.argv[1], optim=optim, epoch=epoch, extra={"epoch": epoch, "payload": payload})
        print(epoch, flush=True)
        epoch += 1
    """
)


def _temporaries(folder, pid):
    return [p for p in folder.iterdir() if p.name.startswith("ckpt.pt.") and f".{pid}." in p.name]


def _kill_mid_save(path):
    """Start a writer, let it complete one save, SIGKILL it while a temporary file exists; returns the
    pid and its leftovers (none if the kill landed between two saves)."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, env=env, text=True
    )
    try:
        assert writer.stdout.readline().strip() == "0", "the writer did not complete its first save"
        deadline = time.monotonic() + 30
        while not _temporaries(path.parent, writer.pid) and time.monotonic() < deadline:
            time.sleep(0.001)
        os.kill(writer.pid, signal.SIGKILL)
    finally:
        writer.kill()
        writer.wait()
        writer.stdout.close()
    return writer.pid, _temporaries(path.parent, writer.pid)


def test_killed_saves_leave_the_last_checkpoint_and_are_cleaned_up(tmp_path):
    path = tmp_path / "ckpt.pt"
    caught = []  # (pid, leftovers) of writers killed while a temporary file existed
    for _ in range(8):
        pid, files = _kill_mid_save(path)
        if files:
            caught.append((pid, files))
        if len(caught) == 2:
            break
    assert len(caught) == 2, "no save was caught part-way"
    (_, first), (_, leftovers) = caught
    assert not any(p.exists() for p in first)  # the second writer's saves removed them
    assert all(p.exists() for p in leftovers)  # possibly empty: killed before its first byte

    # the last complete checkpoint loads, with its whole payload
    optim = pyro.optim.Adam({"lr": 0.1})
    state = load_checkpoint(path, optim=optim)
    assert state["extra"]["epoch"] == state["epoch"]
    assert state["extra"]["payload"].shape == (8_000_000,)

    # a temporary file of a live writer (this process) and one of another checkpoint stay
    live = tmp_path / f"ckpt.pt.{checkpoint._writer_tag()}.{os.getpid()}.abcdefgh.tmp"
    other = tmp_path / leftovers[0].name.replace("ckpt.pt", "other.pt", 1)
    live.write_bytes(b"being written")
    other.write_bytes(b"not ours")

    save_checkpoint(path, optim=optim, epoch=state["epoch"] + 1, extra={"epoch": "after"})
    assert not any(p.exists() for p in leftovers)
    assert live.exists() and other.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["ckpt.pt", live.name, other.name])
    assert load_checkpoint(path, optim=optim)["extra"] == {"epoch": "after"}
    assert torch.equal(pyro.param("w").detach(), torch.ones(3))
