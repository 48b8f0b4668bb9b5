"""Guards for behaviours a mutation-testing pass (sixty-fourth round) over the modules the
``test_guards_survivors*`` files named least for their size (``lazy_api.py``, ``say_once.py``,
``morton.py``, ``cli/hd_export.py``, ``cli/hd_predict.py``, ``splat_formats/compressed_ply.py``,
``messages/compressed_image.py``, ``runtime/rclpy_runtime.py``) found unguarded. Each test compares
the real component with something outside it (a hand computation, a file Pillow writes from pixels
given by hand, rclpy's own Python layer), so that breaking the line it guards makes it fail."""

from __future__ import annotations

import os

import numpy as np
import pytest

# ------------------------------------------------------------------------------------------------
# morton.py: codes held as int64 (the mapper's ids are int64 views of them)


def _interleave(x: int, y: int, z: int) -> int:
    """A Morton code by hand: bit b of x, y, z goes to bits 3b+2, 3b+1, 3b."""
    return sum(
        ((x >> b) & 1) << (3 * b + 2) | ((y >> b) & 1) << (3 * b + 1) | ((z >> b) & 1) << (3 * b)
        for b in range(21)
    )


def test_demorton_reads_codes_held_as_int64_as_it_reads_uint64():
    """``seeding`` keeps the codes as ``.view(np.int64)`` (Gaussian ids); ``demorton`` of such codes
    gives the cells back, as of the uint64 ones (an int64 array shifted by a uint64 is a float in
    numpy's promotion: no shift at all). Cells and codes by hand."""
    from gs_mapping.morton import demorton

    cells = [(1, 2, 3), (0, 0, 0), (2**21 - 1, 5, 2**20), (7, 2**21 - 1, 0)]
    codes = [_interleave(*c) for c in cells]
    assert codes[0] == 0b101 | 0b011 << 3  # (1, 2, 3): bit 0 is x1 y0 z1, bit 1 is x0 y1 z1
    for dtype in (np.uint64, np.int64):
        assert demorton(np.array(codes, dtype=np.uint64).astype(dtype)).tolist() == [list(c) for c in cells]


# ------------------------------------------------------------------------------------------------
# messages/compressed_image.py: a float TIFF's tile as an older Pillow holds it; a bare tiff format


def test_a_big_endian_float_tiff_reads_its_metres_with_the_tile_as_a_plain_tuple():
    """Pillow before 11 (Ubuntu 22.04's python3-pil is 9.0, what ROS 2 Humble runs with) holds an
    image's tiles as plain tuples, which have no ``_replace``; the native-float fix-up of a
    big-endian 32FC1 TIFF must rebuild such a tile too (a newer Pillow, reading only its own
    kind, is handed the rebuilt tuple back as one). The file is written by hand from the
    specification (test_outside_host5's writer); the truth is the array written."""
    import io

    from PIL import Image
    from test_outside_host5 import _tiff

    from gs_mapping.messages.compressed_image import _libtiff_reading, _native_floats

    metres = (np.arange(6 * 5, dtype=np.float32).reshape(6, 5) * 0.25 + 0.5).astype(np.float32)
    data = _tiff(metres, ">", tile=None, rows=2, codec="deflate")
    with _libtiff_reading():
        im = Image.open(io.BytesIO(data))
        with im:
            newer = type(im.tile[0])
            im.tile = [tuple(t) for t in im.tile]  # (as Pillow < 11 holds them)
            _native_floats(im)
            assert all(type(t) is tuple for t in im.tile)
            if newer is not tuple:  # this Pillow reads its own kind of tile
                im.tile = [newer(*t) for t in im.tile]
            im.load()
            got = np.asarray(im)
    np.testing.assert_array_equal(got.astype(np.float32), metres)


def test_a_four_channel_tiff_under_a_bare_tiff_format_is_bgra8():
    """compressed_image_transport's ``tiff`` with a format naming no encoding (``"tiff"``): the
    encoding follows what the file holds, and four 8-bit samples are OpenCV's BGRA written as
    RGBA (cv::imwrite), so ``bgra8`` with B, G, R, A back in the message's order. The TIFF is
    Pillow's (an RGBA image of samples given by hand)."""
    import io
    from types import SimpleNamespace

    from PIL import Image

    from gs_mapping.messages.compressed_image import carried_image

    samples = np.array([[[10, 20, 30, 255], [1, 2, 3, 4]], [[200, 100, 50, 0], [7, 8, 9, 128]]], np.uint8)
    buf = io.BytesIO()
    Image.fromarray(samples).save(buf, format="TIFF")
    for fmt in ("tiff", "tiff compressed"):
        img = carried_image(SimpleNamespace(format=fmt, data=np.frombuffer(buf.getvalue(), np.uint8)))
        assert (img.encoding, img.height, img.width, img.step) == ("bgra8", 2, 2, 8)
        got = np.frombuffer(bytes(img.data), np.uint8).reshape(2, 2, 4)
        assert got.tolist() == samples[:, :, [2, 1, 0, 3]].tolist()


# ------------------------------------------------------------------------------------------------
# cli/hd_predict.py: --base-frame checked as tf2 checks a frame id


def test_hd_predict_refuses_a_base_frame_tf2_refuses_before_reading_the_bag(kitchen_bag, tmp_path, capsys):
    """tf2 refuses a frame id that is empty or starts with '/' (``BufferCore::validateFrameId``): a
    ``--base-frame /base_link`` (a ROS 1 habit) is one line naming the option and exit status 2,
    before the bag (the real kitchen recording) is read."""
    pytest.importorskip("torch")
    from gs_mapping.cli import main

    out = tmp_path / "lanes.json"
    for bad, why in (("/base_link", "starts with '/'"), ("", "is empty")):
        argv = ["hd-predict", str(kitchen_bag), "--out", str(out), "--no-progress", "--base-frame", bad]
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "--base-frame" in err and why in err, err
        assert not out.exists()


def test_hd_predict_without_out_is_the_usage_line_naming_out(capsys):
    """``--out`` is required (the predictions have nowhere else to go): without it, argparse's one
    usage line naming ``--out`` and exit status 2, not a traceback from ``Path(None)`` after the model
    is loaded. No torch is needed to say so."""
    from gs_mapping.cli import main

    with pytest.raises(SystemExit) as stop:  # (argparse's own exit, as from a shell)
        main(["hd-predict", "/nonexistent/bag"])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "required: --out" in err and "Traceback" not in err, err


# ------------------------------------------------------------------------------------------------
# cli/hd_export.py: the output checked before the model is loaded


def test_hd_export_refuses_an_existing_output_before_loading_the_checkpoint(tmp_path, capsys):
    """``check_output``: 'before any work starts'. An existing ``--onnx`` file without
    ``--overwrite`` is the one line, even where the checkpoint named would not load (an empty file:
    loading it is the work not to start); the file is left as it was."""
    pytest.importorskip("torch")
    from gs_mapping.cli import main

    out, ckpt = tmp_path / "m.onnx", tmp_path / "empty.pt"
    out.write_bytes(b"an earlier export")
    ckpt.write_bytes(b"")
    assert main(["hd-export", "--onnx", str(out), "--checkpoint", str(ckpt)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "m.onnx" in err and "exists" in err and "empty.pt" not in err, err
    assert out.read_bytes() == b"an earlier export"


# ------------------------------------------------------------------------------------------------
# runtime/rclpy_runtime.py: the entry points' one torch thread (README "CPU threads")


def test_ros2_run_entry_points_default_torch_to_one_passive_thread(monkeypatch):
    """README: ``ros2 run gs_mapping …`` runs torch with one intra-op thread (``OMP_NUM_THREADS=1``,
    ``OMP_WAIT_POLICY=PASSIVE`` unless you set them); the entry point sets them before the node's
    module (and torch) is imported. Here the import is interrupted (Ctrl-C: 130) right there."""
    import gs_mapping.nodes.registry as registry
    from gs_mapping.runtime import rclpy_runtime

    seen = {}

    def interrupted(name):  # Ctrl-C while the node's module is being imported
        seen[name] = (os.environ.get("OMP_NUM_THREADS"), os.environ.get("OMP_WAIT_POLICY"))
        raise KeyboardInterrupt

    monkeypatch.setattr(registry, "node_class", interrupted)
    for var in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY"):  # (so that what the entry point sets is undone)
        monkeypatch.setenv(var, "")
    for main, node in (
        (rclpy_runtime.main_hd_map_node, "hd_map_node"),
        (rclpy_runtime.main_mapper_node, "mapper_node"),
    ):
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
        assert main() == 130
        assert seen[node] == ("1", "PASSIVE")
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the user's own choice stays
    assert rclpy_runtime.main_map_receiver_node() == 130
    assert seen["map_receiver_node"] == ("3", "PASSIVE")


# ------------------------------------------------------------------------------------------------
# runtime/rclpy_runtime.py: a raw subscription's undecodable messages, a warning once a topic


@pytest.fixture(scope="module")
def ros():
    """rclpy on the test stand-in (test/rclpy_standin.py), as test_guards_survivors53.py uses it."""
    pytest.importorskip("rosbags")
    import rclpy_standin

    with rclpy_standin.humble_for_tests() as rclpy:
        yield rclpy


def test_undecodable_raw_messages_warn_once_a_topic_then_say_it_at_debug(ros):
    """A raw (CDR bytes) subscription, as mapper_node's Livox CustomMsg one, given bytes no
    CustomMsg is made of, again and again (a driver of another version): each is skipped, the
    first with a warning, the rest at debug level (the docstring's 'the first of a topic a
    warning'), so a stream of them does not flood the console and /rosout. Severities are rcutils'
    (30 warn, 10 debug), as rcl receives them; the node's logger is set to debug to see them all."""
    import rclpy.node
    import rclpy_standin
    from rclpy.logging import LoggingSeverity

    from gs_mapping.messages import custom_msg_from_cdr
    from gs_mapping.runtime.rclpy_runtime import RclpyContext

    context = ros.Context()
    ros.init(args=[], context=context)
    node = rclpy.node.Node("raw_probe", context=context)
    try:
        node.get_logger().set_level(LoggingSeverity.DEBUG)
        got = []
        run = RclpyContext(node)._decoded("/livox/lidar", custom_msg_from_cdr, got.append)
        n = len(rclpy_standin.LOG)
        for _ in range(3):
            run(b"\x00\x01\x00\x00garbage")
        said = [(sev, m) for sev, _, m in rclpy_standin.LOG[n:] if "undecodable" in m]
        assert [sev for sev, _ in said] == [30, 10, 10], said
        assert all(m.startswith("/livox/lidar: undecodable message skipped") for _, m in said)
        assert got == []
    finally:
        node.destroy_node()
        context.try_shutdown()


def test_integers_given_for_a_float_list_parameter_are_taken_as_rcl_gives_them(ros):
    """A YAML ``offsets_m: [-3, 3]`` reaches rclpy as an INTEGER_ARRAY (rcl types a sequence by its
    items); rclpy's static typing would refuse it for the DOUBLE_ARRAY default at start-up
    (InvalidParameterTypeException), though the CLI reads the same file. Declared with dynamic
    typing, the node starts and the config holds the floats -3.0 and 3.0 (as a float parameter given
    an integer does)."""
    import rclpy.node
    from rclpy.parameter import Parameter

    from gs_mapping.mapping.mapper_config import MapperConfig
    from gs_mapping.runtime.rclpy_runtime import declare_section

    context = ros.Context()
    ros.init(args=[], context=context)
    given = [
        Parameter("mapper.virtual_views.offsets_m", value=[-3, 3]),
        Parameter("mapper.virtual_views.weight", value=2),
    ]
    assert given[0].type_ == Parameter.Type.INTEGER_ARRAY
    node = rclpy.node.Node("float_lists", context=context, parameter_overrides=given)
    try:
        cfg = declare_section(node, "mapper", MapperConfig)
        assert cfg.virtual_views.offsets_m == [-3.0, 3.0]
        assert all(type(v) is float for v in cfg.virtual_views.offsets_m)
        assert cfg.virtual_views.weight == 2.0
    finally:
        node.destroy_node()
        context.try_shutdown()


def test_python_logging_to_a_node_leaves_our_loggers_as_they_were(ros):
    """``python_logging_to``: within, our packages' records go to the node's logger at its level;
    'afterwards, as they were' — each package logger's own level, propagation and handlers (a
    process that runs a node and then goes on, as a launch test or the replay does, keeps its
    logging set up). The node's logger here is at debug (10); ours were at 30, 0 (unset) and 40."""
    import logging

    import rclpy.logging
    from rclpy.logging import LoggingSeverity

    from gs_mapping.runtime.rclpy_runtime import python_logging_to

    names = ("gs_mapping", "gs_map_share", "gsmap_hd")
    saved = {n: (logging.getLogger(n).level, logging.getLogger(n).propagate) for n in names}
    try:
        for n, level in zip(names, (logging.WARNING, logging.NOTSET, logging.ERROR), strict=True):
            logging.getLogger(n).setLevel(level)
            logging.getLogger(n).propagate = True
        before = {n: (logging.getLogger(n).level, list(logging.getLogger(n).handlers)) for n in names}
        ros_logger = rclpy.logging.get_logger("logging_probe")
        ros_logger.set_level(LoggingSeverity.DEBUG)
        with python_logging_to(ros_logger):
            assert all(logging.getLogger(n).level == logging.DEBUG for n in names)
            assert not any(logging.getLogger(n).propagate for n in names)
        after = {n: (logging.getLogger(n).level, list(logging.getLogger(n).handlers)) for n in names}
        assert after == before
        assert all(logging.getLogger(n).propagate for n in names)
    finally:
        for n, (level, propagate) in saved.items():
            logging.getLogger(n).setLevel(level)
            logging.getLogger(n).propagate = propagate
