"""The compute device named in a config (``auto``, ``cpu``, ``cuda`` or ``cuda:N``), checked once for
the mapper, the HD model and every command."""

from __future__ import annotations

import re

from .errors import ConfigError

_CUDA = re.compile(r"cuda(:\d+)?")


def is_device_name(name: str) -> bool:
    """Whether ``name`` is a device a config may name (auto, cpu, cuda or cuda:N); whether it is
    usable here is :func:`resolve_device`'s question."""
    return name in ("auto", "cpu") or bool(_CUDA.fullmatch(name))


def resolve_device(name: str) -> str:
    """``auto`` → ``cuda`` if torch sees a CUDA device, else ``cpu``; ``cpu`` / ``cuda[:N]`` are
    returned as given once usable here. Anything else (``tpu``, ``gpu``, ``cuda:x``) is a ConfigError
    naming the value."""
    import torch  # deferred: reading a config must not load torch

    name = str(name).strip()
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return name
    if not is_device_name(name):
        raise ConfigError(f"device {name!r}: expected cpu, cuda[:N] or auto")
    if not torch.cuda.is_available():
        raise ConfigError(f"device {name!r}: CUDA is not available on this machine (use cpu or auto)")
    index = int(name.partition(":")[2] or 0)
    if index >= torch.cuda.device_count():
        raise ConfigError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return name


__all__ = ["is_device_name", "resolve_device"]
