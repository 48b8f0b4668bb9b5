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


def test_a_maps_ids_and_levels_travel_in_their_own_element_and_older_files_still_read(tmp_path):
    """A map's PLY keeps the vertex rows in the reference layout (float only) and its ids and
    levels in the ``gs_mapping`` element after them, which plyfile reads as written; a file with
    them in the vertex rows (this suite's earlier layout) reads to the same map; an element of
    another row count, or ids in both places, is one line."""
    plyfile = pytest.importorskip("plyfile")
    from gs_mapping.gaussians import GaussianMap
    from gs_mapping.ply import load_ply, save_ply, to_structured

    rng = np.random.default_rng(3)
    n = 6
    g = GaussianMap(
        means=rng.normal(size=(n, 3)).astype(np.float32),
        quats=np.tile(np.array([0, 0, 0, 1], np.float32), (n, 1)),
        log_scales=np.full((n, 3), -3.0, np.float32),
        opacity_logits=np.zeros(n, np.float32),
        sh=rng.normal(size=(n, 1, 3)).astype(np.float32),
        ids=np.array([3, 8, 9, 20, 21, 400], np.uint64),
        levels=np.array([0, 0, 1, 0, 2, 0], np.uint8),
    )
    save_ply(g, tmp_path / "m.ply", keep_ids=True)
    ply = plyfile.PlyData.read(str(tmp_path / "m.ply"))
    assert [e.name for e in ply.elements] == ["vertex", "gs_mapping"]
    assert {p.val_dtype for p in ply["vertex"].properties} == {"f4"}
    assert ply["gs_mapping"]["id"].tolist() == [3.0, 8.0, 9.0, 20.0, 21.0, 400.0]
    assert ply["gs_mapping"]["level"].tolist() == [0, 0, 1, 0, 2, 0]
    assert load_ply(tmp_path / "m.ply").equals(g)
    # the earlier layout: id and level in the vertex rows
    v = to_structured(g)
    old = np.zeros(n, v.dtype.descr + [("id", "<f8"), ("level", "u1")])
    for k in v.dtype.names:
        old[k] = v[k]
    old["id"], old["level"] = g.ids, g.levels
    plyfile.PlyData([plyfile.PlyElement.describe(old, "vertex")]).write(str(tmp_path / "old.ply"))
    assert load_ply(tmp_path / "old.ply").equals(g)
    # an element of another row count; ids in both places
    short = np.zeros(n - 1, [("id", "<f8")])
    plyfile.PlyData(
        [plyfile.PlyElement.describe(v, "vertex"), plyfile.PlyElement.describe(short, "gs_mapping")]
    ).write(str(tmp_path / "short.ply"))
    with pytest.raises(MapError, match="5 rows for 6 Gaussians"):
        load_ply(tmp_path / "short.ply")
    both = np.zeros(n, [("id", "<f8")])
    both["id"] = g.ids
    plyfile.PlyData(
        [plyfile.PlyElement.describe(old, "vertex"), plyfile.PlyElement.describe(both, "gs_mapping")]
    ).write(str(tmp_path / "both.ply"))
    with pytest.raises(MapError, match="both in 'vertex' and in 'gs_mapping'"):
        load_ply(tmp_path / "both.ply")
