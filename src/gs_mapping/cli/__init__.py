"""The ``gs-mapping`` command line.

Each subcommand lives in its own module under ``gs_mapping.cli`` and defines ``add_arguments(parser)``
and ``run(args) -> int``. Modules are imported only when their command runs, so ``gs-mapping info``
does not pay for torch. Errors of the suite (:class:`GsMappingError`) print as one line and exit 2.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import importlib.util
import logging
import os
import signal
import sys
import threading

from .. import ctrl_c
from ..cpu_threads import prefer_single_thread_torch
from ..errors import GsMappingError, Terminated
from ..output_files import UNWINDING_SIGNALS, forget_made_folders, remove_made_folders
from ..progress import line_interval_s
from ..std_streams import StderrHandler, to_devnull

# name → (module under gs_mapping.cli, one-line help). Keep sorted by workflow, not alphabet.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("demo", "the main job: a driving world through all nodes, measured, with a report"),
    "info": ("info", "summarise a rosbag2: topics, counts, time span, TF tree"),
    "world": ("world", "generate a procedural driving world and write its sensor data as a rosbag2"),
    "map": ("map", "build a 3D Gaussian map from a bag's camera, depth and TF"),
    "hd-eval": ("hd_eval", "evaluate HD-map predictions: Chamfer AP (MapTR) and raster IoU AP (MapVR)"),
    "encode": ("encode", "encode a scene (PLY, SPZ, SOG, …) as a progressive, entropy-coded snapshot (.gsd)"),
    "decode": (
        "decode",
        "decode a snapshot (.gsd) to a PLY, SPZ or .splat, optionally only up to a level of detail",
    ),
    "diff": ("diff", "encode the delta between two scenes (any format encode reads), by Gaussian id"),
    "apply": ("apply", "apply deltas to a snapshot, strictly in sequence, and write the map (PLY)"),
    "export": ("export", "export a scene as Niantic SPZ (version 4; --spz-version 2 for old viewers)"),
    "convert": (
        "convert",
        "convert a 3DGS scene by extension: PLY, compressed PLY, SPZ, .splat, SOG or .gsd to PLY, SPZ, "
        ".splat or .gsd",
    ),
    "hd-train": ("hd_train", "train the GSMap HD-map model on the driving world"),
    "hd-predict": (
        "hd_predict",
        "predict vector HD-map elements from a bag's cameras with a GSMap checkpoint",
    ),
    "hd-export": ("hd_export", "export a GSMap checkpoint for deployment (ONNX, for onnxruntime/TensorRT)"),
    "replay": ("replay", "feed a bag through the nodes in stamp order and record what they publish"),
    "run": ("run_node", "run one node on Cyclone DDS or Zenoh (ROS 2 wire-compatible, no rclpy needed)"),
    "router": ("router", "run a Zenoh router (like rmw_zenohd) for nodes and fleets on Zenoh"),
    "params": ("params", "print the nodes' default parameters (the layout of config/full.yaml)"),
    "play": ("play", "publish a bag's messages on Cyclone DDS or Zenoh in stamp order (like ros2 bag play)"),
}


class _Parser(argparse.ArgumentParser):
    """argparse with the suite's error form: one line naming what was wrong, exit status 2 (the
    usage is what ``--help`` is for). Subcommand parsers are of the same class."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")

    _extras: tuple = ()  # what the last parse_known_args left (a command's, for the top parser)

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        parsed, extras = super().parse_known_args(args, namespace)
        self._extras = tuple(extras)
        return parsed, extras

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        # argparse reports a command's unknown options from the top parser ("gs-mapping: error:
        # unrecognized arguments: …, see gs-mapping --help", whose help lists no command's options):
        # here the command's parser names itself and its own --help. The top parser's extras (an
        # option before the command: ``gs-mapping --bogus info``) come first, the command's last.
        subs = [a for a in self._actions if isinstance(a, argparse._SubParsersAction)]
        if subs:
            self._options_before_the_command(sys.argv[1:] if args is None else list(args), subs[0].choices)
        parsed, extras = self.parse_known_args(args, namespace)
        command = subs[0].choices.get(getattr(parsed, "command", None)) if subs else None
        own = extras[: len(extras) - len(command._extras)] if command is not None else extras
        if own:
            self.error(f"unrecognized arguments: {' '.join(own)}")
        if extras:
            command.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed

    def _options_before_the_command(self, argv: list, commands: dict) -> None:
        """A command's option given before the command (``gs-mapping --out x map BAG``): argparse
        took its value for the command ("invalid choice: 'x'") or called the option unknown; the
        line names the option and where it goes. An option no command here has is unrecognized (as
        ``--bogus`` alone is), its value with it, not called a command."""
        # (a command's name given as a value, ``--out info map``, is that option's value; where
        # every one follows such an option, ``--out map B``, the first is the command)
        named = [i for i, a in enumerate(argv) if a in commands or a == "--"]
        at = next(
            (i for i in named if argv[i] == "--" or not (i and self._takes_a_value(argv[i - 1], commands))),
            named[0] if named else len(argv),
        )
        if at == len(argv) or argv[at] == "--":
            return  # (no command: argparse's own line, "invalid choice" for a misspelt one)
        name, command = argv[at], commands[argv[at]]
        before = [a for a in argv[:at] if not self._top_option(a)]
        for a in before:
            option = a.split("=", 1)[0]
            if option.startswith("-") and option in command._option_string_actions:
                self.error(
                    f"{option} is an option of the command {name}: put it after the command, as in "
                    f"{self.prog} {name} {option} …"
                )
        if any(a.startswith("-") for a in before) and not all(a.startswith("-") for a in before):
            self.error(f"unrecognized arguments: {' '.join(before)}")

    @staticmethod
    def _takes_a_value(arg: str, commands: dict) -> bool:
        """Whether ``arg`` is a command's option that takes the next argument as its value."""
        if not arg.startswith("-") or "=" in arg:
            return False
        return any(
            (a := c._option_string_actions.get(arg)) is not None and a.nargs != 0 for c in commands.values()
        )

    def _top_option(self, arg: str) -> bool:
        """Whether ``arg`` is one of this parser's own options (``-v``, an abbreviation ``--verb``)."""
        name = arg.split("=", 1)[0]
        own = self._option_string_actions
        return name in own or (
            name.startswith("--") and len(name) > 2 and any(o.startswith(name) for o in own)
        )

    def _print_message(self, message, file=None):  # type: ignore[override]
        # argparse (3.11+) swallows a write error here, so --help >&- exited 0 having printed
        # nothing: main() reports it as for any output that could not be written
        if message:
            out = file or sys.stderr
            out.write(message)
            out.flush()  # (a buffered stdout's error, > /dev/full, is then this one's, not the exit's)


def one_line(text: object) -> str:
    """An error message as one line: control characters (a newline, an escape sequence) from a
    file's content or name are written escaped, so input cannot add lines of its own."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


def show_progress(no_progress: bool = False) -> bool:
    """Whether a command reports its progress (:func:`gs_mapping.progress.progress`: a bar on a
    terminal, a line now and then elsewhere). A bad ``GS_MAPPING_PROGRESS_INTERVAL`` is refused
    here, before the work starts."""
    if no_progress or sys.stderr is None:  # (None: 2>&-)
        return False
    if not sys.stderr.isatty():
        line_interval_s()
    return True


def seed(text: str) -> int:
    """The type of every command's ``--seed`` and ``--data-seed``: numpy's generators take only
    non-negative seeds, and bags and checkpoints keep the seed as an int64."""
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not 0 <= value < 1 << 63:
        raise argparse.ArgumentTypeError(f"must be an integer 0..2**63-1, got {text!r}")
    return value


def add_no_progress(p: argparse.ArgumentParser) -> None:
    """``--no-progress``, for the commands that report their progress (:func:`show_progress`)."""
    p.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress report (a bar on a terminal; elsewhere a line at each tenth of the work, "
        "at most one every GS_MAPPING_PROGRESS_INTERVAL seconds, default 30)",
    )


def _on_signal(signum, _frame):
    raise Terminated(signum)


def on_unwinding_signals(handler) -> dict:
    """``handler`` for each of :data:`UNWINDING_SIGNALS` (SIGTERM, SIGHUP) on the main thread;
    the previous handlers, to restore. A signal ignored when the process started stays ignored:
    ``nohup`` and a service manager ignore SIGHUP (or SIGTERM) for the command they start, and
    POSIX programs keep that (as Python does for a SIGINT a shell ignores in background jobs)."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {
        s: signal.signal(s, handler) for s in UNWINDING_SIGNALS if signal.getsignal(s) is not signal.SIG_IGN
    }


_OUR_PACKAGES = ("gs_mapping", "gsmap_hd", "gs_map_share")  # (a module of ours missing is a bug)


def _say(prog: str, text: str) -> None:
    """The status line of a command that ended early: where stderr cannot be written (a hang-up
    leaves it on a gone terminal: EIO) the exit status says it alone."""
    try:
        print(f"{prog}: {text}", file=sys.stderr, flush=True)
    except OSError:  # (a buffered stderr keeps the line that failed, for the flush at exit)
        to_devnull(sys.stderr)


def _write_failed(prog: str, exc: OSError) -> int:
    """The exit status (and line) for output that could not be written."""
    if isinstance(exc, BrokenPipeError):  # the reader of our output went away (| head): quietly, as cat does
        to_devnull(sys.stdout)  # (what stays buffered would fail again at exit)
        return 141
    # which file, when known (both of a rename's or a link's, as Python's own message gives them)
    files = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None)
    where = f"{files}: " if files and exc.strerror else ""
    _say(prog, f"error: {one_line(where + (exc.strerror or str(exc)))}")
    return 2


class _NamedStdout:
    """``sys.stdout`` while a command runs: a write error names it. Commands print with
    ``flush=True``, so ``> /dev/full`` failed inside the command with Python's bare "No space left
    on device", which reads as the disk of the command's input or output files."""

    def __init__(self, stream):
        self._stream = stream

    def __getattr__(self, name: str):
        return getattr(self._stream, name)

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except OSError as exc:
            raise self._failed(exc) from None

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as exc:
            raise self._failed(exc) from None

    def _failed(self, exc: OSError) -> OSError:
        # a block-buffered stdout (Python's default off a terminal) keeps the bytes that failed
        to_devnull(self._stream)
        if exc.filename is None and not isinstance(exc, BrokenPipeError):  # (| head: quiet, as before)
            exc.filename = "standard output"
        return exc


class _ClosedStdout:
    """``sys.stdout`` where descriptor 1 was closed (``>&-``; Python makes it None and print()
    discards): writing fails as coreutils' does, so a command's output is not lost silently."""

    def write(self, _text: str) -> int:
        raise OSError(errno.EBADF, "Bad file descriptor (closed)", "standard output")

    def flush(self) -> None:
        pass


def _closed_standard_streams() -> None:
    """Descriptors 1 and 2 when they were closed (``>&-``, ``2>&-``): /dev/null holds their numbers,
    so that no output file opened later gets one and receives what a library or a worker writes
    there (as sshd and coreutils do). A closed stderr stays silent; a closed stdout is an error
    when the command prints (:class:`_ClosedStdout`)."""
    for fd, name in ((1, "stdout"), (2, "stderr")):
        if getattr(sys, name) is not None:
            continue
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_WRONLY)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
        setattr(sys, name, _ClosedStdout() if fd == 1 else open(fd, "w", closefd=False))


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="gs-mapping", description="Onboard Gaussian mapping suite.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        # Argument definitions are cheap to import; heavy imports belong inside run().
        importlib.import_module(f"{__name__}.{module}").add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    prefer_single_thread_torch()  # before torch is imported: see gs_mapping.cpu_threads
    _closed_standard_streams()
    parser = build_parser()
    stdout, sys.stdout = sys.stdout, _NamedStdout(sys.stdout)
    try:
        args = parser.parse_args(argv)
    except OSError as exc:  # --help or a usage error that could not be written (>&-, /dev/full)
        return _write_failed(parser.prog, exc)
    finally:
        sys.stdout = stdout
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        handlers=[StderrHandler()],
    )
    if not args.verbose:  # torch logs its caches' statistics at INFO when the process exits
        logging.getLogger("torch").setLevel(logging.WARNING)
    module = importlib.import_module(f"{__name__}.{args._module}")
    previous = on_unwinding_signals(_on_signal)
    previous_int = ctrl_c.install()
    prog = f"gs-mapping {args.command}"
    forget_made_folders()
    rc = 1  # (an exception no branch below takes)
    stdout, sys.stdout = sys.stdout, _NamedStdout(sys.stdout)
    try:
        rc = int(module.run(args) or 0)
        sys.stdout.flush()  # a write error on what is still buffered is the command's (> /dev/full)
        return rc
    except GsMappingError as exc:
        _say(prog, f"error: {one_line(exc)}")
        return 2
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").partition(".")[0]
        if not missing or missing in _OUR_PACKAGES or importlib.util.find_spec(missing) is not None:
            raise  # (ours, or a submodule an installed package lacks: a bug or a version mismatch)
        # a dependency this install lacks (torch on a ROS machine's system Python, where rosdep
        # does not bring it): the command cannot run here
        _say(prog, f"error: needs the Python package {missing!r}, which is not installed here")
        return 2
    except MemoryError:  # an input too large for this machine (readers refuse what they foresee)
        _say(prog, "error: out of memory")
        return 2
    except KeyboardInterrupt:
        _say(prog, "interrupted")
        return 130
    except Terminated as exc:
        (signum,) = exc.args or (signal.SIGTERM,)
        _say(prog, exc.word)
        return 128 + signum  # (the shell's status for a process the signal ended)
    except OSError as exc:  # what no command names itself: writing its report to a full disk, | head, ...
        return _write_failed(prog, exc)
    finally:
        sys.stdout = stdout
        if rc != 0:  # the folders made for outputs that were never written go again
            remove_made_folders()
        forget_made_folders()
        for s, handler in previous.items():  # (main() may run in a longer-lived process: a test, a tool)
            signal.signal(s, handler)
        ctrl_c.restore(previous_int)
        ctrl_c.caught()  # (every KeyboardInterrupt is answered above, by 130 or a command's clean stop)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


__all__ = [
    "COMMANDS",
    "Terminated",
    "add_no_progress",
    "main",
    "on_unwinding_signals",
    "seed",
    "show_progress",
]
