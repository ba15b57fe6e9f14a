"""
The run folder (``--out``) of a ``pyro-vd`` command: checked before any work, held under a lock for the
whole run, and never silently reused.

* ``--out`` must not be empty, an existing file, or a folder that cannot be written.
* A folder that already holds files is refused unless the run ``resume``\\ s it (then its checkpoint
  must exist, and the options recorded in ``run.json`` must agree with the new ones) or ``overwrite``\\ s
  it (then the files a ``pyro-vd`` run writes are moved aside into ``.overwritten/`` and deleted when
  the new run ends, put back if it fails before its first checkpoint, and kept if it fails after it;
  other files are left alone; a folder that holds files of those names but no ``pyro-vd`` ``run.json``
  is refused: they are the user's own; a folder still holding ``.overwritten/``, from a run killed
  meanwhile, is refused until the user has moved its files back or deleted it).
* ``run.lock`` in the folder is held with :func:`fcntl.flock` for the whole run: a second run into the
  same folder stops at once (:class:`RunDirBusy`). The kernel drops the lock when its process dies, so a
  lock file left by a killed run is stale: it is taken over, and reported.
* ``run.json`` records the command, its options and every resume (with what changed).
* A run that fails before its first checkpoint (e.g. on missing data, or while writing its results
  when it has no checkpoint) leaves the folder as it found it: what it wrote is removed, a new folder
  is removed again, and a resume's entry is taken back out of ``run.json``.

Example::

    with RunDir("results/x", command="sparse-mnist", options={"seed": 0}, fixed=("seed",)) as run:
        ...  # the lock is held here
"""

import datetime
import errno
import fcntl
import json
import math
import os
import pathlib
import shutil

from ..inference.checkpoint import is_checkpoint_temporary

RUN_FILE = "run.json"
LOCK_FILE = "run.lock"
CHECKPOINT = "checkpoint.pt"
#: What a run writes, and so what ``overwrite=True`` removes (besides the PNGs named by the caller).
RUN_FILES = (RUN_FILE, CHECKPOINT, "results.json", "results.md")
#: Where ``overwrite=True`` keeps the files it replaces until the new run has trained.
STAGING = ".overwritten"


class RunDirError(ValueError):
    """``--out`` cannot be used as asked (a usage error: exit status 2)."""


class RunDirBusy(RunDirError):
    """Another live process holds the folder's lock (exit status 1)."""


def check_out_path(path):
    """
    Refuse an ``--out`` that cannot hold a run, before any work: an empty name, an existing file, or a
    folder (or the nearest existing parent of a folder still to be made) that is not writable.

    :returns: the path as a :class:`pathlib.Path`.
    :raises RunDirError: naming the path and the problem.
    """
    if path is None or not str(path).strip():
        raise RunDirError("--out is empty; give a folder for the results")
    path = pathlib.Path(path)
    try:
        path.exists()
    except OSError as error:  # (a name over the file system's limit: a raw "File name too long")
        raise RunDirError(f"--out {str(path)!r} cannot be used: {error.strerror}") from error
    if path.exists() and not path.is_dir():
        raise RunDirError(f"--out {str(path)!r} is a file, not a folder")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise RunDirError(f"--out {str(path)!r}: {str(existing)!r} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise RunDirError(f"--out {str(path)!r}: {str(existing)!r} is not writable")
    return path


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, but another user's
        return True
    return True


class RunDir:
    """
    The folder of one run, as a context manager (see the module docstring).

    :param path: the folder (made if missing).
    :param str command: the subcommand, recorded in ``run.json``.
    :param dict options: the run's options (JSON-serializable), recorded in ``run.json``.
    :param bool resume: continue the run in ``path``: its ``checkpoint.pt`` must exist.
    :param bool resumable: the command can resume (so a refusal suggests ``--resume``).
    :param bool overwrite: replace the run in ``path``.
    :param fixed: the options that must equal the recorded ones on a resume (the others may change;
        what changed is recorded).
    :param figures: the PNG stems the command writes (removed by ``overwrite`` with :data:`RUN_FILES`).
    :param log: where the notes go (a stale lock taken over, files replaced).
    """

    def __init__(
        self,
        path,
        *,
        command,
        options,
        resume=False,
        resumable=False,
        overwrite=False,
        fixed=(),
        figures=(),
        log=print,
    ):
        if resume and overwrite:
            raise RunDirError("--resume and --overwrite contradict each other; give one")
        self.path = check_out_path(path)
        self.command, self.options = command, dict(options)
        self.resume, self.resumable, self.overwrite = resume, resumable, overwrite
        self.fixed, self.figures, self.log = tuple(fixed), tuple(figures), log
        self._lock = self._made = self._previous = self._checkpoint = self._staged = None
        self._replaced = set()
        self._wrote = False

    # ------------------------------------------------------------------------------------- locking
    def _acquire(self):
        lock_path = self.path / LOCK_FILE
        while True:
            try:
                # not through a symbolic link: its target was truncated and took the process id
                fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
            except OSError as error:
                raise RunDirError(f"cannot make the lock {str(lock_path)!r}: {error.strerror}") from error
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                os.close(fd)
                if error.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise RunDirError(
                        f"cannot lock {str(lock_path)!r} ({error.strerror}); give an --out on a local disk"
                    ) from error
                holder = _read_pid(lock_path)
                who = f"process {holder}" if holder else "another process"
                raise RunDirBusy(
                    f"--out {str(self.path)!r} is in use by {who} (lock {str(lock_path)!r}); "
                    "wait for it to finish or give another --out"
                ) from None
            try:  # the holder before us may have removed the file after we opened it: lock the new one
                same = os.path.samestat(os.fstat(fd), os.stat(lock_path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        previous = os.read(fd, 64).decode(errors="replace").strip()
        if previous:
            alive = previous.isdigit() and _pid_alive(int(previous))
            state = "no longer holds it" if alive else "is no longer running"
            self.log(f"took over the stale lock {str(lock_path)!r} (process {previous} {state})")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock = fd

    def _release(self):
        if self._lock is None:
            return
        # Remove the file while still holding the lock; a process that opened it meanwhile sees that
        # the path no longer names its file and retries on a fresh one.
        (self.path / LOCK_FILE).unlink(missing_ok=True)
        os.close(self._lock)
        self._lock = None

    # --------------------------------------------------------------------------------- the folder
    def _contents(self):
        return sorted(p.name for p in self.path.iterdir() if p.name != LOCK_FILE)

    def _ours(self, name):
        return (
            name in RUN_FILES
            or (name.endswith(".tmp") and name[: -len(".tmp")] in RUN_FILES)  # write_atomically's
            or (name.endswith(".png.tmp") and name[: -len(".png.tmp")] in self.figures)
            or is_checkpoint_temporary(name, CHECKPOINT)  # save_checkpoint's (not a user's copy)
            or (name.endswith(".png") and name[: -len(".png")] in self.figures)
        )

    def _check_resume(self):
        if not (self.path / CHECKPOINT).is_file():
            raise RunDirError(
                f"--resume: there is no {CHECKPOINT} in {str(self.path)!r} to resume; "
                "leave out --resume to start a new run"
            )
        record_path = self.path / RUN_FILE
        if not record_path.is_file():
            self.log(f"{RUN_FILE} is missing from {str(self.path)!r}: the options cannot be compared")
            return {"command": self.command, "options": self.options, "resumes": []}
        try:
            record = json.loads(record_path.read_text())
            recorded = record["options"]
            if not isinstance(recorded, dict) or not isinstance(record.get("resumes", []), list):
                raise TypeError("its options must be a mapping and its resumes a list")
        except (ValueError, KeyError, TypeError) as error:
            raise RunDirError(f"{str(record_path)!r} is not a pyro-vd run record: {error}") from error
        if record.get("command") != self.command:
            raise RunDirError(
                f"--resume: {str(self.path)!r} holds a {record.get('command')!r} run, not {self.command!r}"
            )
        for name in self.fixed:
            if name in recorded and recorded[name] != self.options.get(name):
                flag = "--" + name.replace("_", "-")
                raise RunDirError(
                    f"--resume {_describe(flag, self.options.get(name))}, but the run in "
                    f"{str(self.path)!r} was made {_describe(flag, recorded[name])}: resume with the "
                    f"same {flag}, or start a new --out"
                )
        changed = {
            name: [recorded.get(name), value]
            for name, value in self.options.items()
            if recorded.get(name) != value
        }
        record.setdefault("resumes", []).append({"at": _now(), "changed": changed})
        record["options"] = {**recorded, **self.options}
        return record

    def _prepare(self):
        contents = self._contents()
        if self.resume:
            return self._check_resume()
        if contents and not self.overwrite:
            shown = ", ".join(contents[:4]) + (", …" if len(contents) > 4 else "")
            hint = "--resume to continue it or --overwrite" if self.resumable else "--overwrite"
            raise RunDirError(
                f"--out {str(self.path)!r} already holds files ({shown}); pass {hint} to replace it, "
                "or give another --out"
            )
        staging = self.path / STAGING
        if staging.exists():
            if _newer(self.path / CHECKPOINT, staging / CHECKPOINT):  # the --overwrite run trained, failed
                advice = (
                    f"the folder's own {CHECKPOINT} is the newer run that replaced them, which trained "
                    f"(--resume goes on with it): delete {STAGING}/ once you do not need the older run, "
                    "or move it elsewhere; moving its files back would replace the newer run"
                )
            else:
                advice = f"move them back into the folder, or delete {STAGING}/ once you do not need them"
            raise RunDirError(
                f"--out {str(self.path)!r} holds {STAGING}/, the files of a run that an interrupted "
                f"--overwrite replaced: {advice}; then run again"
            )
        replaced = [name for name in contents if self._ours(name)]
        if replaced and not _is_run_record(self.path / RUN_FILE):
            # no pyro-vd run here to replace: files of those names (a checkpoint.pt, a results.md) are
            # the user's own, and --overwrite replaced or deleted them
            raise RunDirError(
                f"--out {str(self.path)!r} holds {', '.join(replaced)} but no pyro-vd {RUN_FILE}: they are "
                "not a pyro-vd run's, so --overwrite does not replace them; give another --out, or move them"
            )
        if replaced:
            staging.mkdir()
            self._staged = staging
            # (all of them, also those an interruption leaves unmoved: _undo must not take them for
            # files of the failed run)
            self._replaced = set(replaced)
            for name in replaced:
                os.replace(self.path / name, staging / name)
            self.log(
                f"--overwrite: replacing {', '.join(replaced)} in {str(self.path)!r} (kept in {STAGING}/ "
                "until the new run has trained)"
            )
        return {"command": self.command, "options": self.options, "started": _now(), "resumes": []}

    def __enter__(self):
        made = self.path
        while not made.parent.exists():
            made = made.parent
        self._made = None if made.exists() else made
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise RunDirError(f"--out {str(self.path)!r} cannot be made: {error.strerror}") from error
        self._acquire()
        try:
            record_path = self.path / RUN_FILE
            self._previous = record_path.read_text() if self.resume and record_path.is_file() else None
            self.record = self._prepare()
            self._checkpoint = _stat(self.path / CHECKPOINT)  # after --overwrite moved the old one aside
            self._write_record()
        except BaseException:
            self._undo()
            raise
        return self

    def __exit__(self, exc_type, exc, traceback):
        if exc_type is not None and _stat(self.path / CHECKPOINT) == self._checkpoint:
            self._undo()  # nothing was trained: leave the folder as it was
        else:
            if self._staged is not None:
                if exc_type is None:  # the new run has ended: the old files go
                    shutil.rmtree(self._staged, ignore_errors=True)
                else:  # it failed after a checkpoint: both kept (its --resume, and the run it replaced)
                    self.log(
                        f"the run failed after its first checkpoint: it can go on with --resume; the run it "
                        f"replaced is kept in {str(self._staged)!r} until you delete it"
                    )
                self._staged = None
            self._release()
        return False

    def _undo(self):
        record_path = self.path / RUN_FILE
        if self._wrote and self._previous is not None:
            record_path.write_text(self._previous)
        elif self._wrote and (self._contents() == [RUN_FILE] or self._staged is not None):
            record_path.unlink()
        if self._staged is not None or (self._wrote and self._previous is None and not self.resume):
            # what the failed run wrote (results, figures: a new run's, or one that --overwrite staged
            # the old files of), and only that; the replaced files come back below
            for name in self._contents():
                if name not in self._replaced and name != STAGING and self._ours(name):
                    (self.path / name).unlink(missing_ok=True)
        if self._staged is not None:
            for moved in self._staged.iterdir():
                os.replace(moved, self.path / moved.name)
            self._staged.rmdir()
            self._staged = None
        self._release()
        if self._made is not None and not any(self.path.iterdir()):
            folder = self.path
            while True:  # the folders this run made, from the innermost
                try:
                    folder.rmdir()
                except OSError:
                    break
                if folder == self._made:
                    break
                folder = folder.parent

    def _write_record(self):
        write_atomically(self.path / RUN_FILE, json.dumps(self.record, indent=2) + "\n")
        self._wrote = True


def _newer(path, than):
    """Whether file ``path`` exists and was written after ``than`` (or ``than`` does not exist)."""
    try:
        written = path.stat().st_mtime_ns
    except OSError:
        return False
    try:
        return written >= than.stat().st_mtime_ns
    except OSError:
        return True


def _is_run_record(path):
    """Whether ``path`` is a run record a ``pyro-vd`` run wrote (a JSON mapping naming its command)."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and isinstance(record.get("command"), str)


def write_atomically(path, data):
    """
    Write ``data`` (str or bytes) to ``path`` by way of ``<path>.tmp`` and a rename, so that a run killed
    while it writes its results leaves the previous file whole. ``data`` may also be a callable that
    writes to the open binary file it is given (a figure's ``savefig``).
    """
    path = pathlib.Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def results_json(value):
    """
    ``value`` as the JSON text of a results file: numpy scalars and arrays as lists and numbers, and the
    non-finite floats (which JSON has no numbers for; ``json.dumps`` would write the invalid tokens
    ``Infinity`` and ``NaN``) as the strings ``"inf"``, ``"-inf"`` and ``"nan"``.
    """

    def plain(v):
        if isinstance(v, dict):
            return {k: plain(item) for k, item in v.items()}
        if isinstance(v, list | tuple):
            return [plain(item) for item in v]
        if hasattr(v, "tolist") and not isinstance(v, str | bytes):  # numpy scalars and arrays, tensors
            return plain(v.tolist())
        if isinstance(v, float) and not math.isfinite(v):
            return str(v)
        return v

    return json.dumps(plain(value), indent=2, allow_nan=False) + "\n"


def recorded_options(path):
    """The options recorded in ``path``'s ``run.json``, or ``None`` when it has none (or none readable)."""
    try:
        options = json.loads((pathlib.Path(path) / RUN_FILE).read_text())["options"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return options if isinstance(options, dict) else None


def _describe(flag, value):
    if isinstance(value, bool):
        return f"{'with' if value else 'without'} {flag}"
    return f"with {flag} {value}"


def _stat(path):
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_mtime_ns, stat.st_size, stat.st_ino


def _read_pid(path):
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def _now():
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
