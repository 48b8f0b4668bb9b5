"""Guards for ROS 2 Humble's Python stack (CPython 3.10, apt numpy 1.21.5, scipy 1.8.0), which the
README promises ("Python 3.10+", the distro's numpy 1.21) but CI never runs (3.11 with numpy 2.x and
1.26). Checks that newer numpy does for the code silently go away on 1.21:

- ASCII PLY rows (ply.py ``_ascii_elements``): numpy < 1.23's pure-Python ``np.loadtxt`` takes the
  column count from the first row (a short first row is an IndexError, not a MapError; an extra value
  in every row is dropped); and numpy < 2 (Jazzy's 1.26 too) casts integers as C does (uchar
  300 → 44, -1 → 255, 3.5 → 3). The docstring promises "a row with too few or too many values, or
  a value its type cannot hold, is refused with the element named".
- Delta id lists (gs_map_share/delta.py ``_get_ids``): numpy < 1.25 compares a numpy integer scalar
  with a Python int through float64, so ``gaps.max() >= 1 << 62`` and ``ids.max() >= 1 << 63`` are
  true for legal gaps just below 2**62 and ids just below 2**63 (docs: ids are 0 … 2**63 − 1).

Both were fixed (the rows and integer ranges checked by ply.py itself, the id bounds compared as
Python ints); these run wherever numpy is older (CI's numpy-1.26 venv, `make test-humble`)."""

from __future__ import annotations

import numpy as np
import pytest
from synthetic_maps import synthetic_map

from gs_map_share.delta import decode_delta, encode_delta
from gs_map_share.errors import DecodeError
from gs_map_share.quantize import QuantParams, to_qmap
from gs_mapping.errors import MapError
from gs_mapping.ply import read_elements

_HEAD = (
    b"ply\nformat ascii 1.0\nelement vertex 2\n"
    b"property float x\nproperty float y\nproperty uchar level\nend_header\n"
)


def _read(tmp_path, body: bytes):
    path = tmp_path / "a.ply"
    path.write_bytes(_HEAD + body)
    return read_elements(path.read_bytes(), path)[0]["vertex"]


def test_ascii_ply_rows_parse_to_their_declared_types(tmp_path):
    # the control: hand-typed rows come back as those numbers, in the declared dtypes
    v = _read(tmp_path, b"1.5 -2 3\n4 5.25 255\n")
    assert v.dtype["x"] == np.float32 and v.dtype["level"] == np.uint8
    assert v.tolist() == [(1.5, -2.0, 3), (4.0, 5.25, 255)]


def test_ascii_ply_first_row_short_of_a_value_is_a_map_error(tmp_path):
    with pytest.raises(MapError, match="'vertex'"):
        _read(tmp_path, b"1 2\n4 5 6\n")


def test_ascii_ply_every_row_one_value_too_many_is_refused(tmp_path):
    with pytest.raises(MapError, match="'vertex'"):
        _read(tmp_path, b"1 2 3 9\n4 5 6 9\n")


@pytest.mark.parametrize("level", [b"300", b"-1", b"3.5"])
def test_ascii_ply_value_a_uchar_cannot_hold_is_refused(tmp_path, level):
    # 300 and -1 are outside 0..255, 3.5 is no integer: none is a uchar
    with pytest.raises(MapError, match="'vertex'"):
        _read(tmp_path, b"1 2 " + level + b"\n4 5 6\n")


# ------------------------------------------------------------------------------------------------
# delta id lists: REMOVED ids near the top of the id range

P = QuantParams()
TOP = (1 << 63) - 1  # the largest id (docs: ids 0 … 2**63 − 1)


def _map_with_ids(ids):
    g = synthetic_map(len(ids), 0, seed=0)
    out = g.subset(np.arange(0))
    out.add(g.means, g.quats, g.log_scales, g.opacity_logits, g.sh, ids=np.asarray(ids, np.uint64))
    return out


@pytest.mark.parametrize(
    "ids, gone",
    [
        ([5, 6, 7], [6]),  # the control: small ids
        pytest.param(
            [5, TOP - 1, TOP],
            [TOP],
        ),
        pytest.param(
            [5, 5 + (1 << 62), TOP],
            [5, 5 + (1 << 62)],
        ),
    ],
)
def test_a_delta_removing_legal_ids_applies_on_the_receiver(ids, gone):
    old = _map_with_ids(ids)
    new = old.copy()
    new.remove(np.asarray(gone, np.uint64))
    data, _ = encode_delta(to_qmap(old, P), to_qmap(new, P), P, map_id=1, seq=2, base_seq=1)
    try:
        _, state = decode_delta(to_qmap(old, P), data)
    except DecodeError as exc:
        pytest.fail(f"a delta removing legal ids {gone} was refused: {exc}")
    # the receiver holds exactly the ids the sender kept
    assert sorted(int(i) for i in state.ids) == sorted(set(ids) - set(gone))
