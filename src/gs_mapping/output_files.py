"""Safe output files: nothing already good is ever lost.

Every file or directory the suite writes goes through here:

- it is built under a temporary name in the same directory, flushed to disk, then renamed over the
  target, so a crash, ``kill -9`` or full disk leaves either the old output or the complete new one
  (the temp a killed writer left is removed by the next writer of that output, or the next one refused
  for it, never one still written);
- a replaced output keeps the old one's mode, group and (as root) owner, as writing over it in place
  would; a new folder gets what ``mkdir`` gives (the umask, a set-group-ID parent's bit and group);
- an existing output is replaced only with ``overwrite=True``, and only a regular file (or a link to
  one, or a dangling link: the link itself): never a device, pipe or socket, nor a link to one;
- an input (same file by inode or real path, or anything inside an input directory, or a directory
  holding an input) is never written over, even with ``overwrite``;
- an operating-system failure (read-only file system, a directory where a file should go, a file
  where a directory should be, no space left) becomes one :class:`OutputError` line naming the path.

API (stable; the CLI, the mapper's run and the nodes call it)::

    check_output(path, overwrite=False, inputs=(), directory=False)  # before the work starts
    write_bytes(path, data, overwrite=False, inputs=())
    write_text(path, text, overwrite=False, inputs=())
    with open_output(path, "wb", overwrite=False, inputs=()) as fh: ...   # streamed writers
    with output_path(path, overwrite=False, inputs=()) as tmp: lib.save(tmp)  # writers taking a name
    with output_directory(path, overwrite=False, inputs=(), allowed=None) as tmp_dir: ...  # several files
    sweep_stale_temps(path)  # remove the temps of path's writers that were killed (kill -9)
    with scratch_directory(name) as folder: ...  # a run's own folder in $TMPDIR, swept likewise
    with signals_held(): tmp = writing_temp(path, "bag")  # a writer's own locked temp (bag.BagWriter)
    install_directory(built_dir, path, overwrite=False, inputs=(), allowed=None)  # a finished temp dir
    rescue(prefix, suffix, write)  # what could not go where it was going, in the temp directory
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import fcntl
import fnmatch
import glob
import logging
import os
import shutil
import signal
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from .errors import OutputError

log = logging.getLogger(__name__)

PathLike = str | os.PathLike

# Why a write failed, in words a user acts on (errno → reason).
_REASONS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EISDIR: "is a directory",
    errno.ENOTDIR: "a parent is not a directory",
    errno.ENAMETOOLONG: "file name too long",
    errno.ELOOP: "too many symbolic links",
    errno.EEXIST: "exists already",
    errno.ENOENT: "no such file or directory",
    errno.EXDEV: "temporary file on another file system",
    errno.EIO: "input/output error",
    errno.EFBIG: "file too large",
    errno.EMFILE: "too many open files (this process's limit, ulimit -n)",
    errno.ENFILE: "too many open files in the system",
}


def os_reason(exc: OSError) -> str:
    """Why an OS call failed, in words a user acts on."""
    return _REASONS.get(exc.errno) or exc.strerror or type(exc).__name__


def out_of_descriptors(need: int = 3) -> str | None:
    """Why ``need`` more files cannot be opened now, where the reason is that no descriptor is left
    (EMFILE, ENFILE), else None: for a library's failure that does not say (SQLite's 'unable to
    open database file'; its own errno only from Python 3.11). Asks the kernel: opens and closes
    them (an SQLite database needs three: the file, its -wal and -shm)."""
    fds: list[int] = []
    try:
        for _ in range(need):
            fds.append(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))
    except OSError as exc:
        if exc.errno in (errno.EMFILE, errno.ENFILE):
            return os_reason(exc)
    finally:
        for fd in fds:
            os.close(fd)
    return None


def os_error(path: PathLike, exc: OSError, action: str = "cannot write") -> OutputError:
    """One-line :class:`OutputError` for an OS failure while writing ``path``."""
    return OutputError(f"{path}: {action}: {os_reason(exc)}")


def _real(p: PathLike) -> Path:
    return Path(os.path.realpath(os.fspath(p)))


def _is_within(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _check_not_input(path: Path, inputs: Iterable[PathLike], directory: bool) -> None:
    real = _real(path)
    for inp in inputs:
        if inp is None:
            continue
        try:
            rin, in_dir = _real(inp), Path(inp).is_dir()
        except OSError:  # an input that cannot be looked at cannot be read either: its reader says why
            continue
        if _same_file(path, inp) or real == rin:
            raise OutputError(f"{path}: is an input of this command; refusing to write over it")
        if in_dir and _is_within(real, rin):
            raise OutputError(f"{path}: lies inside the input {inp}; refusing to write there")
        if directory and _is_within(rin, real):
            raise OutputError(f"{path}: holds the input {inp}; refusing to replace it")


def check_output(
    path: PathLike,
    *,
    overwrite: bool = False,
    inputs: Iterable[PathLike] = (),
    directory: bool = False,
    allowed: Iterable[str] | None = None,
) -> Path:
    """Check that ``path`` may be written, before any work starts; return it as a Path.

    ``directory``: the output is a directory (a map run's folder, a rosbag2) rather than a file.
    ``allowed``: for a directory, the names (fnmatch patterns) an existing one may hold to be
    replaced; one holding anything else is refused even with ``overwrite`` (``--out ~`` must never
    delete a home directory). Creates missing parent directories.
    """
    if not directory and os.fspath(path).endswith(os.sep):  # (Path() would drop the slash)
        raise OutputError(f"{os.fspath(path)}: ends with '{os.sep}', a directory's name; give a file name")
    path = Path(path)
    if not os.fspath(path) or path.name in ("", ".", ".."):
        raise OutputError(f"{os.fspath(path) or '(empty)'}: not a usable output name")
    if os.fspath(path) == "-":  # what many tools read as standard output: never a file named "-"
        raise OutputError("-: writing to standard output is not supported; give a file name")
    inputs = list(inputs)
    if any(not os.fspath(i) for i in inputs):  # (Path("") is ".", the working directory)
        raise OutputError("an input path is empty; give a file name")
    try:
        return _check_output(path, overwrite, inputs, directory, allowed)
    except OSError as exc:  # a name too long, a loop of links: what looking at the path raised
        raise os_error(path, exc, "cannot use this output") from None


def _check_output(path: Path, overwrite: bool, inputs: list, directory: bool, allowed) -> Path:
    _check_not_input(path, inputs, directory)
    exists = path.exists() or path.is_symlink()
    if exists:
        if path.is_dir() and not directory:
            raise OutputError(f"{path}: is a directory; give a file name")
        if directory and not path.is_dir():
            raise OutputError(f"{path}: exists and is not a directory")
        if directory and path.is_symlink():  # (the finished folder replaces the path, not the link's target)
            raise OutputError(
                f"{path}: is a symbolic link to {os.path.realpath(path)}; give that directory itself"
            )
        if not directory and path.exists() and not path.is_file():
            # the rename would put a file in place of a device or pipe (as root: /dev/null itself), or
            # of a link to one (/dev/stdout): refused, as a write through it would not be atomic
            raise OutputError(
                f"{path}: is not a regular file (a device, pipe or socket"
                + (f", through a link to {os.readlink(path)}" if path.is_symlink() else "")
                + "); refusing to replace it"
            )
        if not overwrite and not (directory and _empty_dir(path)):  # an empty directory holds nothing to lose
            sweep_stale_temps(path)  # (refused, still the temp of a killed --overwrite run goes)
            raise OutputError(f"{path}: exists already (pass --overwrite to replace it)")
        if directory and allowed is not None:
            patterns = list(allowed)
            try:
                names = [x.name for x in path.iterdir()]
            except OSError as exc:
                raise os_error(path, exc, "cannot list the existing output") from None
            others = [n for n in names if not any(fnmatch.fnmatch(n, pat) for pat in patterns)]
            if others:
                raise OutputError(
                    f"{path}: holds {sorted(others)[:3]}, not only outputs of this command; "
                    "refusing to replace it"
                )
    parent = path.parent
    missing = []  # the folders this makes, deepest first (removed again if the command fails)
    p = parent
    while not (p.exists() or p.is_symlink()) and p != p.parent:
        missing.append(p)
        p = p.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        _MADE_FOLDERS.extend(m for m in missing if m not in _MADE_FOLDERS)
        for made in missing:  # (each new folder's name made durable in its parent, as the file's is)
            _fsync_dir(made.parent)
    except FileExistsError:
        raise OutputError(f"{path}: a parent is not a directory") from None
    except OSError as exc:
        raise os_error(parent, exc, "cannot create the output's directory") from None
    if not parent.is_dir():
        raise OutputError(f"{path}: a parent is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        reason = "read-only file system" if _read_only_fs(parent) else "permission denied"
        raise OutputError(f"{path}: cannot write: {reason}")
    return path


# folders check_output made for outputs: a command that then fails removes those
# still empty (remove_made_folders), so a refused input leaves no new/deep/ behind
_MADE_FOLDERS: list[Path] = []


def remove_made_folders() -> None:
    """Remove the folders :func:`check_output` made that are still empty (a failed command's)."""
    for folder in sorted(set(_MADE_FOLDERS), key=lambda p: len(p.parts), reverse=True):  # deepest first
        try:
            folder.rmdir()
        except OSError:  # not empty (an output went there after all), or gone
            pass
    _MADE_FOLDERS.clear()


def forget_made_folders() -> None:
    """The command succeeded: its folders stay."""
    _MADE_FOLDERS.clear()


def _empty_dir(path: Path) -> bool:
    try:
        return path.is_dir() and not path.is_symlink() and next(path.iterdir(), None) is None
    except OSError:
        return False


def _keep_attributes(new: int | Path, old: Path, directory: bool, fresh_mode: int | None = None) -> None:
    """Give ``new`` (a temp file's descriptor, or a built folder) what writing into ``old`` in place
    would keep of it: its mode (a private map or run folder stays private), its group (a shared
    project's) and, as root, its owner (``sudo`` or a container rewriting a user's file); as
    ``cp -p`` and editors' safe-save do. Where no such ``old`` exists: ``fresh_mode``, what
    ``open``/``mkdir`` would create (mkstemp and mkdtemp make 0600/0700)."""
    try:
        st = os.stat(old)
    except OSError:
        st = None
    if st is None or not (stat.S_ISDIR(st.st_mode) if directory else stat.S_ISREG(st.st_mode)):
        if fresh_mode is not None:
            os.chmod(new, fresh_mode)
        return
    with contextlib.suppress(OSError):  # (a group the user is not in: the new one keeps the user's own)
        os.chown(new, st.st_uid if os.geteuid() == 0 else -1, st.st_gid)
    os.chmod(new, stat.S_IMODE(st.st_mode))  # (after chown, which clears set-ID bits)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _read_only_fs(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on directories; the rename itself is still atomic
    finally:
        os.close(fd)


def remove_temp(p: Path) -> str | None:
    """Remove a temp file or folder of ours; None once it is gone, else a clause naming where it was
    left and why, for the caller's line (out of descriptors, rmtree itself fails: ignored, each
    retry left another temp folder for good)."""
    try:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink(missing_ok=True)
    except OSError as exc:
        if not os.path.lexists(p):  # (gone meanwhile: what was to happen)
            return None
        return f"{p} is left behind ({os_reason(exc)}): remove it"
    finally:
        _stop_writing(p)  # (one left behind is then swept by the next run)
    return None


def _rm(p: Path) -> None:
    if (left := remove_temp(p)) is not None:
        log.warning(left)


def _install_file(tmp: Path, path: Path, overwrite: bool) -> None:
    """Rename ``tmp`` onto ``path``; without ``overwrite`` never clobbers a file that appeared."""
    if overwrite:
        os.replace(tmp, path)
    else:
        try:
            os.link(tmp, path)  # atomic no-clobber: fails with EEXIST if something appeared
        except FileExistsError:
            raise OutputError(f"{path}: exists already (pass --overwrite to replace it)") from None
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK):
                raise
            if path.exists() or path.is_symlink():  # no hard links here (e.g. FAT): check, then rename
                raise OutputError(f"{path}: exists already (pass --overwrite to replace it)") from None
            os.replace(tmp, path)
            return
        os.unlink(tmp)
    _fsync_dir(path.parent)


@contextlib.contextmanager
def open_output(
    path: PathLike, mode: str = "wb", *, overwrite: bool = False, inputs: Iterable[PathLike] = ()
) -> Iterator:
    """A file object on a temp file beside ``path``; renamed onto ``path`` when the block succeeds."""
    if mode not in ("wb", "w"):
        raise ValueError(f"open_output: mode must be 'wb' or 'w', not {mode!r}")
    inputs = list(inputs)
    with output_path(path, overwrite=overwrite, inputs=inputs) as tmp:
        try:
            fh = open(tmp, mode, **({"encoding": "utf-8"} if mode == "w" else {}))  # noqa: SIM115
        except OSError as exc:
            raise os_error(path, exc) from None
        with fh:
            yield fh
            try:
                fh.flush()
                os.fsync(fh.fileno())
            except OSError as exc:
                raise os_error(path, exc) from None


@contextlib.contextmanager
def output_path(
    path: PathLike, *, overwrite: bool = False, inputs: Iterable[PathLike] = (), shown: PathLike | None = None
) -> Iterator[Path]:
    """A temp file name beside ``path`` for a writer that takes a name; renamed onto ``path`` after.

    The temp name keeps ``path``'s suffix (libraries that pick a format by it still do). ``shown``:
    the name a failure to write is said of, where ``path`` is itself a caller's temp (the output the
    user named, never a hidden temp's name).
    """
    inputs = list(inputs)
    path = check_output(path, overwrite=overwrite, inputs=inputs)
    sweep_stale_temps(path)
    tmp = None
    try:
        with signals_held():  # (a Ctrl-C between the temp's creation and its name kept would leak it)
            tmp = writing_temp(path, "file")
            _keep_attributes(_WRITING[tmp], path, False, 0o666 & ~_umask())
        yield tmp
        _fsync_file(tmp, path if shown is None else Path(shown))
        _check_not_input(path, inputs, False)  # re-check: the target may have changed meanwhile
        _install_file(tmp, path, overwrite)
    except OSError as exc:
        raise os_error(path if shown is None else shown, exc) from None
    finally:
        if tmp is not None:
            _rm(tmp)


# The signals a command unwinds on as on Ctrl-C (the CLI raises for them; forked workers take their
# default action): SIGTERM (a service manager, `timeout`) and SIGHUP (the terminal or ssh went away).
UNWINDING_SIGNALS = (signal.SIGTERM, *([signal.SIGHUP] if hasattr(signal, "SIGHUP") else []))


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP held back for a few statements (their Python handlers run right
    after): a temp file or folder and the name that removes it come into being together."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, *UNWINDING_SIGNALS})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _fsync_file(tmp: Path, path: Path) -> None:
    try:
        fd = os.open(tmp, os.O_RDONLY)
    except OSError as exc:
        raise os_error(path, exc) from None
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes(
    path: PathLike, data: bytes, *, overwrite: bool = False, inputs: Iterable[PathLike] = ()
) -> None:
    """Write ``data`` to ``path`` safely (temp + fsync + rename)."""
    with open_output(path, "wb", overwrite=overwrite, inputs=inputs) as fh:
        try:
            fh.write(data)
        except OSError as exc:
            raise os_error(path, exc) from None


def write_text(
    path: PathLike, text: str, *, overwrite: bool = False, inputs: Iterable[PathLike] = ()
) -> None:
    """Write UTF-8 ``text`` to ``path`` safely (temp + fsync + rename)."""
    write_bytes(path, text.encode("utf-8"), overwrite=overwrite, inputs=inputs)


# --- directories --------------------------------------------------------------------------------

_RENAME_NOREPLACE = 1
_RENAME_EXCHANGE = 2


def _renameat2(src: Path, dst: Path, flags: int) -> bool:
    """Linux renameat2(2); False when the C library or file system lacks it (caller falls back)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd = -100
    rc = fn(at_fdcwd, os.fsencode(src), at_fdcwd, os.fsencode(dst), ctypes.c_uint(flags))
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), os.fspath(dst))


def _fsync_tree(root: Path) -> None:
    for dirpath, _, files in os.walk(root):
        for f in files:
            with contextlib.suppress(OSError):
                fd = os.open(os.path.join(dirpath, f), os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        _fsync_dir(Path(dirpath))


def install_directory(
    built: PathLike,
    path: PathLike,
    *,
    overwrite: bool = False,
    inputs: Iterable[PathLike] = (),
    allowed: Iterable[str] | None = None,
) -> None:
    """Move the finished directory ``built`` (same file system) onto ``path`` in one step.

    An existing ``path`` is swapped out atomically (renameat2 RENAME_EXCHANGE) and then removed, so
    at every instant ``path`` is either the complete old directory or the complete new one. Where the
    kernel lacks the exchange, the old one is renamed aside first (a crash in between leaves it under
    ``.NAME.old-*`` beside the target, never deleted).
    """
    built, path = Path(built), Path(path)
    inputs = list(inputs)
    check_output(path, overwrite=overwrite, inputs=inputs, directory=True, allowed=allowed)
    try:
        _fsync_tree(built)
        if path.exists() or path.is_symlink():
            # checked again as it is now: another program may have made it while this one flushed
            # (not there before, or holding files this command does not write)
            _check_output(path, overwrite, inputs, True, allowed)
            _keep_attributes(built, path, True)  # (the folder's mode, group, owner: as in place)
            if _renameat2(built, path, _RENAME_EXCHANGE):
                _rm(built)  # now holds the old contents
            else:
                aside = Path(tempfile.mkdtemp(prefix=temp_prefix(path, ".old-"), dir=path.parent))
                os.replace(path, aside / path.name)
                os.replace(built, path)
                _rm(aside)
        elif not _renameat2(built, path, _RENAME_NOREPLACE):
            os.rename(built, path)
        _fsync_dir(path.parent)
    except FileExistsError:
        raise OutputError(f"{path}: exists already (pass --overwrite to replace it)") from None
    except OSError as exc:
        raise os_error(path, exc) from None


@contextlib.contextmanager
def output_directory(
    path: PathLike,
    *,
    overwrite: bool = False,
    inputs: Iterable[PathLike] = (),
    allowed: Iterable[str] | None = None,
) -> Iterator[Path]:
    """A fresh temp directory beside ``path``; it replaces ``path`` as a whole when the block succeeds.

    On an exception (or a kill) ``path`` is left as it was and the temp directory is removed (after a
    ``kill -9`` a hidden ``.NAME.tmp-*`` directory remains beside it, until the next run writing
    ``path`` removes it: :func:`sweep_stale_temps`).
    """
    inputs = list(inputs)
    allowed = None if allowed is None else list(allowed)
    path = check_output(path, overwrite=overwrite, inputs=inputs, directory=True, allowed=allowed)
    sweep_stale_temps(path)
    tmp = None
    try:
        with signals_held():
            tmp = writing_temp(path, "folder")
            # as mkdir would create it: the umask's mode, and the set-group-ID bit (with the group)
            # a folder inherits from a shared parent (chmod g+s); an existing one's: install_directory
            tmp.chmod((0o777 & ~_umask()) | (tmp.stat().st_mode & stat.S_ISGID))
        try:
            yield tmp
        except OutputError as exc:  # a file inside failed: name where it was going, not the temp dir
            raise OutputError(str(exc).replace(str(tmp), str(path))) from None
        install_directory(tmp, path, overwrite=overwrite, inputs=inputs, allowed=allowed)
    except OSError as exc:
        raise os_error(path, exc) from None
    finally:
        if tmp is not None:
            _rm(tmp)


# --- temps being written, and those of writers that are gone -------------------------------------
#
# Every output is built in a temp beside it (output_path's file, output_directory's folder,
# bag.BagWriter's bag folder) whose writer holds an flock(2) on it for as long as it writes. The
# kernel drops the lock when the process ends, SIGKILL and a crash included: a later run writing the
# same output that can take the lock knows no process writes there any more and removes the temp;
# one that cannot (a live writer: another process, or another thread of this one) leaves it alone.
# (A process id could not say as much: pids are reused, and in a container every run is pid 1.)


def _file_temp(path: Path) -> tuple[str, str]:
    """output_path's temp keeps ``path``'s suffix (libraries that pick a format by it still do)."""
    suffix = f".tmp{path.suffix}"
    if len(os.fsencode(suffix)) > NAME_MAX // 2:  # (an "extension" this long is no format's)
        suffix = ".tmp"
    return temp_prefix(path, ".", suffix), suffix


# The temp names of an output's writers, by kind: (prefix, suffix), tempfile's 8 random characters
# between them. "folder": output_directory's .NAME.tmp-XXXXXXXX; "bag": bag.BagWriter's
# .NAME.XXXXXXXX.partial; "file": output_path's .NAME.XXXXXXXX.tmp.EXT.
_TEMP_NAMES: dict[str, Callable[[Path], tuple[str, str]]] = {
    "folder": lambda path: (temp_prefix(path, ".tmp-"), ""),
    "bag": lambda path: (temp_prefix(path, ".", ".partial"), ".partial"),
    "file": _file_temp,
}
_WRITING: dict[Path, int] = {}  # this process's temps → the descriptor holding the lock


def writing_temp(path: Path, kind: str) -> Path:
    """A new temp beside output ``path`` (``kind``: a key of :data:`_TEMP_NAMES`; "file" is an empty
    file, the others a folder), locked as being written until :func:`remove_temp` (call with
    :func:`signals_held`, so that its name is known before anything can interrupt)."""
    prefix, suffix = _TEMP_NAMES[kind](path)
    for _ in range(8):  # (a sweeper may take a new temp in the instant before its lock: another)
        if kind == "file":
            fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=path.parent)
            tmp = Path(name)
        else:
            tmp = Path(tempfile.mkdtemp(prefix=prefix, suffix=suffix, dir=path.parent))
            try:
                fd = os.open(tmp, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
        with contextlib.suppress(OSError):  # (no locks on this file system: never swept, as before)
            fcntl.flock(fd, fcntl.LOCK_EX)  # (waits only while a sweeper that took it removes it)
        try:
            kept = os.path.samestat(os.fstat(fd), os.lstat(tmp))
        except FileNotFoundError:
            kept = False
        if kept:
            _WRITING[tmp] = fd
            return tmp
        os.close(fd)
    raise OSError(errno.EAGAIN, "every new temp was removed at once", os.fspath(path.parent))


def _stop_writing(tmp: Path) -> None:
    fd = _WRITING.pop(tmp, None)
    if fd is not None:
        os.close(fd)


def _not_writing_in_child() -> None:
    """A forked child (``world``'s renderers) writes none of its parent's temps: it closes its copies
    of their locking descriptors. An flock belongs to the open file, held until its last descriptor
    closes, so copies left open would keep a killed parent's temps locked, and unswept, for as long
    as the child ran; closing them leaves the parent's own lock as it is."""
    for fd in _WRITING.values():
        with contextlib.suppress(OSError):
            os.close(fd)
    _WRITING.clear()


if hasattr(os, "register_at_fork"):  # (not on Windows, which has no fork)
    os.register_at_fork(after_in_child=_not_writing_in_child)


def sweep_stale_temps(path: PathLike, what: str = "the unfinished output") -> None:
    """Remove the temps of output ``path`` (:data:`_TEMP_NAMES`) that no process writes any more
    (their writer was killed: ``kill -9``, out of memory, power lost), each with one line saying
    so (that it was ``what`` of a run that was killed); those of a live writer, and those of other
    users, are left alone."""
    path = Path(path)
    found: set[Path] = set()
    for name in _TEMP_NAMES.values():
        prefix, suffix = name(path)
        try:
            found.update(path.parent.glob(glob.escape(prefix) + "?" * 8 + glob.escape(suffix)))
        except OSError:  # (a folder that cannot be listed holds nothing this can find)
            return
    for tmp in sorted(found):
        try:  # (O_NONBLOCK: a FIFO of that name must not hang the run)
            fd = os.open(tmp, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:  # (gone meanwhile, a link, unreadable)
            continue
        try:
            st = os.fstat(fd)
            if st.st_uid != os.geteuid() or not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # being written (or no locks here: cannot tell, so left)
                continue
            left = remove_temp(tmp)
            log.warning(left or f"{tmp}: removed: {what} of a run that was killed (no process writes it)")
        finally:
            os.close(fd)


@contextlib.contextmanager
def scratch_directory(name: str) -> Iterator[Path]:
    """A new folder of this run's own in the system's temp directory (``$TMPDIR``), removed when the
    block ends. It is a locked temp of the output ``$TMPDIR/name`` (``.name.tmp-XXXXXXXX``): one a
    killed run left is removed by the next run that asks for a scratch of that ``name``
    (:func:`sweep_stale_temps`), one a live run uses is left alone."""
    base = Path(tempfile.gettempdir()) / name
    sweep_stale_temps(base, "the scratch folder")
    try:
        with signals_held():
            tmp = writing_temp(base, "folder")
    except OSError as exc:
        raise os_error(base.parent, exc, "cannot make a scratch folder") from None
    try:
        yield tmp
    finally:
        _rm(tmp)


def rescue_file(prefix: str, suffix: str) -> Path:
    """A new, empty file of a unique name in the system's temp directory, for what could not be
    written where it was going (a name from the pid alone met an earlier run's file: in a
    container every run is pid 1)."""
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix)
    os.close(fd)
    return Path(name)


def rescue(prefix: str, suffix: str, write: Callable[[Path], None]) -> Path:
    """Save what could not go where it was going (a full disk, an interrupted run) in a new file of
    :func:`rescue_file`: ``write(path)`` fills it (writing over the empty file). Its path; where
    it cannot be saved there either, :class:`OutputError` (or the interrupt) and no file is left."""
    try:
        path = rescue_file(prefix, suffix)
    except OSError as exc:
        raise os_error(tempfile.gettempdir(), exc) from None
    try:
        write(path)
    except BaseException as exc:  # (a second Ctrl-C too: no empty or partial file left behind)
        with contextlib.suppress(OSError):
            path.unlink()
        if isinstance(exc, OSError):
            raise os_error(path, exc) from None
        raise
    return path


NAME_MAX = 255  # bytes in one file name (Linux, macOS)


def temp_prefix(path: Path, tag: str, suffix: str = "") -> str:
    """``.NAME`` + ``tag`` for a temp file or directory beside ``path``: NAME cut so that the temp
    name (tempfile's 8 random characters and ``suffix`` added) is still a legal name when
    ``path``'s own is near the limit."""
    room = max(0, NAME_MAX - 1 - len(os.fsencode(tag)) - 8 - len(os.fsencode(suffix)))
    # the name's bytes as the file system has them (a name that is not UTF-8, legal on Linux, reaches
    # Python with surrogate escapes); a character cut short, or a byte that is not UTF-8, is left out
    return f".{os.fsencode(path.name)[:room].decode('utf-8', errors='ignore')}{tag}"
