"""Atomic outputs: every file a run delivers is written to a hidden partial path beside its destination and
renamed into place only when complete; a failed run removes every output it delivered (docs/development.md,
"Outputs").

One writer, one context manager, :func:`atomic_output`::

    with atomic_output("o.csv") as part:        # part.path = ".o.csv.<pid>-<random>.partial.csv"
        with open(part.path, "w") as fh:
            fh.write(...)
    # here o.csv exists, complete; after an exception it does not, and the partial file is gone

A GDAL dataset put in ``part.ds`` is flushed and closed before the rename, and a write error GDAL reports only
while closing (a full disk: ``TIFFAppendToStrip: Write error``) fails the output instead of delivering a
truncated file. An ``OSError`` of the writer (``ENOSPC``, ``EACCES``) becomes an :class:`OutputError` naming the
output.

One run, :func:`all_or_nothing`: every output delivered inside the block (by :func:`atomic_output`, or named
with :func:`delivered` by a writer that is not ours, such as a QGIS feature sink) is removed again when the
block ends with an exception or is :meth:`Run.discard`-ed, so a run leaves all its outputs or none.

Partial names are ``.<name>.<pid>-<random>.partial<ext>`` (with the sidecars GDAL and OGR write beside them);
:func:`remove_stale_partials` removes those whose process no longer runs (``kill -9``, a crash), and the older
names (``.<name>.tmp-<pid>.onnx``, ``<name>.tmp-<pid>``, ``<name>.partial-<pid>``), at the next start of a run
writing the same output (``outputs.check_outputs``).
"""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import os
import re
import sys
import time
import traceback
import uuid
from typing import Callable, Iterator, List, Optional, Tuple

from osgeo import gdal

from ..errors import OutputError

gdal.UseExceptions()

#: files GDAL or OGR write beside a dataset ``P``: ``P.aux.xml``, overviews, masks, SQLite journals
SIDECARS = (".aux.xml", ".ovr", ".msk", "-wal", "-shm", "-journal")
#: the parts of a shapefile, which share its stem
SHAPEFILE_PARTS = (".shp", ".shx", ".dbf", ".prj", ".cpg", ".qix", ".sbn", ".sbx", ".qmd")
#: a partial older than this (s) whose name has no process id is stale
STALE_AGE_S = 3600
_TAG = re.compile(r"^(?P<pid>\d+)-[0-9a-f]{8}\.partial")
_LEGACY = (re.compile(r"^tmp-(?P<pid>\d+)\.onnx$"),)           # .<name>.tmp-<pid>.onnx (fit before)
_LEGACY_VISIBLE = (re.compile(r"^tmp-(?P<pid>\d+)$"), re.compile(r"^partial-(?P<pid>\d+)$"))  # <name>.tmp-<pid>


def partial_path(final_path: str, ext: Optional[str] = None) -> str:
    """The hidden partial path beside ``final_path``: ``.<name>.<pid>-<random>.partial<ext>``, ``ext`` by
    default the extension of ``final_path`` (so ``o.TIF`` is written as ``....partial.TIF``).

    Raises:
        OutputError: the destination folder is missing or not writable.
    """
    folder = os.path.dirname(os.path.abspath(final_path))
    if not os.path.isdir(folder):
        raise OutputError(f"Output folder does not exist: '{folder}'. Create it or choose another output path.")
    if not os.access(folder, os.W_OK):
        raise OutputError(f"Output folder is not writable: '{folder}'. Choose a folder you can write to.")
    ext = os.path.splitext(final_path)[1] if ext is None else ext
    return os.path.join(folder, f".{os.path.basename(final_path)}.{os.getpid()}-{uuid.uuid4().hex[:8]}"
                                f".partial{ext}")


def fileset(path: str) -> List[str]:
    """The files of the dataset ``path`` that exist: the file, its sidecars (:data:`SIDECARS`), and for a
    shapefile every part sharing its stem."""
    stem, ext = os.path.splitext(path)
    names = [path] + [path + s for s in SIDECARS]
    if ext.lower() == ".shp":
        names += [stem + e for e in SHAPEFILE_PARTS if stem + e != path]
    return [p for p in names if os.path.lexists(p)]


def remove_fileset(path: str) -> None:
    """Remove the dataset ``path`` and its sidecars (:func:`fileset`), silently when gone."""
    for p in fileset(path):
        with contextlib.suppress(FileNotFoundError, IsADirectoryError):
            os.remove(p)


def move_fileset(src: str, dst: str) -> None:
    """Rename the dataset ``src`` with its sidecars to ``dst`` (same folder, so each rename is atomic); the
    files of an existing ``dst`` are removed first, so no stale ``.aux.xml`` or ``.ovr`` of an earlier output
    is read with the new one. ``os.replace``, not GDAL's ``Rename`` (which refuses ``.tiff`` and ``.TIF``)."""
    moves = [(f, dst + f[len(src):]) for f in fileset(src) if f.startswith(src)]
    s_stem, d_stem = os.path.splitext(src)[0], os.path.splitext(dst)[0]
    moves += [(f, d_stem + f[len(s_stem):]) for f in fileset(src) if not f.startswith(src)]
    remove_fileset(dst)
    for a, b in moves:
        os.replace(a, b)


@dataclasses.dataclass
class Partial:
    """One output being written: write to ``path``; ``final`` is where it goes. A GDAL dataset kept in ``ds``
    is closed (and its close checked) before the rename or the removal."""
    final: str
    path: str
    ds: Optional[gdal.Dataset] = None

    def close(self) -> None:
        """Flush and close ``ds``; raise :class:`OutputError` when GDAL reports a write error doing so."""
        if self.ds is None:
            return
        flush = getattr(self.ds, "FlushCache", None) or getattr(self.ds, "SyncToDisk", None)
        with quiet_gdal_close() as errors:
            try:
                if flush is not None:
                    flush()
            except RuntimeError as exc:
                errors.append(str(exc))
            flush = None
            self.ds = None
        if errors:
            raise write_failed(self.final, errors[0])

    def abandon(self) -> None:
        """Close ``ds`` ignoring errors (the file is removed next)."""
        with contextlib.suppress(Exception):
            close_dataset(self, "ds")


def close_dataset(holder, attr: str) -> List[str]:
    """Drop ``holder.<attr>`` (a GDAL dataset: the last reference closes it) and return the error messages
    GDAL reported while closing; with exceptions on, GDAL 3.6 can only print those ("Exception ignored")."""
    with quiet_gdal_close() as errors:
        setattr(holder, attr, None)
    return errors


@contextlib.contextmanager
def quiet_gdal_close() -> Iterator[List[str]]:
    """Collect (instead of print) the errors GDAL reports while datasets are destroyed inside the block: its
    error handler's failures and the exceptions Python can only report as "Exception ignored"."""
    errors: List[str] = []

    def handler(cls, _no, msg):
        # the PAM .aux.xml holds the class names of a GeoTIFF: failing to save it is a failed output
        if cls >= gdal.CE_Failure or "Unable to save auxiliary information" in str(msg):
            errors.append(msg)

    hook = sys.unraisablehook
    sys.unraisablehook = lambda u: errors.append(str(u.exc_value))
    gdal.PushErrorHandler(handler)
    try:
        yield errors
    finally:
        gdal.PopErrorHandler()
        sys.unraisablehook = hook


Deliver = Callable[[str, str], None]


@contextlib.contextmanager
def atomic_output(final_path: str, ext: Optional[str] = None, deliver: Optional[Deliver] = None,
                  partial_type: type = Partial) -> Iterator[Partial]:
    """Write one output atomically: yields a :class:`Partial` whose ``path`` the caller writes; on a normal
    exit ``ds`` is closed (checked) and ``deliver(partial, final)`` puts the file in place (default
    :func:`move_fileset`), and the output joins the current :func:`all_or_nothing` run; on any exception
    (cancel included) the partial files are removed and the exception propagates.

    Args:
        final_path: the destination.
        ext: extension of the partial file (default: that of ``final_path``).
        deliver: moves or converts the finished partial to ``final_path`` (e.g. GeoTIFF -> PNG); it must
            leave ``final_path`` complete or not at all.
        partial_type: :class:`Partial` or a subclass with helpers for one kind of file.

    Raises:
        OutputError: the folder is missing or read-only; an ``OSError`` of the writer or of the rename (full
            disk, permission), or a write error GDAL reported on close; the message names ``final_path``.
    """
    part = partial_type(final_path, partial_path(final_path, ext))
    try:
        yield part
        part.close()
        _deliver_keeping_backup(part.path, final_path, deliver or move_fileset)
    except OutputError as exc:
        _drop(part, exc)
        if type(exc) is OutputError and part.path in str(exc):  # name the output, not its partial file
            raise OutputError(str(exc).replace(part.path, final_path)) from None
        raise
    except OSError as exc:
        _drop(part, exc)
        raise write_failed(final_path, exc.strerror or str(exc)) from None
    except RuntimeError as exc:
        _drop(part, exc)
        if not _is_write_error(str(exc), part.path) and not disk_full(final_path):
            raise
        raise write_failed(final_path, str(exc)) from None
    except BaseException as exc:
        _drop(part, exc)
        raise
    delivered(final_path)


def write_failed(final_path: str, why: str) -> OutputError:
    """The error of an output that could not be written: names it, the reason, and the fix, on one line. The
    reason is "No space left on device" when the output's folder has under :data:`FULL_DISK_BYTES` free or
    GDAL says the disk is full (GDAL gives no reason for some full-disk failures, and a page of SQL for
    others); else GDAL's text, cut at :data:`MAX_REASON_CHARS`."""
    why = " ".join(why.split()).rstrip(".")
    if disk_full(final_path) or any(w in why.lower() for w in ("no space left", "disk is full", "disk full")):
        why = "No space left on device"  # GDAL's own text can hold a page of SQL (a GeoPackage's schema)
    elif not why:
        why = "GDAL gave no reason"
    elif len(why) > MAX_REASON_CHARS:
        why = why[:MAX_REASON_CHARS].rsplit(" ", 1)[0] + " ..."
    return OutputError(f"Cannot write '{final_path}': {why}. Free disk space or choose another folder you can "
                       "write to.")


#: the longest reason (characters) :func:`write_failed` quotes from GDAL
MAX_REASON_CHARS = 240
#: a folder with less free space than this (bytes) counts as full when a write failed
FULL_DISK_BYTES = 1 << 20


def disk_full(path: str) -> bool:
    """Whether the file system of ``path``'s folder has under :data:`FULL_DISK_BYTES` free for this user."""
    try:
        st = os.statvfs(os.path.dirname(os.path.abspath(path)))
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < FULL_DISK_BYTES


def _deliver_keeping_backup(partial: str, final_path: str, deliver: Deliver) -> None:
    """``deliver(partial, final_path)``; inside a run (:func:`all_or_nothing`) an earlier file at
    ``final_path`` (with its sidecars) is first renamed to a hidden backup that the run puts back when it
    fails, and removes when it succeeds, so a failed run never costs the user a result that existed before."""
    run = _RUN.get()
    saved = _backup(final_path) if run is not None else []
    try:
        deliver(partial, final_path)
    except BaseException:
        remove_fileset(final_path)
        _restore(saved)
        raise
    if run is not None:
        run.backups.extend(saved)


def _backup(final_path: str) -> List[Tuple[str, str]]:
    """Rename the files of ``final_path`` (:func:`fileset`) to hidden backups beside them; ``[(backup,
    original)]``. They are partial names (:func:`partial_path`), so a killed run's backups are cleaned as stale."""
    moves = []
    try:
        for f in fileset(final_path):
            b = partial_path(f, ".bak")
            os.replace(f, b)
            moves.append((b, f))
    except OSError:
        _restore(moves)
        raise
    return moves


def _restore(moves: List[Tuple[str, str]]) -> None:
    """Put backups (:func:`_backup`) back, newest first, silently where one is gone."""
    for b, f in reversed(moves):
        with contextlib.suppress(OSError):
            os.replace(b, f)


def _drop(part: Partial, exc: BaseException) -> None:
    """Remove a failed output's partial files, once the frames of the failure (which may hold its GDAL
    datasets and layers open) are cleared."""
    with quiet_gdal_close():
        traceback.clear_frames(exc.__traceback__)
        part.abandon()
    remove_fileset(part.path)


def _is_write_error(msg: str, partial: str) -> bool:
    """Whether a GDAL error message is about writing (not reading an input)."""
    low = msg.lower()
    return (any(w in low for w in ("no space left", "write error", "disk quota", "disk is full", "disk full",
                                   "read-only file system"))
            or os.path.basename(partial).lower() in low)


# -- one run ---------------------------------------------------------------------------------------------------
class Run:
    """The outputs delivered so far by one run (:func:`all_or_nothing`)."""

    def __init__(self) -> None:
        self.paths: List[str] = []
        self.folders: List[str] = []
        self.backups: List[Tuple[str, str]] = []

    def discard(self) -> None:
        """Remove every output delivered in this run (newest first), put back the files they replaced, and
        remove the folders it created when empty."""
        for p in reversed(self.paths):
            remove_fileset(p)
        _restore(self.backups)
        for f in reversed(self.folders):
            with contextlib.suppress(OSError):
                os.rmdir(f)
        self.paths, self.folders, self.backups = [], [], []

    def commit(self) -> None:
        """The run succeeded: remove the backups of the files its outputs replaced."""
        for b, _ in self.backups:
            with contextlib.suppress(OSError):
                os.remove(b)
        self.backups = []


_RUN: contextvars.ContextVar[Optional[Run]] = contextvars.ContextVar("ktextures_run", default=None)


@contextlib.contextmanager
def all_or_nothing() -> Iterator[Run]:
    """One run: every output delivered inside the block is removed when the block raises (``SystemExit(0)``
    excepted) or the caller calls :meth:`Run.discard`. Nested blocks join the outermost run."""
    outer = _RUN.get()
    if outer is not None:
        yield outer
        return
    run = Run()
    token = _RUN.set(run)
    try:
        yield run
    except SystemExit as exc:
        if exc.code not in (None, 0):
            run.discard()
        raise
    except BaseException:
        run.discard()
        raise
    finally:
        _RUN.reset(token)
        run.commit()  # after discard() there are none left to remove


def delivered(path: str) -> None:
    """Name ``path`` as delivered by the current run (no-op outside :func:`all_or_nothing`); for outputs that
    a writer other than :func:`atomic_output` wrote (QGIS feature sinks)."""
    run = _RUN.get()
    if run is not None and path:
        run.paths.append(path)


def keep_backup(path: str) -> None:
    """Before a writer that is not ours (a QGIS feature sink) replaces the file ``path``: inside a run, move
    the file (and its sidecars) to a hidden backup that the run puts back when it fails and removes when it
    succeeds (:func:`_deliver_keeping_backup`). No-op outside a run or when ``path`` does not exist.

    Raises:
        OutputError: the file cannot be moved (permission).
    """
    run = _RUN.get()
    if run is None or not path or not os.path.isfile(path):
        return
    try:
        run.backups.extend(_backup(path))
    except OSError as exc:
        raise write_failed(path, exc.strerror or str(exc)) from None


def created_folder(path: str) -> None:
    """Name a folder the current run created; :meth:`Run.discard` removes it when it is empty."""
    run = _RUN.get()
    if run is not None and path:
        run.folders.append(path)


# -- stale partials ------------------------------------------------------------------------------------------
def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def _stale_pid(name: str, base: str) -> Optional[str]:
    """The process id in a partial name of output ``base`` ("" when it has none, None when not a partial)."""
    hidden = f".{base}."
    if name.startswith(hidden):
        tag = name[len(hidden):]
        m = _TAG.match(tag) or next((r.match(tag) for r in _LEGACY if r.match(tag)), None)
        if m:
            return m.group("pid")
        return "" if ".partial" in tag else None
    if name.startswith(base + "."):
        tag = name[len(base) + 1:]
        m = next((r.match(tag) for r in _LEGACY_VISIBLE if r.match(tag)), None)
        return m.group("pid") if m else None
    return None


def remove_stale_partials(final_path: str) -> List[str]:
    """Remove the partial files of ``final_path`` (raster, vector, report, model; any sidecar) whose writing
    process no longer runs (killed with ``kill -9``, a crash): they are never finished. Partial files of a
    process that still runs are kept; partial names without a process id are removed when older than
    :data:`STALE_AGE_S`.

    Returns:
        The removed paths.
    """
    folder = os.path.dirname(os.path.abspath(final_path))
    base = os.path.basename(final_path)
    removed: List[str] = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        pid = _stale_pid(name, base)
        if pid is None:
            continue
        path = os.path.join(folder, name)
        try:
            stale = (not _alive(int(pid))) if pid else (time.time() - os.path.getmtime(path) > STALE_AGE_S)
            if stale and os.path.isfile(path):
                os.remove(path)
                removed.append(path)
        except OSError:
            pass
    return removed
