"""Guards for behaviours a mutation survey (session 33, mut33c) of today's changes found unguarded:
topic choice for a depth named alone (docs/inputs.md's namespace rule worked by hand on the real
RealSense kitchen bag's topics), the files of ``CYCLONEDDS_URI`` (compared with which file the real
Cyclone DDS library opens), the checkpoint path checks (a link to the real shipped checkpoint, a
device), and ``run``'s ``--duration``. Runs in all three venvs (skips what a venv lacks)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

# ------------------------------------------------------------------------------------------------
# gs_mapping.runtime.dds: the files CYCLONEDDS_URI names, as the real Cyclone DDS reads them

_BAD = "<CycloneDDS><Domain><General><NoSuchElement/></General></Domain></CycloneDDS>"


def _file_cyclone_reads(uri: str) -> str | None:
    """The configuration file the real Cyclone DDS library opened for ``CYCLONEDDS_URI=uri`` (each
    file named in these URIs is an invalid configuration, so Cyclone's error names the one it read
    first), None where it read none."""
    code = "from cyclonedds.domain import DomainParticipant\ntry:\n    DomainParticipant(0)\nexcept Exception:\n    pass\n"
    r = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "CYCLONEDDS_URI": uri},
        capture_output=True,
        text=True,
        timeout=60,
    )
    said = r.stdout + r.stderr
    m = re.search(r"\((\S+) line \d+\)", said) or re.search(r"can't open configuration file (.+)", said)
    return None if m is None or m.group(1).startswith("CYCLONEDDS_URI") else m.group(1).strip()


def test_the_files_of_cyclonedds_uri_are_those_cyclone_opens(tmp_path):
    """CYCLONEDDS_URI holds files (``file://PATH`` or a bare path) and inline XML, comma-separated;
    the project checks each file before Cyclone's C reader opens it (a pipe would block it for ever).
    Which file each URI names is what the real library reads: a bare path beside inline XML too."""
    pytest.importorskip("cyclonedds")
    from gs_mapping.runtime.dds import cyclonedds_uri_files

    bad = tmp_path / "bad.xml"
    bad.write_text(_BAD)
    uris = [
        f"{bad}",
        f"file://{bad}",
        f"<Discovery/>,{bad}",
        f"<Discovery/>, file://{bad}",
        f"<Tracing><Verbosity>finest</></>,{bad}",  # (Cyclone's anonymous close tag)
        f'<Discovery><Peers><Peer address="a,b"/></Peers></Discovery> ,, {bad}',  # (a comma in XML)
        f'<Discovery><Peers><Peer address="h>,{bad}"/></Peers></Discovery>,{bad}',  # (quoted ">")
        f"<Discovery><Peers>,{bad}",  # (XML left open runs to the end: no file)
    ]
    for uri in uris:
        ours = cyclonedds_uri_files(uri)
        assert _file_cyclone_reads(uri) == (ours[0] if ours else None), uri


def test_a_pipe_named_bare_beside_inline_xml_in_cyclonedds_uri_is_refused(tmp_path):
    """``<Discovery/>,/path/to/fifo``: Cyclone reads the bare path (see above) and would wait on the
    pipe for ever; the check refuses it in one line, as it does the ``file://`` spelling."""
    pytest.importorskip("cyclonedds")
    from gs_mapping.errors import ConfigError
    from gs_mapping.runtime.dds import check_cyclonedds_uri

    fifo = tmp_path / "cyclonedds.xml"
    os.mkfifo(fifo)
    good = tmp_path / "good.xml"
    good.write_text("<CycloneDDS/>")
    for uri in (f"<Discovery/>,{fifo}", f"<Tracing/> , {good},{fifo}", f"{good},file://{fifo}"):
        with pytest.raises(ConfigError) as exc:
            check_cyclonedds_uri(uri)
        assert str(exc.value) == f"CYCLONEDDS_URI: {fifo}: not a regular file (a directory, device or pipe)"
    check_cyclonedds_uri(f"<Discovery/>,{good},{tmp_path / 'missing.xml'}")  # (missing: Cyclone says it)
