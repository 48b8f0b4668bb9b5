"""Ctrl-C that cannot be lost while numba compiles.

Python's own SIGINT handler raises KeyboardInterrupt wherever the main thread is. While numba
compiles a codec loop (seconds on a cold cache) that is often inside llvmlite's ctypes callbacks,
and ctypes prints an exception raised there ("Exception ignored on calling ctypes callback") and
goes on: the command ran on as if no Ctrl-C had come (a `run map_server_node` kept serving). Here
the KeyboardInterrupt is raised only outside llvmlite's code (whose ctypes callbacks swallow it;
numba's own Python code lets it through); a SIGINT that lands inside is sent again to the main
thread a moment later, until it lands outside. And a KeyboardInterrupt the program caught is
not left for CPython to end the process with (:func:`caught`)."""

from __future__ import annotations

import signal
import threading

_RETRY_S = 0.05  # (numba's compiler runs Python code all along: the handler runs soon after)
_UNSAFE = ("llvmlite",)  # (its ctypes callbacks; numba's own Python code lets it through)


def in_compiler(frame) -> bool:
    """Whether ``frame`` or a caller of it is llvmlite's code."""
    while frame is not None:
        name = frame.f_globals.get("__name__") or ""
        if name.partition(".")[0] in _UNSAFE:
            return True
        frame = frame.f_back
    return False


def later_again(signum: int = signal.SIGINT) -> None:
    """``signum`` to the main thread again in a moment (its Python handler runs there)."""
    main = threading.main_thread().ident
    t = threading.Timer(_RETRY_S, signal.pthread_kill, (main, signum))
    t.daemon = True
    t.start()


def on_ctrl_c(signum, frame) -> None:
    """SIGINT's handler: KeyboardInterrupt, at a point where it cannot be swallowed."""
    if in_compiler(frame):
        later_again(signum)
        return
    raise KeyboardInterrupt


def install(handler=on_ctrl_c):
    """``handler`` for SIGINT on the main thread, where Python's own handler or :func:`on_ctrl_c` is set (a SIGINT
    ignored when the process started stays ignored, as POSIX programs keep it); the previous
    handler, to restore (None: nothing changed)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    if signal.getsignal(signal.SIGINT) not in (signal.default_int_handler, on_ctrl_c):
        return None
    return signal.signal(signal.SIGINT, handler)


def restore(previous) -> None:
    if previous is not None:
        signal.signal(signal.SIGINT, previous)


def caught() -> None:
    """Say to CPython that the KeyboardInterrupt the program caught is handled. CPython (3.8 to
    3.12 at least) marks a KeyboardInterrupt that leaves any ``exec()`` of a string as unhandled,
    even when a caller catches it, and under ``python -m`` ends the process by SIGINT once main
    has returned, whatever it returned (seen: Ctrl-C while a dataclass was made, at an import in
    the map server's start: killed by SIGINT instead of 130, or of 0 after its clean stop). The
    next ``exec()`` of a string clears that mark, as it does on entry."""
    exec("pass", {})
