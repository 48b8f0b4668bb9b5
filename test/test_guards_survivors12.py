"""Guards for behaviours a mutation-testing pass found unguarded (twelfth round): the TF buffer
(static vs dynamic edges, extrapolation direction), the approximate-time synchroniser, ROS name
resolution and camera-topic discovery, safe output and input files, parameter files, and rosbag2
reading and writing (QoS, time spans, MCAP CRCs). Each test drives the real component and compares it
with an independent reference: a rule the README, a docstring or ROS 2 states, a hand-built input
with a hand-computed answer, scipy's Rotation, or the ``mcap`` / ``rosbags`` packages reading the
same bytes, so that breaking the line it guards makes it fail."""

from __future__ import annotations

import dataclasses
import os
import struct
from typing import Literal

import numpy as np
import pytest

from gs_mapping.config_file import param

MS = 1_000_000
S = 1_000_000_000

# ------------------------------------------------------------------------------------------------
# tf: TFBuffer


def _ts(parent, child, stamp, xyz=(0.0, 0.0, 0.0), q=(0.0, 0.0, 0.0, 1.0)):
    from gs_mapping.geometry import Transform, TransformStamped

    return TransformStamped(parent, child, stamp, Transform(np.array(xyz, float), np.array(q, float)))


def test_a_later_static_transform_replaces_the_earlier_one_at_every_time():
    """tf module docstring: static edges hold at every time; `_Edge.insert`: 'latest static value
    wins' (as /tf_static re-latched with a corrected calibration)."""
    from gs_mapping.tf import TFBuffer

    tf = TFBuffer()
    tf.add(_ts("base", "cam", 5 * S, (1.0, 0.0, 0.0)), static=True)
    tf.add(_ts("base", "cam", 1 * S, (2.0, 0.0, 0.0)), static=True)  # newer message, older stamp
    for stamp in (0, 1 * S, 5 * S, 100 * S):
        np.testing.assert_allclose(tf.lookup("base", "cam", stamp).translation, [2.0, 0.0, 0.0])


def test_extrapolation_says_whether_the_transform_may_still_arrive():
    """errors.ExtrapolationError: ``future`` when the stamp lies after the newest sample (a node
    waits for it), not when it lies before the data held (waiting cannot help)."""
    from gs_mapping.errors import ExtrapolationError, transform_may_arrive
    from gs_mapping.tf import TFBuffer

    tf = TFBuffer(cache_time_s=0, extrapolation_tolerance_s=0.01)
    tf.add(_ts("odom", "base", 10 * S))
    tf.add(_ts("odom", "base", 11 * S))
    with pytest.raises(ExtrapolationError) as after:
        tf.lookup("odom", "base", 12 * S)
    with pytest.raises(ExtrapolationError) as before:
        tf.lookup("odom", "base", 9 * S)
    assert after.value.future and transform_may_arrive(after.value)
    assert not before.value.future and not transform_may_arrive(before.value)
    assert (after.value.gap_ns, before.value.gap_ns) == (1 * S, 1 * S)


def test_a_leading_slash_on_the_parent_frame_names_the_same_frame():
    """tf2 strips a leading '/' from frame ids (ROS 1 bags wrote '/map'): a transform from '/map'
    to 'base' is the edge map -> base, found under either spelling and joined with 'map' edges."""
    from gs_mapping.tf import TFBuffer

    tf = TFBuffer()
    tf.add(_ts("/map", "base", 0, (1.0, 2.0, 3.0)), static=True)
    tf.add(_ts("map", "marker", 0, (0.0, 0.0, 1.0)), static=True)
    assert tf.frames() == {"base": "map", "marker": "map"}
    np.testing.assert_allclose(tf.lookup("map", "base", 0).translation, [1.0, 2.0, 3.0])
    np.testing.assert_allclose(tf.lookup("marker", "base", 0).translation, [1.0, 2.0, 2.0])


@pytest.mark.parametrize(("parent", "child"), [("map", ""), ("", "base"), ("map", "/")])
def test_an_empty_frame_id_is_refused(parent, child):
    """tf2 refuses a transform without a frame id (TF_NO_CHILD_FRAME_ID / TF_NO_FRAME_ID); '/'
    alone is empty once its leading slash is stripped."""
    from gs_mapping.errors import TFError
    from gs_mapping.tf import TFBuffer

    tf = TFBuffer()
    with pytest.raises(TFError, match="empty frame id"):
        tf.add(_ts(parent, child, 0))
    assert len(tf) == 0 and tf.all_frames() == []


def test_a_message_with_two_bad_transforms_counts_the_second():
    """add_message: 'the first error is raised with a count of the others' — with two bad ones,
    one more."""
    from gs_mapping.errors import TFError
    from gs_mapping.messages import transforms_to_tf_message
    from gs_mapping.tf import TFBuffer

    msg = transforms_to_tf_message([_ts("map", c, 7) for c in ("a", "b", "c")])
    msg.transforms[0].transform.rotation.w = float("nan")
    msg.transforms[2].transform.translation.x = float("inf")
    tf = TFBuffer()
    with pytest.raises(TFError, match=r"\(and 1 more bad transforms in this message\)"):
        tf.add_message(msg)
    assert tf.frames() == {"b": "map"}


@pytest.mark.parametrize("frame", ["", "/"])
def test_an_empty_frame_is_not_the_identity_to_itself(frame):
    """lookup: a frame to itself is the identity 'known or not' — but an empty frame id names no
    frame (a header without frame_id): the lookup must fail, not invent an identity."""
    from gs_mapping.errors import TFError
    from gs_mapping.tf import TFBuffer

    tf = TFBuffer()
    tf.add(_ts("map", "cam", 0), static=True)
    with pytest.raises(TFError):
        tf.lookup(frame, frame, 0)
    assert tf.lookup("cam", "/cam", 0).matrix().tolist() == np.eye(4).tolist()


# ------------------------------------------------------------------------------------------------
# sync: ApproximateTimeSynchronizer


@pytest.mark.parametrize("key", [2, -1, "ir"])
def test_an_input_index_past_the_last_is_unknown(key):
    """_resolve: indices address inputs 0..n-1; index n (one past the last) is an unknown input
    (KeyError naming the inputs), not an IndexError from inside and not a silent wrap-around."""
    from gs_mapping.sync import ApproximateTimeSynchronizer

    sync = ApproximateTimeSynchronizer(["color", "depth"], queue_size=3, slop=0.01)
    with pytest.raises(KeyError, match="unknown synchroniser input"):
        sync.add(key, 5 * MS, "x")
    assert sync.pending() == 0


def test_a_message_that_falls_out_of_its_own_queue_matches_nothing():
    """add: when the new message is itself the oldest of a full queue it is dropped at once
    ('the new message itself was the oldest and fell out'): no set may be emitted with it, and
    its partner on the other input keeps waiting."""
    from gs_mapping.sync import ApproximateTimeSynchronizer

    got = []
    sync = ApproximateTimeSynchronizer(2, queue_size=1, slop=0.001, callback=lambda *m: got.append(m))
    assert sync.add(0, 10 * MS, "c10") is None
    assert sync.add(1, 5 * MS, "d5") is None
    assert sync.add(0, 5 * MS, "c5") is None  # older than the queued c10: it falls out
    assert got == [] and sync.dropped_per_input == [1, 0] and sync.pending() == 2
    assert sync.add(1, 10 * MS, "d10") == ("c10", "d10")


# ------------------------------------------------------------------------------------------------
# topics: ROS name resolution


def test_an_empty_name_stays_empty():
    """resolve_name: an empty name (an option not given) is returned as it is, not turned into
    the root namespace '/', which no topic or frame can be named (design.ros2.org topic names)."""
    from gs_mapping.topics import resolve_name

    assert resolve_name("") == ""
    assert resolve_name("  ", "robot") == ""
    assert resolve_name("image", "/robot/") == "/robot/image"


# ------------------------------------------------------------------------------------------------
# topics: camera-topic discovery on hand-built layouts

_IMG, _CMP, _INFO, _PC2 = (
    "sensor_msgs/msg/Image",
    "sensor_msgs/msg/CompressedImage",
    "sensor_msgs/msg/CameraInfo",
    "sensor_msgs/msg/PointCloud2",
)


def test_a_rectified_colour_image_outranks_another_image_of_its_camera():
    """colour_candidates: of the images beside one camera_info image_proc's colour one beats its
    image_mono (grey), rectified or not, instead of an ambiguity (was _colour_score's
    'raw/rectified images' rank; one image a CameraInfo is now chosen before the score, rgb/gray vs
    rgb/color of ZED 5.1+ in test_outside_recordings8 guards the score's grey rank). (image_proc's
    plain ``image_rect`` is grey too: test_outside_session25.)"""
    from gs_mapping.topics import discover

    types = {
        "/cam/color/image_rect_color": _IMG,
        "/cam/color/image_mono": _IMG,
        "/cam/color/camera_info": _INFO,
        "/cam/depth/image": _IMG,
    }
    assert discover(types).color == "/cam/color/image_rect_color"


def test_a_rectified_depth_outranks_the_unrectified_one():
    """discover: among unregistered depths the rectified one ('rect' in the name, realsense's
    depth/image_rect_raw) is preferred over a raw depth beside it, not reported as ambiguous."""
    from gs_mapping.topics import discover

    types = {
        "/cam/color/image_raw": _IMG,
        "/cam/color/camera_info": _INFO,
        "/cam/depth/image_rect_raw": _IMG,
        "/cam/depth/image_raw": _IMG,
        "/cam/depth/camera_info": _INFO,
    }
    found = discover(types)
    assert found.depth == "/cam/depth/image_rect_raw"
    assert found.depth_camera_info == "/cam/depth/camera_info"


def test_no_depth_and_two_clouds_is_ambiguous_not_the_first_cloud():
    """discover: with no depth image a single PointCloud2 is the geometry; with several the user
    must choose (module docstring: 'When more than one candidate remains the choice is
    ambiguous')."""
    from gs_mapping.errors import ConfigError
    from gs_mapping.topics import discover

    types = {
        "/cam/color/image_raw": _IMG,
        "/cam/color/camera_info": _INFO,
        "/lidar/front/points": _PC2,
        "/lidar/rear/points": _PC2,
    }
    with pytest.raises(ConfigError, match="several clouds.*--cloud-topic") as err:
        discover(types)
    assert "/lidar/front/points" in str(err.value) and "/lidar/rear/points" in str(err.value)
    del types["/lidar/rear/points"]
    assert discover(types).cloud == "/lidar/front/points"


def test_an_infrared_stream_is_never_the_colour_image():
    """Module docstring: colour is an image 'whose name says nothing of depth, infrared or
    disparity' — realsense's infra1 (with its own camera_info) is not a colour candidate."""
    from gs_mapping.topics import colour_candidates, discover

    types = {
        "/camera/image_raw": _IMG,
        "/camera/camera_info": _INFO,
        "/camera/infra1/image_rect_raw": _IMG,
        "/camera/infra1/camera_info": _INFO,
        "/camera/depth/image_rect_raw": _IMG,
    }
    assert colour_candidates(types) == ["/camera/image_raw"]
    assert discover(types).color == "/camera/image_raw"


def test_a_depth_named_registered_is_registered_already():
    """_REGISTERED: a depth whose name says 'registered' is in the colour camera already: it is
    preferred over an unregistered depth, and its own camera_info is not used to register it
    again through TF."""
    from gs_mapping.topics import discover

    types = {
        "/cam/rgb/image_raw": _IMG,
        "/cam/rgb/camera_info": _INFO,
        "/cam/depth/image_raw": _IMG,
        "/cam/depth/camera_info": _INFO,
        "/cam/registered/depth/image_raw": _IMG,
        "/cam/registered/depth/camera_info": _INFO,
    }
    found = discover(types)
    assert found.depth == "/cam/registered/depth/image_raw"
    assert found.depth_camera_info == ""


# ------------------------------------------------------------------------------------------------
# output_files: never an input, never a name that is not one


def test_an_input_that_does_not_exist_yet_is_still_never_the_output(tmp_path):
    """output_files: an input is the same file 'by inode or real path' — with no file there yet to
    compare inodes, the same real path (through a symlinked directory) is still refused."""
    from gs_mapping.errors import OutputError
    from gs_mapping.output_files import check_output, write_bytes

    (tmp_path / "real").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "real")
    inp = tmp_path / "real" / "scene.ply"  # not written yet (e.g. removed while the command ran)
    for out in (inp, tmp_path / "alias" / "scene.ply"):
        with pytest.raises(OutputError, match="is an input of this command"):
            check_output(out, overwrite=True, inputs=[inp])
        with pytest.raises(OutputError, match="is an input of this command"):
            write_bytes(out, b"x", overwrite=True, inputs=[inp])
    assert sorted(p.name for p in (tmp_path / "real").iterdir()) == []


def test_a_dot_dot_output_name_is_refused_even_with_overwrite(tmp_path):
    """check_output: '..' is no output name — '--out sub/..' with --overwrite must never
    go on to replace the directory that holds everything."""
    from gs_mapping.errors import OutputError
    from gs_mapping.output_files import check_output

    (tmp_path / "sub").mkdir()
    (tmp_path / "keep.txt").write_text("keep")
    target = os.path.join(str(tmp_path / "sub"), "..")
    for directory in (True, False):
        with pytest.raises(OutputError, match="not a usable output name"):
            check_output(target, overwrite=True, directory=directory)
    assert (tmp_path / "keep.txt").read_text() == "keep"


def test_a_read_only_output_directory_is_refused_before_the_work_starts(tmp_path):
    """check_output runs 'before the work starts': a directory that refuses writes is one
    OutputError there (not after a long run, when the temp file cannot be made)."""
    from hostile_fs import read_only_dir

    from gs_mapping.errors import OutputError
    from gs_mapping.output_files import check_output

    with read_only_dir(tmp_path) as ro:
        if os.access(ro, os.W_OK):
            pytest.skip("cannot make a directory that refuses writes here (root without mount)")
        for directory in (False, True):
            with pytest.raises(OutputError, match=r"cannot write: (read-only file system|permission denied)"):
                check_output(ro / "out.ply", directory=directory)


def test_without_hard_links_a_dangling_symlink_is_still_not_clobbered(tmp_path, monkeypatch):
    """_install_file on a file system without hard links (FAT: link() fails with EPERM) falls back
    to check-then-rename; a symlink at the target — even one pointing nowhere — exists, so without
    --overwrite it is refused, as on a file system with links (and no temp file is left)."""
    import errno

    from gs_mapping import output_files
    from gs_mapping.errors import OutputError

    def no_links(src, dst, *a, **k):
        raise OSError(errno.EPERM, "Operation not permitted")

    target = tmp_path / "map.ply"
    monkeypatch.setattr(output_files.os, "link", no_links)
    with pytest.raises(OutputError, match="exists already"):
        with output_files.output_path(target) as tmp:
            tmp.write_bytes(b"new")
            target.symlink_to(tmp_path / "elsewhere.ply")  # appeared meanwhile, dangling
    assert target.is_symlink() and os.readlink(target) == str(tmp_path / "elsewhere.ply")
    assert [p.name for p in tmp_path.iterdir()] == ["map.ply"]


def test_an_output_that_became_a_link_to_the_input_during_the_work_is_refused(tmp_path):
    """output_path re-checks the inputs after the block ('the target may have changed meanwhile'):
    an output name that now is a hard link to the input is refused, the input's bytes stay under
    both names."""
    from gs_mapping.errors import OutputError
    from gs_mapping.output_files import output_path

    inp, out = tmp_path / "in.ply", tmp_path / "out.ply"
    inp.write_bytes(b"input")
    with pytest.raises(OutputError, match="is an input of this command"):
        with output_path(out, overwrite=True, inputs=[inp]) as tmp:
            tmp.write_bytes(b"new")
            os.link(inp, out)  # e.g. a script that linked the files while the map was built
    assert inp.read_bytes() == b"input" and out.read_bytes() == b"input"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.ply", "out.ply"]


def test_a_symlink_to_a_directory_is_not_replaced_as_an_output_directory(tmp_path):
    """An existing output directory that is a symlink is refused before the work (check_output:
    'is a symbolic link to …'; install_directory refuses it too, after); neither the link nor the
    directory it points to changes."""
    from gs_mapping.errors import OutputError
    from gs_mapping.output_files import output_directory

    real = tmp_path / "real_run"
    real.mkdir()
    (real / "map.ply").write_bytes(b"old")
    link = tmp_path / "run"
    link.symlink_to(real)
    with pytest.raises(OutputError, match=f"is a symbolic link to {real}"):
        with output_directory(link, overwrite=True, allowed=["*.ply"]) as tmp:
            (tmp / "map.ply").write_bytes(b"new")
    assert link.is_symlink() and (real / "map.ply").read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["real_run", "run"]


def test_an_output_directory_gets_the_mode_mkdir_would_give(tmp_path):
    """output_directory: the run folder gets 0777 & ~umask, as os.mkdir makes it (others can read
    a shared map), not mkdtemp's private 0700."""
    import stat

    from gs_mapping.output_files import output_directory

    old = os.umask(0o022)
    try:
        (tmp_path / "plain").mkdir()
        with output_directory(tmp_path / "run") as tmp:
            (tmp / "map.ply").write_bytes(b"x")
        os.umask(0o027)
        with output_directory(tmp_path / "run2") as tmp:
            (tmp / "map.ply").write_bytes(b"x")
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "run").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "plain").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "run2").stat().st_mode) == 0o750


def test_a_symlink_to_an_empty_directory_is_not_an_empty_output(tmp_path):
    """check_output: only a real empty directory 'holds nothing to lose'; a symlink to one is
    refused (the finished folder would replace the link, not fill what it points to)."""
    from gs_mapping.errors import OutputError
    from gs_mapping.output_files import check_output

    (tmp_path / "empty").mkdir()
    (tmp_path / "run").symlink_to(tmp_path / "empty")
    assert check_output(tmp_path / "empty", directory=True) == tmp_path / "empty"
    for overwrite in (False, True):
        with pytest.raises(OutputError, match="is a symbolic link"):
            check_output(tmp_path / "run", directory=True, overwrite=overwrite)


# ------------------------------------------------------------------------------------------------
# input_files: the memory estimate


@pytest.mark.parametrize("sh_degree", [0, 1, 3])
def test_map_bytes_is_what_a_gaussian_map_holds(sh_degree):
    """map_bytes against numpy: the nbytes of a real GaussianMap's arrays of n Gaussians."""
    from gs_mapping.gaussians import GaussianMap
    from gs_mapping.input_files import map_bytes

    n = 37
    k = (sh_degree + 1) ** 2
    m = GaussianMap(
        sh_degree=sh_degree,
        means=np.zeros((n, 3)),
        quats=np.tile([1.0, 0.0, 0.0, 0.0], (n, 1)),
        log_scales=np.zeros((n, 3)),
        opacity_logits=np.zeros(n),
        sh=np.zeros((n, k, 3)),
    )
    arrays = (m.means, m.quats, m.log_scales, m.opacity_logits, m.sh, m.ids, m.levels)
    assert map_bytes(n, sh_degree) == sum(a.nbytes for a in arrays)


def test_the_peak_estimate_covers_the_measured_peaks():
    """peak_bytes against the peaks measured in input_files' comment (bytes a Gaussian above the
    process's start): SH 0 read 367, SH 3 read 778, SH 3 read + PLY write 1,180 — the estimate
    must not be below any of them."""
    from gs_mapping.input_files import peak_bytes

    n = 1_000_000
    assert peak_bytes(n, 0) >= 367 * n
    assert peak_bytes(n, 3) >= 1180 * n


# ------------------------------------------------------------------------------------------------
# config_file: ROS 2 parameter files


@dataclasses.dataclass
class _Keyframe:
    min_translation_m: float = param(0.1, "keyframe translation", (0.0, 10.0))
    max_frames: int = param(5, "frames")


@dataclasses.dataclass
class _Mapper:
    topics: list = param(["/a", "/b"], "topics")
    keyframe: _Keyframe = dataclasses.field(default_factory=_Keyframe)
    name: str = param("x", "a name")
    pair: tuple[float, float] = param((1.0, 2.0), "two numbers")
    maybe: int | None = param(None, "an optional integer")
    size: float | str = param(1.0, "metres, or 'auto'")
    workers: int = param(2, "worker threads", (1, 64))
    device: Literal["cpu", "cuda"] = param("cpu", "where to compute")


def test_a_list_default_is_not_shared_between_configs():
    """param(): a list default becomes a default_factory copy, as dataclasses require — changing
    one config's list must not change the next config's default."""
    a = _Mapper()
    a.topics.append("/c")
    assert _Mapper().topics == ["/a", "/b"]


def test_a_node_key_holding_more_than_ros_parameters_is_refused(tmp_path):
    """read_parameters: each node key holds 'exactly one ros__parameters mapping' (the ROS 2
    parameter file layout); a sibling key beside it is a mistake reported in one line."""
    from gs_mapping.config_file import read_parameters
    from gs_mapping.errors import ConfigError

    p = tmp_path / "p.yaml"
    p.write_text("/**:\n  ros__parameters:\n    mapper: {a: 1}\n  mapper: {a: 2}\n")
    with pytest.raises(ConfigError, match="exactly one 'ros__parameters' mapping"):
        read_parameters(p)


def test_node_sections_merge_key_by_key(tmp_path):
    """read_parameters returns the merged ros__parameters of every node key: a later node key that
    sets one nested value keeps the others of the earlier key (as ROS applies '/**' then the
    node's own entries)."""
    from gs_mapping.config_file import load_section, read_parameters

    p = tmp_path / "p.yaml"
    p.write_text(
        "/**:\n  ros__parameters:\n    mapper:\n      name: base\n      keyframe: {min_translation_m: 0.5, max_frames: 9}\n"
        "mapper_node:\n  ros__parameters:\n    mapper:\n      keyframe: {max_frames: 3}\n"
    )
    assert read_parameters(p) == {
        "mapper": {"name": "base", "keyframe": {"min_translation_m": 0.5, "max_frames": 3}}
    }
    cfg = load_section(p, "mapper", _Mapper)
    assert (cfg.name, cfg.keyframe.min_translation_m, cfg.keyframe.max_frames) == ("base", 0.5, 3)


def test_null_is_accepted_only_where_the_type_is_optional():
    """_coerce: a YAML null (~) is a value only for an Optional field; for 'float | str' it is a
    one-line ConfigError naming the key, not a None the component then trips over."""
    from gs_mapping.config_file import from_dict
    from gs_mapping.errors import ConfigError

    assert from_dict(_Mapper, {"maybe": None}).maybe is None
    assert from_dict(_Mapper, {"size": "auto"}).size == "auto"
    with pytest.raises(ConfigError, match=r"f\.yaml: mapper\.size"):
        from_dict(_Mapper, {"size": None}, where="f.yaml: mapper")


def test_a_fixed_length_tuple_needs_exactly_its_values():
    """_coerce: a 'tuple[float, float]' parameter takes exactly two values; three is an error,
    not a silently dropped third (zip would stop at two)."""
    from gs_mapping.config_file import from_dict
    from gs_mapping.errors import ConfigError

    assert from_dict(_Mapper, {"pair": [3, 4]}).pair == (3.0, 4.0)
    for bad in ([1.0, 2.0, 3.0], [1.0]):
        with pytest.raises(ConfigError, match=f"mapper.pair: expected 2 values, got {len(bad)}"):
            from_dict(_Mapper, {"pair": bad}, where="mapper")


@pytest.mark.parametrize(("key", "value"), [("min_translation_m", True), ("max_frames", False)])
def test_a_boolean_is_not_a_number_in_a_parameter_file(key, value):
    """_coerce: YAML 'true' is a bool, which Python counts as an int; a numeric parameter given
    true/false is an error (ROS 2 would refuse the type too), not 1.0 or 0."""
    from gs_mapping.config_file import from_dict
    from gs_mapping.errors import ConfigError

    with pytest.raises(ConfigError, match=f"keyframe.{key}: expected an? (number|integer)"):
        from_dict(_Mapper, {"keyframe": {key: value}}, where="mapper")


def test_an_empty_parameter_file_gives_the_defaults(tmp_path):
    """load_section: a parameter file with nothing in it (or only comments) is valid and gives
    the defaults, as an absent section does."""
    from gs_mapping.config_file import load_section, read_parameters

    p = tmp_path / "empty.yaml"
    p.write_text("# nothing set yet\n")
    assert read_parameters(p) == {}
    assert load_section(p, "mapper", _Mapper) == _Mapper()


def test_the_dumped_parameter_file_shows_each_range_in_its_comment():
    """dump_section writes config/full.yaml's layout: the description comment ends with the
    parameter's range '[lo, hi]' (as full.yaml's '# … [0.0, 1.0]' lines), and the text loads back."""
    import yaml

    from gs_mapping.config_file import dump_section, from_dict

    text = dump_section("mapper", _Mapper())
    lines = text.splitlines()
    i = lines.index("        min_translation_m: 0.1")
    assert lines[i - 1] == "        # keyframe translation [0.0, 10.0]"
    assert "      # a name" in lines  # no range: no brackets
    assert from_dict(_Mapper, yaml.safe_load(text)["mapper"]) == _Mapper()


# ------------------------------------------------------------------------------------------------
# bag: rosbag2 reading and writing, checked with rosbags' and mcap's own readers and writers


def _qos(transient_local: bool):
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    t = QosTime(sec=0, nsec=0)
    return Qos(
        history=QosHistory.KEEP_LAST,
        depth=1,
        reliability=QosReliability.RELIABLE,
        durability=QosDurability.TRANSIENT_LOCAL if transient_local else QosDurability.VOLATILE,
        deadline=t,
        lifespan=t,
        liveliness=QosLiveliness.AUTOMATIC,
        liveliness_lease_duration=t,
        avoid_ros_namespace_conventions=False,
    )


def _rosbags_bag(path, topics, storage="sqlite3"):
    """A bag written by rosbags alone: ``topics`` {name: (offered QoS list, [stamps])} of
    std_msgs/String."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_HUMBLE)
    String = store.types["std_msgs/msg/String"]
    plugin = StoragePlugin.SQLITE3 if storage == "sqlite3" else StoragePlugin.MCAP
    with Writer(path, version=8, storage_plugin=plugin) as w:
        for name, (profiles, stamps) in topics.items():
            conn = w.add_connection(
                name, "std_msgs/msg/String", typestore=store, offered_qos_profiles=profiles
            )
            for s in stamps:
                w.write(conn, s, store.serialize_cdr(String(data=f"{name}@{s}"), "std_msgs/msg/String"))
    return path


def test_a_topic_is_latched_only_when_every_publisher_offered_transient_local(tmp_path):
    """rosbag2 play re-latches a topic only when all its recorded publishers offered
    transient_local (rosbag2_transport's QoS adaptation); one volatile publisher makes it volatile."""
    from gs_mapping.bag import BagReader

    bag = _rosbags_bag(
        tmp_path / "b",
        {
            "/all": ([_qos(True), _qos(True)], [1]),
            "/mixed": ([_qos(True), _qos(False)], [2]),
            "/none": ([], [3]),
        },
    )
    with BagReader(bag) as r:
        assert {t.name: t.latched for t in r.topics} == {"/all": True, "/mixed": False, "/none": False}


def test_written_qos_profiles_are_the_ros_2_ones(tmp_path):
    """BagWriter: a latched topic is offered as tf2_ros' StaticTransformBroadcaster offers
    /tf_static (keep last 1, reliable, transient_local), others as rclcpp's default QoS (keep last
    10, reliable, volatile) — read back by rosbags' own reader from metadata.yaml."""
    from rosbags.interfaces import QosDurability, QosHistory, QosReliability
    from rosbags.rosbag2 import Reader

    from gs_mapping.bag import BagWriter

    out = tmp_path / "qos"
    with BagWriter(out) as w:
        w.add_topic("/tf_static", "tf2_msgs/msg/TFMessage", latched=True)
        w.add_topic("/chatter", "std_msgs/msg/String")
    with Reader(out) as r:
        got = {c.topic: c.ext.offered_qos_profiles for c in r.connections}
    (static,), (chatter,) = got["/tf_static"], got["/chatter"]
    assert (static.history, static.depth, static.reliability, static.durability) == (
        QosHistory.KEEP_LAST,
        1,
        QosReliability.RELIABLE,
        QosDurability.TRANSIENT_LOCAL,
    )
    assert (chatter.history, chatter.depth, chatter.reliability, chatter.durability) == (
        QosHistory.KEEP_LAST,
        10,
        QosReliability.RELIABLE,
        QosDurability.VOLATILE,
    )


def test_stamp_zero_is_a_valid_time_and_a_bool_is_not_a_stamp(tmp_path):
    """write_raw: 'stamp must be a non-negative int of nanoseconds' — 0 (a simulator's first
    instant) is written and read back by the mcap package's own reader as log time 0; True (an
    int to Python) and -1 are refused in one line."""
    from mcap.reader import make_reader

    from gs_mapping.bag import BagWriter, default_typestore
    from gs_mapping.errors import BagError

    store = default_typestore()
    String = store.types["std_msgs/msg/String"]
    out = tmp_path / "zero"
    with BagWriter(out) as w:
        w.add_topic("/chatter", "std_msgs/msg/String")
        w.write("/chatter", 0, String(data="first"))
        for bad in (True, -1):
            with pytest.raises(BagError, match="stamp must be a non-negative int of nanoseconds"):
                w.write("/chatter", bad, String(data="bad"))
        w.write("/chatter", 5, String(data="second"))
    (mcap_file,) = out.glob("*.mcap")
    with open(mcap_file, "rb") as fh:
        got = [(ch.topic, m.log_time) for _, ch, m in make_reader(fh).iter_messages()]
    assert got == [("/chatter", 0), ("/chatter", 5)]


def test_a_metadata_time_span_that_lies_is_taken_from_the_storage(tmp_path, caplog):
    """_reconcile_with_storage: 'metadata.yaml may lie … take counts and times from the storage
    itself … and say so' — even when only the time span is wrong. Reference: the sqlite rows, read
    with sqlite3."""
    import logging
    import sqlite3

    import yaml

    from gs_mapping.bag import BagReader

    bag = _rosbags_bag(tmp_path / "b", {"/a": ([], [10 * S, 12 * S]), "/b": ([], [11 * S, 15 * S])})
    meta_path = bag / "metadata.yaml"
    meta = yaml.safe_load(meta_path.read_text())
    info = meta["rosbag2_bagfile_information"]
    info["starting_time"]["nanoseconds_since_epoch"] = 1 * S  # counts stay right
    info["duration"]["nanoseconds"] = 100 * S
    meta_path.write_text(yaml.safe_dump(meta))
    (db,) = bag.glob("*.db3")
    con = sqlite3.connect(db)
    first, last = con.execute("SELECT MIN(timestamp), MAX(timestamp) FROM messages").fetchone()
    con.close()
    with caplog.at_level(logging.WARNING, logger="gs_mapping.bag"), BagReader(bag) as r:
        assert (r.start_ns, r.end_ns) == (first, last) == (10 * S, 15 * S)
        assert r.message_count == 4
    assert "metadata.yaml disagrees with the storage" in caplog.text and "time span" in caplog.text


def one_message_mcap(out):
    """A real one-message MCAP bag written by BagWriter at ``out`` (``/a``: std_msgs/String "x" at
    1 ns), for tests that damage its records; its .mcap file."""
    from gs_mapping.bag import BagWriter, default_typestore

    with BagWriter(out) as w:
        w.add_topic("/a", "std_msgs/msg/String")
        w.write("/a", 1, default_typestore().types["std_msgs/msg/String"](data="x"))
    (f,) = out.glob("*.mcap")
    return f


def _mcap_records(data: bytes):
    """(opcode, offset, length) of the top-level records of an MCAP file (spec: magic, then
    opcode u8 + length u64 + body, up to the Footer)."""
    pos, out = 8, []
    while pos + 9 <= len(data) - 8:
        op, length = struct.unpack_from("<BQ", data, pos)
        out.append((op, pos, length))
        if op == 0x02:
            break
        pos += 9 + length
    return out


def test_a_flipped_bit_outside_the_chunks_is_caught_by_the_data_section_crc(tmp_path):
    """Module docstring: 'we check the data-section and summary CRCs, so a flipped bit in a bag is
    an error'. A flip in a MessageIndex record (data section, outside every chunk: rosbags reads
    on) must fail the open; the DataEnd CRC, recomputed with zlib, says the bytes changed."""
    import zlib

    from gs_mapping.bag import BagReader, BagWriter, default_typestore
    from gs_mapping.errors import BagError

    store = default_typestore()
    String = store.types["std_msgs/msg/String"]
    out = tmp_path / "b"
    with BagWriter(out) as w:
        w.add_topic("/a", "std_msgs/msg/String")
        for i in range(5):
            w.write("/a", i * 10, String(data=f"m{i}"))
    (f,) = out.glob("*.mcap")
    data = bytearray(f.read_bytes())
    recs = _mcap_records(bytes(data))
    (data_end,) = [pos for op, pos, _ in recs if op == 0x0F]
    stored = struct.unpack_from("<I", data, data_end + 9)[0]
    assert zlib.crc32(bytes(data[:data_end])) == stored  # as written: sealed
    index = next((pos, n) for op, pos, n in recs if op == 0x07)
    data[index[0] + 9 + index[1] - 1] ^= 0x01  # last byte of a message's offset
    assert zlib.crc32(bytes(data[:data_end])) != stored
    f.write_bytes(bytes(data))
    with pytest.raises(BagError, match="checksum mismatch"):
        with BagReader(out) as r:
            list(r.messages())


def test_two_channels_of_one_topic_count_together(tmp_path):
    """An MCAP file written by the mcap package itself with two channels on one topic (two
    publishers, as mcap's ROS 2 recorder may store them): BagReader counts the topic's messages
    over both channels, as mcap's own reader sees them."""
    from mcap.reader import make_reader
    from mcap.writer import Writer

    from gs_mapping.bag import BagReader, default_typestore

    store = default_typestore()
    String = store.types["std_msgs/msg/String"]
    path = tmp_path / "two_channels.mcap"
    with open(path, "wb") as fh:
        w = Writer(fh)
        w.start(profile="ros2", library="test")
        schema = w.register_schema("std_msgs/msg/String", "ros2msg", b"string data")
        chans = [w.register_channel("/a", "cdr", schema) for _ in range(2)]
        for k, n in enumerate((3, 2)):
            for i in range(n):
                t = (10 * k + i + 1) * MS
                data = bytes(store.serialize_cdr(String(data=f"{k}.{i}"), "std_msgs/msg/String"))
                w.add_message(chans[k], log_time=t, data=data, publish_time=t)
        w.finish()
    with open(path, "rb") as fh:
        want = sum(1 for _, ch, _ in make_reader(fh).iter_messages() if ch.topic == "/a")
    assert want == 5
    with BagReader(path) as r:
        assert r.topic("/a").count == r.message_count == want
        assert [m.data for _, _, m in r.messages("/a")] == ["0.0", "0.1", "0.2", "1.0", "1.1"]


def test_the_writers_counts_are_the_messages_in_the_file(tmp_path):
    """BagWriter.counts (the per-topic numbers `world record` reports) against the mcap package
    counting the messages of the finished file, write() and write_raw() alike."""
    from collections import Counter

    from mcap.reader import make_reader

    from gs_mapping.bag import BagWriter, default_typestore

    store = default_typestore()
    String = store.types["std_msgs/msg/String"]
    out = tmp_path / "counted"
    with BagWriter(out) as w:
        w.add_topic("/a", "std_msgs/msg/String")
        w.add_topic("/b", "std_msgs/msg/String")
        w.add_topic("/never", "std_msgs/msg/String")
        for i in range(3):
            w.write("/a", i, String(data="a"))
        w.write_raw("/b", 7, store.serialize_cdr(String(data="b"), "std_msgs/msg/String"))
        counts = dict(w.counts)
    (f,) = out.glob("*.mcap")
    with open(f, "rb") as fh:
        seen = Counter(ch.topic for _, ch, _ in make_reader(fh).iter_messages())
    assert counts == {"/a": seen["/a"], "/b": seen["/b"], "/never": 0} == {"/a": 3, "/b": 1, "/never": 0}


def test_latest_lookup_after_time_went_back_is_a_tf_error_not_a_traceback():
    """TFBuffer: 'Raises TFError' / can_transform answers True or False. After a backward time
    jump every moving edge is emptied (tf2_ros' clock-jump rule); until the second edge of a chain
    receives a sample, asking for the latest common time (stamp None, tf2's Time(0)) must be a
    TFError naming the edge, as a stamped lookup already is — and can_transform False."""
    from gs_mapping.errors import ExtrapolationError, TFError
    from gs_mapping.tf import TFBuffer

    tf = TFBuffer(cache_time_s=10)
    for t in (100, 101):
        tf.add(_ts("map", "odom", t * S))
        tf.add(_ts("odom", "base", t * S))
    tf.add(_ts("map", "odom", 1 * S))  # the bag looped: time went back
    assert tf.time_jumps == 1
    with pytest.raises(ExtrapolationError, match="no sample since time went back"):
        tf.lookup("map", "base", 1 * S)  # stamped: one line already
    assert tf.can_transform("map", "base", None) is False
    with pytest.raises(TFError, match="edge odom -> base has no sample since time went back"):
        tf.lookup("map", "base", None)
    with pytest.raises(TFError, match="edge odom -> base"):
        tf.latest_common_stamp("map", "base")


@pytest.mark.parametrize("name", ["metadata.yaml", "data_0.mcap", "data_0.db3"])
def test_a_bag_directory_whose_storage_is_not_a_file_says_so(tmp_path, name):
    """_find_storage: 'what the storage plugins open must be regular files too' — a metadata.yaml
    or storage name that is a directory (a FIFO would block the reader) is one BagError naming it."""
    from gs_mapping.bag import BagReader
    from gs_mapping.errors import BagError

    bag = tmp_path / "bag"
    bag.mkdir()
    (bag / name).mkdir()
    with pytest.raises(BagError, match=f"{name}: not a regular file"):
        BagReader(bag).open()


def test_a_ros_1_bag_is_named_as_such_with_the_conversion_command(tmp_path):
    """_find_storage: a ROS 1 ``.bag`` file is not just 'not a bag': the error says to convert it
    and gives rosbags-convert's command line (rosbags-convert --src X.bag --dst X)."""
    from gs_mapping.bag import BagReader
    from gs_mapping.errors import BagError

    old = tmp_path / "drive.bag"
    old.write_bytes(b"#ROSBAG V2.0\n")  # the ROS 1 bag magic line
    with pytest.raises(BagError, match="a ROS 1 bag; convert it first") as err:
        BagReader(old).open()
    assert f"rosbags-convert --src {old} --dst {tmp_path / 'drive'}" in str(err.value)


def test_a_damaged_header_record_opcode_is_an_error(tmp_path):
    """MCAP spec: the magic is followed by the Header record (opcode 0x01). rosbags reads through
    the summary and would not notice a flipped opcode there; _check_mcap_framing must."""
    from gs_mapping.bag import BagReader
    from gs_mapping.errors import BagError

    out = tmp_path / "b"
    f = one_message_mcap(out)
    data = bytearray(f.read_bytes())
    assert _mcap_records(bytes(data))[0][:2] == (0x01, 8)
    data[8] ^= 0x40
    f.write_bytes(bytes(data))
    with pytest.raises(BagError, match="header record expected at offset 8, found opcode 0x41"):
        BagReader(out).open()


@pytest.mark.parametrize("err", ["EPERM", "EOPNOTSUPP", "EMLINK"])
def test_without_hard_links_a_new_output_is_still_written(tmp_path, monkeypatch, err):
    """_install_file: where link() is refused (FAT and some FUSE file systems answer EPERM, others
    EOPNOTSUPP; a full link count EMLINK) the output is renamed into place instead."""
    import errno

    from gs_mapping import output_files

    def no_links(src, dst, *a, **k):
        raise OSError(getattr(errno, err), os.strerror(getattr(errno, err)))

    monkeypatch.setattr(output_files.os, "link", no_links)
    out = tmp_path / "map.ply"
    output_files.write_bytes(out, b"payload")
    assert out.read_bytes() == b"payload"
    assert [p.name for p in tmp_path.iterdir()] == ["map.ply"]


def test_a_summary_offset_past_the_footer_is_named(tmp_path):
    """_check_mcap_framing: a footer whose summary_start points past the footer itself (a flipped
    high bit) is reported as such, before any checksum is computed over bytes that are not there."""
    from gs_mapping.bag import BagReader
    from gs_mapping.errors import BagError

    out = tmp_path / "b"
    f = one_message_mcap(out)
    data = bytearray(f.read_bytes())
    footer = len(data) - 8 - 29
    assert data[footer] == 0x02
    struct.pack_into("<Q", data, footer + 9, len(data) + 4096)
    f.write_bytes(bytes(data))
    with pytest.raises(BagError, match="summary start .* lies beyond the footer"):
        BagReader(out).open()


def test_a_dash_output_is_refused_and_no_file_named_dash_appears(tmp_path, monkeypatch):
    """check_output: '-' is what many tools read as standard output; it is refused in one line
    rather than creating a file named '-' in the working directory."""
    from gs_mapping.errors import OutputError
    from gs_mapping.output_files import write_bytes

    monkeypatch.chdir(tmp_path)
    with pytest.raises(OutputError, match="standard output is not supported"):
        write_bytes("-", b"x", overwrite=True)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("mode", ["ab", "a", "r+b", "xb"])
def test_open_output_only_truncating_write_modes(tmp_path, mode):
    """open_output: 'mode must be wb or w' — an append mode would suggest the old output is kept
    and extended, while the temp-and-rename replaces it whole."""
    from gs_mapping.output_files import open_output

    out = tmp_path / "log.txt"
    out.write_text("old\n")
    with pytest.raises(ValueError, match="mode must be 'wb' or 'w'"):
        with open_output(out, mode, overwrite=True) as fh:
            fh.write(b"new\n" if "b" in mode else "new\n")
    assert out.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["log.txt"]


@pytest.mark.parametrize(("value", "ok"), [(0, False), (1, True), (64, True), (65, False)])
def test_an_integer_parameter_outside_its_range_is_refused(value, ok):
    """from_dict: 'the range is checked when the config is built from a file' — for integer
    parameters as for floats (ROS 2's IntegerRange), bounds included."""
    from gs_mapping.config_file import from_dict
    from gs_mapping.errors import ConfigError

    if ok:
        assert from_dict(_Mapper, {"workers": value}).workers == value
    else:
        with pytest.raises(ConfigError, match=rf"mapper.workers: {value} is outside \[1, 64\]"):
            from_dict(_Mapper, {"workers": value}, where="mapper")


def test_a_choice_parameter_takes_only_its_choices():
    """_coerce: a Literal parameter ('cpu' or 'cuda') refuses any other value in one line naming
    the choices, instead of passing 'gpu' on to the component."""
    from gs_mapping.config_file import from_dict
    from gs_mapping.errors import ConfigError

    assert from_dict(_Mapper, {"device": "cuda"}).device == "cuda"
    with pytest.raises(ConfigError, match=r"mapper.device: 'gpu' is not one of \['cpu', 'cuda'\]"):
        from_dict(_Mapper, {"device": "gpu"}, where="mapper")


def test_a_device_named_like_a_bag_is_refused_in_one_line(tmp_path):
    """_find_storage: 'a FIFO or a device would block or never end' — a link named scene.mcap to
    /dev/null is refused as neither a regular file nor a directory."""
    from gs_mapping.bag import BagReader
    from gs_mapping.errors import BagError

    fake = tmp_path / "scene.mcap"
    fake.symlink_to("/dev/null")
    with pytest.raises(BagError, match="neither a regular file nor a directory"):
        BagReader(fake).open()


def test_one_topic_with_two_message_types_is_refused(tmp_path):
    """BagReader: a topic carries one message type (ROS 2 refuses to mix them); an MCAP file
    written by the mcap package with /a as String on one channel and Int32 on another is a
    BagError naming the topic and both types."""
    from mcap.writer import Writer

    from gs_mapping.bag import BagReader
    from gs_mapping.errors import BagError

    path = tmp_path / "mixed.mcap"
    with open(path, "wb") as fh:
        w = Writer(fh)
        w.start(profile="ros2", library="test")
        s1 = w.register_schema("std_msgs/msg/String", "ros2msg", b"string data")
        s2 = w.register_schema("std_msgs/msg/Int32", "ros2msg", b"int32 data")
        c1 = w.register_channel("/a", "cdr", s1)
        c2 = w.register_channel("/a", "cdr", s2)
        w.add_message(c1, log_time=1, data=b"\x00\x01\x00\x00\x02\x00\x00\x00x\x00", publish_time=1)
        w.add_message(c2, log_time=2, data=b"\x00\x01\x00\x00\x07\x00\x00\x00", publish_time=2)
        w.finish()
    with pytest.raises(BagError, match=r"topic /a has several message types: .*Int32.*String"):
        BagReader(path).open()
