"""The check that names a misnamed file (``scene_io.misnamed``: a PLY under ``.splat``, a scene
given to decode) reads the file's first bytes only after its reader refused it. Given a named pipe
(``mkfifo scene.ply``), which every reader refuses as no regular file, that check opened it and
waited for a writer for ever: ``convert``, ``decode`` and ``apply`` hung where they had said
"not a regular file" (README, Reliability: a pipe is refused, not read for ever)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")


@pytest.mark.parametrize(
    "argv",
    [
        ["convert", "{p}.ply", "{out}.ply"],
        ["convert", "{p}.sog", "{out}.ply"],
        ["encode", "{p}.splat", "{out}.gsd"],
        ["decode", "{p}.gsd", "{out}.ply"],
        ["apply", "{p}.gsd", "{out}.ply"],
    ],
)
def test_a_named_pipe_is_refused_not_waited_on(tmp_path, argv):
    name = argv[1].format(p=tmp_path / "pipe")
    os.mkfifo(name)
    args = [a.format(p=tmp_path / "pipe", out=tmp_path / "out") for a in argv]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    try:
        run = subprocess.run(
            [sys.executable, "-m", "gs_mapping", *args], capture_output=True, text=True, timeout=60, env=env
        )
    except subprocess.TimeoutExpired:  # (run killed the command)
        pytest.fail(f"{' '.join(argv)} waited on a named pipe")
    err = run.stderr.strip().splitlines()
    assert run.returncode == 2 and len(err) == 1 and "not a regular file" in err[0], run.stderr
