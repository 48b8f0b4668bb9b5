"""Session #21's own findings outside the helpers' reviews: inputs real users have that lost data
without a word. Each test was watched failing with its fix taken out."""

from __future__ import annotations

import numpy as np
import pytest

from gs_mapping.errors import MapError


def _compressed_ply_with_list_sh(path):
    """A compressed PLY (one chunk, 2 Gaussians) whose ``sh`` element holds its 9 bytes a row as
    one list property: a layout no PlayCanvas tool writes, but a PLY reader must not take as a
    scene without higher SH."""
    chunk = np.zeros(
        1,
        [(f"{m}_{a}", "<f4") for m in ("min", "max") for a in "xyz"]
        + [(f"{m}_scale_{a}", "<f4") for m in ("min", "max") for a in "xyz"],
    )
    for a in "xyz":
        chunk[f"max_{a}"] = 1.0
        chunk[f"min_scale_{a}"], chunk[f"max_scale_{a}"] = -4.0, -2.0
    vert = np.zeros(
        2, [(p, "<u4") for p in ("packed_position", "packed_rotation", "packed_scale", "packed_color")]
    )
    vert["packed_color"] = 0x80808080
    head = ["ply", "format binary_little_endian 1.0", "element chunk 1"]
    head += [f"property float {n}" for n in chunk.dtype.names]
    head += ["element vertex 2"] + [f"property uint {n}" for n in vert.dtype.names]
    head += ["element sh 2", "property list uchar uchar f_rest", "end_header"]
    rows = b"".join(bytes([9]) + bytes(range(100, 109)) for _ in range(2))
    path.write_bytes(("\n".join(head) + "\n").encode() + chunk.tobytes() + vert.tobytes() + rows)


def test_a_compressed_ply_whose_sh_is_a_list_is_refused_not_read_as_sh0(tmp_path):
    """A list property in a splat element (vertex, chunk, sh) is refused in one line: the reader
    skips a mesh's list elements (faces), and skipping a compressed PLY's ``sh`` read the scene as
    SH degree 0, its view-dependent colour lost without a word."""
    from gs_mapping.splat_formats import load_splats

    _compressed_ply_with_list_sh(tmp_path / "s.compressed.ply")
    with pytest.raises(MapError, match="list property") as exc:
        load_splats(tmp_path / "s.compressed.ply")
    assert "\n" not in str(exc.value)


def test_a_zstd_message_inflating_past_the_limit_is_refused_before_it_is_made(tmp_path, monkeypatch):
    """A message-compressed recording read without its metadata inflates each zstd frame; one that
    inflates beyond MAX_MESSAGE_BYTES is a named BagError (a bomb), and a frame under it decodes to
    the message the standard library's zstd gives."""
    from rosbags.typesys import Stores, get_typestore

    from gs_mapping import bag as bag_mod
    from gs_mapping.bag import BagReader
    from gs_mapping.errors import BagError

    try:
        from compression import zstd
    except ImportError:
        from backports import zstd
    ts = get_typestore(Stores.ROS2_HUMBLE)
    S = ts.types["std_msgs/msg/String"]
    cdr = bytes(ts.serialize_cdr(S(data="x" * 5000), "std_msgs/msg/String"))
    frame = zstd.compress(cdr)
    assert frame[:4] == bag_mod.ZSTD_MAGIC and len(frame) < 200
    reader = BagReader.__new__(BagReader)  # (decode needs only these two)
    reader.typestore, reader.path = ts, tmp_path / "b"
    assert reader.decode("/s", frame, "std_msgs/msg/String").data == "x" * 5000
    monkeypatch.setattr(bag_mod, "MAX_MESSAGE_BYTES", 4096)
    with pytest.raises(BagError, match="inflates beyond"):
        reader.decode("/s", frame, "std_msgs/msg/String")


def test_the_launch_files_namespace_is_launch_ros_s_under_a_pushed_one(tmp_path):
    """effective_namespace follows launch_ros' prefix_namespace (launch_ros/utilities/namespace_utils:
    a relative namespace goes under the pushed one, an absolute one replaces it, none keeps the
    pushed one); the RViz copy is namespaced by it (test_outside_ros2_real3 runs the real launch
    files where launch_ros is importable). A params_file that is no file stops the launch."""
    from gs_mapping.nodes.launch_support import effective_namespace, existing_params_file

    assert effective_namespace(None, "") == "" and effective_namespace(None, "robot1") == "robot1"
    assert effective_namespace("/robot1", "") == "/robot1"
    assert effective_namespace("robot1", "arm") == "/robot1/arm"
    assert effective_namespace("/robot1", "/abs") == "/abs"
    f = tmp_path / "p.yaml"
    f.write_text("/**: {ros__parameters: {}}\n")
    assert existing_params_file(str(f)) == str(f)
    with pytest.raises(ValueError, match="typo.yaml"):
        existing_params_file(str(tmp_path / "typo.yaml"))
    with pytest.raises(ValueError, match="is not a file"):
        existing_params_file(str(tmp_path))  # a folder
