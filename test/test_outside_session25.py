"""Outside review (session 25): today's camera discovery (one image per CameraInfo, ZED 5.1 names,
infrared as one rule) and PLY writing (the reference layout by default, ids only with keep_ids /
``--keep-ids``, nerfstudio's rgb colour read), each against something outside the code under test:
image_proc's documented outputs (``image_rect`` is the *monochrome* rectified image, beside
``image_rect_color``), the driver layouts README names, the pre-session writer itself (git
3b7affd's ``ply.save_ply``, rebuilt from the repository), the project's own DDS test contract
(``test_nodes_dds._assert_receiver_holds_the_mappers_map``: a receiver's saved PLY equals the
mapper's map quantised, ids included), and the viewers' SH DC formula worked by hand.

Found here, and fixed:
- image_proc's outputs without the driver's raw image (``ros2 bag record`` of ``image_rect`` and
  ``image_rect_color`` only, or the raw topic advertised but empty): discovery now takes
  ``image_rect`` — image_proc's monochrome rectified image — as the colour camera, silently; it used
  to refuse the pair as ambiguous. colour_candidates' "colour before grey" only knows grey by the words
  gray/grey/mono, and ``image_rect`` sorts before ``image_rect_color``;
- a map_receiver_node's saved PLY no longer holds the map's ids (the receiver saves plain), yet the
  project's DDS test (test_nodes_dds, slow, real processes) still compares its ``got.ids`` with the
  mapper's ids: it passes only because its short run removes no Gaussian (implicit ids are 1..N);
- a thermal camera named by its band, long-wave infrared (``/lwir/image_raw``, as multispectral rigs
  name it), is still taken as a colour camera: the new infrared rule knows ``ir`` and ``nir`` as name
  tokens, not ``lwir``/``mwir``/``swir``.
"""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import gs_mapping

SRC = Path(gs_mapping.__file__).resolve().parents[1]
REPO = SRC.parent

IMG = "sensor_msgs/msg/Image"
CIMG = "sensor_msgs/msg/CompressedImage"
CINFO = "sensor_msgs/msg/CameraInfo"
PC2 = "sensor_msgs/msg/PointCloud2"


def _types(*names: str) -> dict[str, str]:
    return {
        n: CINFO if n.endswith("camera_info") else CIMG if n.endswith("/compressed") else IMG for n in names
    }


def _bag_of(types_: dict[str, str], empty=()):
    return SimpleNamespace(
        topics=[SimpleNamespace(name=n, type=t, count=0 if n in empty else 5) for n, t in types_.items()]
    )


# --------------------------------------------------------------------------------------------------
# camera discovery: the layouts README names still give the driver's colour camera
# --------------------------------------------------------------------------------------------------

_LAYOUTS = {
    "realsense_3x": (
        _types(
            "/camera/color/image_raw", "/camera/color/camera_info",
            "/camera/aligned_depth_to_color/image_raw", "/camera/aligned_depth_to_color/camera_info",
            "/camera/depth/image_rect_raw", "/camera/depth/camera_info",
            "/camera/infra1/image_rect_raw", "/camera/infra1/camera_info",
            "/camera/infra2/image_rect_raw", "/camera/infra2/camera_info",
        ),
        ("/camera/color/image_raw", "/camera/aligned_depth_to_color/image_raw"),
    ),
    "realsense_4x_double_namespace": (
        _types(
            "/camera/camera/color/image_raw", "/camera/camera/color/camera_info",
            "/camera/camera/color/image_raw/compressed",
            "/camera/camera/aligned_depth_to_color/image_raw",
            "/camera/camera/aligned_depth_to_color/camera_info",
            "/camera/camera/infra1/image_rect_raw", "/camera/camera/infra1/camera_info",
        ),
        ("/camera/camera/color/image_raw", "/camera/camera/aligned_depth_to_color/image_raw"),
    ),
    "realsense_with_image_proc": (
        _types(
            "/camera/color/image_raw", "/camera/color/image_rect", "/camera/color/image_rect_color",
            "/camera/color/image_mono", "/camera/color/camera_info",
            "/camera/aligned_depth_to_color/image_raw",
        ),
        # (image_proc's debayered image_color would be the same pixels; not recorded here)
        ("/camera/color/image_raw", "/camera/aligned_depth_to_color/image_raw"),
    ),
    "zed_old": (
        _types(
            "/zed/zed_node/rgb/image_rect_color", "/zed/zed_node/rgb/image_rect_gray",
            "/zed/zed_node/rgb/camera_info",
            "/zed/zed_node/rgb_raw/image_raw_color", "/zed/zed_node/rgb_raw/camera_info",
            "/zed/zed_node/left/image_rect_color", "/zed/zed_node/left/camera_info",
            "/zed/zed_node/right/image_rect_color", "/zed/zed_node/right/camera_info",
            "/zed/zed_node/depth/depth_registered", "/zed/zed_node/depth/camera_info",
        ),
        ("/zed/zed_node/rgb/image_rect_color", "/zed/zed_node/depth/depth_registered"),
    ),
    "zed_51_everything_on": (
        _types(*[
            f"/zed/zed_node/{s}/{leaf}"
            for s in ("rgb/color/rect", "rgb/color/raw", "rgb/gray/rect", "left/color/rect",
                      "right/color/rect", "left/gray/rect")
            for leaf in ("image", "camera_info", "image/compressed")
        ], "/zed/zed_node/depth/depth_registered", "/zed/zed_node/depth/camera_info"),
        ("/zed/zed_node/rgb/color/rect/image", "/zed/zed_node/depth/depth_registered"),
    ),
    "oak_new": (
        _types(
            "/oak/rgb/image_raw", "/oak/rgb/camera_info", "/oak/stereo/image_raw", "/oak/stereo/camera_info",
            "/oak/left/image_raw", "/oak/left/camera_info", "/oak/right/image_raw", "/oak/right/camera_info",
        ),
        ("/oak/rgb/image_raw", "/oak/stereo/image_raw"),
    ),
    "oak_old": (
        _types(
            "/color/image", "/color/camera_info", "/stereo/depth", "/stereo/camera_info",
            "/left/image_rect", "/left/camera_info", "/right/image_rect", "/right/camera_info",
        ),
        ("/color/image", "/stereo/depth"),
    ),
    "azure_kinect": (
        _types(
            "/rgb/image_raw", "/rgb/camera_info", "/depth_to_rgb/image_raw", "/depth_to_rgb/camera_info",
            "/depth/image_raw", "/depth/camera_info", "/ir/image_raw", "/ir/camera_info",
        ),
        ("/rgb/image_raw", "/depth_to_rgb/image_raw"),
    ),
    "orbbec": (
        _types(
            "/camera/color/image_raw", "/camera/color/camera_info", "/camera/depth/image_raw",
            "/camera/depth/camera_info", "/camera/left_ir/image_raw", "/camera/left_ir/camera_info",
            "/camera/right_ir/image_raw", "/camera/right_ir/camera_info",
            "/camera/ir/image_raw", "/camera/ir/camera_info",
        ),
        ("/camera/color/image_raw", "/camera/depth/image_raw"),
    ),
    "this_world": (
        _types("/cameras/front/image_raw", "/cameras/front/camera_info", "/cameras/front/depth"),
        ("/cameras/front/image_raw", "/cameras/front/depth"),
    ),
}  # fmt: skip


@pytest.mark.parametrize("layout", sorted(_LAYOUTS))
def test_every_named_driver_layout_still_gives_the_drivers_colour_and_its_depth(layout):
    """README's ``map`` row names these layouts (RealSense 3.x and 4.x's double namespace, ZED before
    and after 5.1, OAK old and new, Azure Kinect, Orbbec with its ``left_ir``/``right_ir``, the
    world's ``/cameras/<name>/``): with no topic option, discovery gives the driver's colour image
    and the depth its registered or own depth topic is, exactly as each driver's documentation
    lays them out (the expected pairs written from those layouts, not from the code)."""
    from gs_mapping.topics import discover

    types_, (color, depth) = _LAYOUTS[layout]
    f = discover(types_)
    assert (f.color, f.depth) == (color, depth)


@pytest.mark.parametrize(
    "topic, rectified",
    [
        ("/camera/color/image_raw", False),
        ("/camera/color/image_rect_color/compressed", True),
        ("/camera/rectifier/image_raw", False),  # a namespace that merely contains 'rect'
        ("/direct/image", False),
        ("/zed/zed_node/rgb/color/rect/image", True),
        ("/zed/zed_node/rgb/color/raw/image/compressed", False),
        ("/zed/zed_node/rgb_raw/image_raw_color", False),
    ],
)
def test_is_rectified_goes_by_the_image_name_or_a_rect_level(topic, rectified):
    """image_proc names its rectified outputs ``image_rect*`` and ZED 5.1 a ``rect`` level; a name
    that only contains the letters (``rectifier``, ``direct``) is the raw camera."""
    from gs_mapping.topics import is_rectified

    assert is_rectified(topic) is rectified


@pytest.mark.parametrize(
    "name",
    ["/cameras/ir_front/image_raw", "/thermal/image_raw", "/cam_nir/image_raw", "/camera/IR/image_raw"],
)
def test_infrared_thermal_and_nir_names_are_not_colour(name):
    """README: infrared (``ir``), near-infrared and thermal streams are not cameras for ``map``."""
    from gs_mapping.topics import colour_candidates

    types_ = _types(name, name.rsplit("/", 1)[0] + "/camera_info", "/rgb/image_raw", "/rgb/camera_info")
    assert colour_candidates(types_) == ["/rgb/image_raw"]


def test_long_wave_infrared_is_thermal_not_colour():
    """Long-wave infrared (LWIR, 8-14 um) *is* thermal imaging; multispectral rigs name such a camera
    by its band (``/lwir/image_raw``, ``/camera/lwir/image_raw``; ``mwir``, ``swir`` likewise). README:
    "infrared ..., near-infrared and thermal streams are not cameras for it nor for hd-predict". The
    rule knows ``ir`` and ``nir`` as tokens only, so the thermal camera is a colour candidate and a
    bag with it and a colour camera is refused as ambiguous (or, alone, mapped in false colour)."""
    from gs_mapping.topics import colour_candidates

    types_ = _types("/lwir/image_raw", "/lwir/camera_info", "/rgb/image_raw", "/rgb/camera_info")
    assert colour_candidates(types_) == ["/rgb/image_raw"]


def test_one_image_per_camera_info_prefers_the_drivers_raw_over_image_proc(tmp_path):
    """One CameraInfo, one camera: of the driver's ``image_raw`` (recorded as ``/compressed`` only)
    and image_proc's ``image_rect`` / ``image_rect_color`` / ``image_mono`` beside it, the driver's
    is the camera (its registered depth was made in it), for ``map`` and ``hd-predict`` alike."""
    from gs_mapping.topics import discover
    from gsmap_hd.predict_bag import find_cameras

    t = _types(
        "/camera/color/image_raw/compressed", "/camera/color/image_rect", "/camera/color/image_rect_color",
        "/camera/color/image_mono", "/camera/color/camera_info", "/camera/aligned_depth_to_color/image_raw",
    )  # fmt: skip
    assert discover(t).color == "/camera/color/image_raw/compressed"
    assert find_cameras(_bag_of(t)) == ["/camera/color/image_raw/compressed"]


@pytest.mark.parametrize("raw", ["absent", "advertised_empty"])
def test_image_procs_mono_image_rect_is_not_taken_over_image_rect_color(raw):
    """image_proc's documented outputs (ROS 2 image_proc README): ``image_mono`` and ``image_rect``
    are *monochrome* (unrectified / rectified), ``image_color`` and ``image_rect_color`` colour. A
    recording of image_proc's rectified outputs (``ros2 bag record /camera/color/image_rect
    /camera/color/image_rect_color ...``, or ``-a`` with the driver's ``image_raw`` advertised but
    empty) has no driver image; the colour camera is ``image_rect_color``. colour_candidates groups
    both under the one CameraInfo and takes the min of (grey by name, rectified, name): ``image_rect``
    has no grey word and sorts first, so the mapper maps a grey image (before today: refused as
    ambiguous, naming both). hd-predict (find_cameras) takes it too (it did before today as well:
    its own min was (rectified, name))."""
    from gs_mapping.topics import discover
    from gsmap_hd.predict_bag import find_cameras

    names = ["/camera/color/image_rect", "/camera/color/image_rect_color", "/camera/color/camera_info",
             "/camera/aligned_depth_to_color/image_raw"]  # fmt: skip
    empty = frozenset()
    if raw == "advertised_empty":
        names.append("/camera/color/image_raw")
        empty = frozenset({"/camera/color/image_raw"})
    t = _types(*names)
    assert discover(t, empty=empty).color == "/camera/color/image_rect_color"
    assert find_cameras(_bag_of(t, empty)) == ["/camera/color/image_rect_color"]


def test_a_mono_cameras_raw_image_is_kept_raw_beside_its_rectified_one():
    """A mono8 camera with image_proc: its driver's ``image_raw`` (K and d: undistorted by the mapper)
    is taken over ``image_rect``; alone, ``image_rect`` (P's camera) is the camera."""
    from gs_mapping.topics import discover, is_rectified

    both = _types("/camera/image_raw", "/camera/image_rect", "/camera/camera_info", "/camera/depth/image_raw")
    assert discover(both).color == "/camera/image_raw" and not is_rectified("/camera/image_raw")
    alone = _types("/camera/image_rect", "/camera/camera_info", "/camera/depth/image_raw")
    assert discover(alone).color == "/camera/image_rect" and is_rectified("/camera/image_rect")


def test_topics_without_camera_info_are_not_colour_cameras():
    """Colour needs a sibling ``camera_info`` (module docstring): an image without one is not taken,
    however colourful its name."""
    from gs_mapping.errors import ConfigError
    from gs_mapping.topics import colour_candidates, discover

    t = _types("/camera/color/image_raw", "/camera/depth/image_raw")
    assert colour_candidates(t) == []
    with pytest.raises(ConfigError, match="no colour image topic with a sibling camera_info"):
        discover(t)


def test_several_cameras_of_a_rig_whose_names_hold_left_right_are_refused_as_ambiguous():
    """A rig of three cameras ``/cam_front/``, ``/cam_front_left/``, ``/cam_front_right/`` (nuScenes-
    style names, each its own camera and CameraInfo): no name says which is *the* camera, so
    discovery names them and asks for --color-topic, as the world's multi-camera bags are refused."""
    from gs_mapping.errors import ConfigError
    from gs_mapping.topics import discover

    t = _types(*[f"/{c}/{leaf}" for c in ("cam_front", "cam_front_left", "cam_front_right")
                 for leaf in ("image_raw", "camera_info", "depth/image_raw")])  # fmt: skip
    with pytest.raises(ConfigError, match="ambiguous.*--color-topic"):
        discover(t)


# --------------------------------------------------------------------------------------------------
# PLY: files of before today, nerfstudio's rgb, the receiver's saved map
# --------------------------------------------------------------------------------------------------


def _gapped_map(n=120, seed=3):
    """A map as a mapper holds it after pruning: ids with gaps, levels set."""
    from gs_mapping.gaussians import GaussianMap

    rng = np.random.default_rng(seed)
    q = rng.normal(0, 1, (n, 4))
    g = GaussianMap(
        sh_degree=1,
        means=rng.normal(0, 2, (n, 3)).astype(np.float32),
        quats=(q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32),
        log_scales=rng.normal(-3, 0.4, (n, 3)).astype(np.float32),
        opacity_logits=rng.normal(1, 1, n).astype(np.float32),
        sh=rng.normal(0, 0.3, (n, 4, 3)).astype(np.float32),
        levels=(np.arange(n) % 3).astype(np.uint8),
    )
    g.remove(g.ids[::7])  # pruned: the ids are no longer 1..N
    return g


def _old_ply_module():
    """git 3b7affd's ``gs_mapping.ply`` (before today), loaded from the repository's history."""
    src = subprocess.run(
        ["git", "-C", str(REPO), "show", "3b7affd:src/gs_mapping/ply.py"], capture_output=True, text=True
    )
    if src.returncode:
        pytest.skip(f"no git history here: {src.stderr.strip()[:100]}")
    mod = types.ModuleType("gs_mapping._ply_3b7affd")
    mod.__package__ = "gs_mapping"
    sys.modules[mod.__name__] = mod
    try:
        exec(compile(src.stdout, "ply_3b7affd.py", "exec"), mod.__dict__)
    finally:
        del sys.modules[mod.__name__]
    return mod


def test_a_map_ply_written_before_today_reads_with_its_ids_and_levels(tmp_path):
    """A ``map.ply`` saved by yesterday's suite (git 3b7affd's save_ply: the ``gs_mapping`` element
    always) reads back today with the same ids, levels and fields, and resumes a chain: ``encode``
    of it and of today's ``--keep-ids`` copy give the same snapshot bytes."""
    from gs_mapping.cli import main
    from gs_mapping.ply import load_ply, save_ply

    g = _gapped_map()
    _old_ply_module().save_ply(g, tmp_path / "old.ply")
    back = load_ply(tmp_path / "old.ply")
    assert np.array_equal(back.ids, g.ids) and not back.ids_implicit
    assert np.array_equal(back.levels, g.levels) and np.array_equal(back.sh, g.sh)
    save_ply(back, tmp_path / "new.ply", keep_ids=True)
    for name in ("old", "new"):
        assert main(["encode", str(tmp_path / f"{name}.ply"), str(tmp_path / f"{name}.gsd")]) == 0
    assert (tmp_path / "old.gsd").read_bytes() == (tmp_path / "new.gsd").read_bytes()


def test_an_apply_chain_through_keep_ids_plys_applies_to_the_receivers_snapshot(tmp_path, capsys):
    """README's chain: ``apply BASE.gsd D1 OUT1.ply --keep-ids``, then ``diff OUT1.ply NEW.ply D2
    --params-from BASE.gsd --base-seq 2``, and ``apply BASE D1 D2`` gives NEW's map (quantised);
    without ``--keep-ids`` the second diff is refused in one line (NEW has ids, OLD none)."""
    from gs_map_share.quantize import QuantParams, dequantize, to_qmap
    from gs_mapping.cli import main
    from gs_mapping.ply import load_ply, save_ply

    t = tmp_path
    g0 = _gapped_map()
    g1 = g0.copy()
    g1.update(g1.ids[:6], means=g1.means[:6] + 0.25)
    g2 = g1.copy()
    g2.remove(g2.ids[10:20])
    for i, g in enumerate((g0, g1, g2)):
        save_ply(g, t / f"m{i}.ply", keep_ids=True)
    assert main(["encode", str(t / "m0.ply"), str(t / "base.gsd")]) == 0
    assert main(["diff", str(t / "m0.ply"), str(t / "m1.ply"), str(t / "d1.gsd")]) == 0
    assert main(["apply", str(t / "base.gsd"), str(t / "d1.gsd"), str(t / "o1.ply"), "--keep-ids"]) == 0
    args = ["--params-from", str(t / "base.gsd"), "--base-seq", "2"]
    assert main(["diff", str(t / "o1.ply"), str(t / "m2.ply"), str(t / "d2.gsd"), *args]) == 0
    assert main(["apply", str(t / "base.gsd"), str(t / "d1.gsd"), str(t / "d2.gsd"), str(t / "o2.ply")]) == 0
    got = load_ply(t / "o2.ply")
    params = QuantParams.from_quality(2)
    want = dequantize(to_qmap(g2, params), params, g2.tile_size)
    order = np.argsort(want.ids)
    assert len(got) == len(g2)
    assert np.allclose(got.means, want.means[order], atol=1e-6) or np.allclose(
        got.means, want.means, atol=1e-6
    )
    capsys.readouterr()
    assert main(["apply", str(t / "base.gsd"), str(t / "d1.gsd"), str(t / "plain.ply")]) == 0
    assert main(["diff", str(t / "plain.ply"), str(t / "m2.ply"), str(t / "x.gsd"), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "ids" in err and not (t / "x.gsd").exists()


def _ply_bytes(props, rows) -> bytes:
    dt = np.dtype([(n, ty) for ty, n in props])
    head = f"ply\nformat binary_little_endian 1.0\nelement vertex {len(rows)}\n"
    names = {"<f4": "float", "u1": "uchar", "<u2": "ushort"}
    head += "".join(f"property {names[np.dtype(ty).str.replace('|', '')]} {n}\n" for ty, n in props)
    return (head + "end_header\n").encode() + np.array([tuple(r) for r in rows], dt).tobytes()


_GEOM = [("<f4", n) for n in ("x", "y", "z", "opacity", "scale_0", "scale_1", "scale_2",
                               "rot_0", "rot_1", "rot_2", "rot_3")]  # fmt: skip
_GROW = [0.0, 0.0, 0.0, 1.0, -3.0, -3.0, -3.0, 1.0, 0.0, 0.0, 0.0]


@pytest.mark.parametrize(
    "colour_type, values, c",
    [
        ("u1", (255, 128, 0), (1.0, 128 / 255, 0.0)),
        ("<u2", (65535, 0, 32768), (1.0, 0.0, 32768 / 65535)),
        ("<f4", (1.0, 0.5, 0.25), (1.0, 0.5, 0.25)),
    ],  # fmt: skip
)
def test_rgb_colour_in_place_of_f_dc_is_read_as_viewers_read_it(tmp_path, colour_type, values, c):
    """docs/format.md: ``red green blue`` in place of ``f_dc_*`` → DC = (c − 0.5) / SH_C0, c in 0..1
    (an integer type over its maximum), SH_C0 = 1 / (2 sqrt(pi)) worked here, not imported."""
    from gs_mapping.ply import load_ply

    p = tmp_path / "rgb.ply"
    p.write_bytes(
        _ply_bytes(_GEOM + [(colour_type, n) for n in ("red", "green", "blue")], [_GROW + list(values)])
    )
    sh_c0 = 1.0 / (2.0 * np.sqrt(np.pi))
    assert np.allclose(load_ply(p).sh[0, 0], (np.array(c) - 0.5) / sh_c0, atol=1e-5)


def test_f_dc_wins_over_rgb_and_a_partial_f_dc_is_refused_in_one_line(tmp_path):
    """antimatter15's main.js and GaussianSplats3D read ``f_dc_*`` where present, ``red`` only where
    not: a file with both is read by its f_dc. A file with ``red green blue`` and only ``f_dc_0`` is
    neither layout: refused naming the missing property, not read with a mixed colour."""
    from gs_mapping.errors import MapError
    from gs_mapping.ply import load_ply

    rgb = [("u1", n) for n in ("red", "green", "blue")]
    both = tmp_path / "both.ply"
    both.write_bytes(
        _ply_bytes(_GEOM + rgb + [("<f4", f"f_dc_{i}") for i in range(3)], [_GROW + [9, 9, 9, 0.1, 0.2, 0.3]])
    )
    assert np.allclose(load_ply(both).sh[0, 0], [0.1, 0.2, 0.3])
    part = tmp_path / "part.ply"
    part.write_bytes(_ply_bytes(_GEOM + rgb + [("<f4", "f_dc_0")], [_GROW + [9, 9, 9, 0.1]]))
    with pytest.raises(MapError, match="f_dc_1") as e:
        load_ply(part)
    assert "\n" not in str(e.value)


def test_a_receivers_saved_map_holds_the_ids_of_the_map_it_received(tmp_path):
    """test_nodes_dds (slow: real processes over DDS) checks each receiver's saved PLY against the
    mapper's saved PLY quantised, ``np.array_equal(got.ids, want.ids)`` first, and docs/architecture.md
    cites it ("real processes: saved PLYs"). Today the mapper keeps ids (keep_ids=True) and the
    receiver saves plain, so the receiver's file reads with implicit ids 1..N: equal to the mapper's
    only while nothing was ever removed from its map (test_nodes_dds still passes: its short kitchen
    run prunes nothing; a longer run, or one with the mapper's pruning, fails). Here a receiver node
    gets a snapshot of a pruned map (ids with gaps) on its topic, closes (its final save), and its
    file is compared as test_nodes_dds compares it."""
    from gs_map_share.quantize import QuantParams, dequantize, to_qmap
    from gs_map_share.snapshot import encode_snapshot
    from gs_mapping.messages import bytes_to_uint8_multiarray
    from gs_mapping.nodes.map_receiver_node import MapReceiverNode
    from gs_mapping.ply import load_ply
    from gs_mapping.runtime.replay import ReplayBus

    g = _gapped_map()
    params = QuantParams.from_quality(2)
    data, _ = encode_snapshot(to_qmap(g, params), params, seq=5, tile_size=g.tile_size)
    cfg = tmp_path / "rx.yaml"
    cfg.write_text(
        f'/**:\n  ros__parameters:\n    map_receiver_node:\n      save_path: "{tmp_path / "rx.ply"}"\n'
    )
    bus = ReplayBus()
    node = MapReceiverNode(bus.context("map_receiver_node"), MapReceiverNode.load_config(str(cfg)))
    bus.inject("/mapper_node/map_snapshot", bytes_to_uint8_multiarray(data, bus.factory), 10**9)
    assert node.store.ready
    node.close()
    got = load_ply(tmp_path / "rx.ply")
    want = dequantize(to_qmap(g, params), params, g.tile_size)
    assert len(got) == len(want)
    assert np.array_equal(got.ids, want.ids)
