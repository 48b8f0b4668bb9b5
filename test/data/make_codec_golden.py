"""Writes test/data/codec_golden_*.bin: a snapshot and a delta of fixed synthetic maps, encoded by
this version of gs_map_share. test_guards_format.py checks that today's decoder reads them back to
the maps quantised. Regenerate (and bump the container version, docs/format.md) only when the
format changes on purpose:

    .venv/bin/python test/data/make_codec_golden.py
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from test_guards_format import golden_containers  # noqa: E402

if __name__ == "__main__":
    for name, data in golden_containers().items():
        (HERE / f"codec_golden_{name}.bin").write_bytes(data)
        print(name, len(data), "bytes")
