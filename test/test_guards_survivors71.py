"""Uniform mutation survey (seed 37) of src/: tests for the mutants that survived the suite, each
checked to fail with its mutant and pass without.

- zenoh_runtime: a queryable whose handler raises any error (not only a ValueError) answers the
  querier with an error reply carrying the message, and the node spins on.
- decoder: the reference-point head starts as Glorot's uniform (nn.Linear's own init is narrower).
- std_streams: a closed stream (its ``fileno()`` raises ValueError) needs nothing and raises nothing.
- topics: an ambiguous depth topic's candidates are named in name order (as the colour ones are).
- frames: frames skipped for want of a usable CameraInfo are totalled, as the other causes are.
- factory: a fixed-size array given fewer elements than its ROS definition's is refused.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest


# -- runtime/zenoh_runtime.py declare_queryable: a handler's error is the querier's reply ---------
def test_a_queryable_whose_handler_raises_replies_the_error_to_a_plain_zenoh_querier():
    """Outside: eclipse-zenoh itself: a plain Zenoh session (no gs_mapping code) queries a
    ZenohContext's queryable whose handler raises a KeyError (a map server asked for a map it
    lacks), then a good request. The first query gets one error reply with the message, the second
    the handler's answer: the spin thread survived. (Caught as ``ValueError`` only, the KeyError
    left ``spin_once``: the node died and the querier heard nothing.)"""
    zenoh = pytest.importorskip("zenoh")
    import socket

    from gs_mapping.runtime.zenoh_runtime import ZenohContext, run_router

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    endpoint = f"tcp/127.0.0.1:{port}"
    domain = 71
    router = run_router([endpoint])
    conf = zenoh.Config()
    conf.insert_json5("mode", '"peer"')
    conf.insert_json5("connect/endpoints", f'["{endpoint}"]')
    conf.insert_json5("scouting/multicast/enabled", "false")
    other = zenoh.open(conf)
    ctx = None

    def handler(payload: bytes) -> bytes:
        if payload != b"ok":
            raise KeyError(f"no map {payload.decode()}")
        return b"the map"

    try:
        ctx = ZenohContext("s71_server", domain_id=domain, connect=[endpoint])
        ctx.declare_queryable("s71/q", handler)

        def ask(payload: bytes) -> list:
            got: list = []

            def query() -> None:
                for reply in other.get(f"{domain}/s71/q", payload=payload, timeout=3.0):
                    ok = reply.ok is not None
                    got.append((ok, (reply.ok if ok else reply.err).payload.to_bytes()))

            t = threading.Thread(target=query)
            t.start()
            while t.is_alive():
                ctx.spin_once(0.05)
            t.join()
            return got

        end = time.monotonic() + 15
        first: list = []
        while time.monotonic() < end and not first:  # (until the querier's route reaches us)
            first = ask(b"m7")
        assert first == [(False, b"'no map m7'")], first
        assert ask(b"ok") == [(True, b"the map")]
    finally:
        if ctx is not None:
            ctx.close()
        other.close()
        router.close()


# -- gsmap_hd/decoder.py MapDecoder: the reference-point head starts as Glorot's uniform ---------
def test_the_reference_point_head_starts_glorot_uniform():
    """Outside: Glorot & Bengio (2010), eq. 16: W ~ U(-b, b), b = sqrt(6 / (fan_in + fan_out)), as
    Deformable DETR initialises its reference-point projection. The default model's ``ref`` head
    (64 → 2) holds 128 weights within ±b whose largest reaches past 0.9 b, and zero biases.
    (Left at nn.Linear's own init, kaiming_uniform(a=√5): all within ±1/sqrt(fan_in), 0.125 here
    against b = 0.30; the initial reference points then crowd the BEV's centre; and its biases
    are not zero.)"""
    torch = pytest.importorskip("torch")
    from gsmap_hd.model import GSMapModel
    from gsmap_hd.model_config import ModelConfig

    torch.manual_seed(0)
    ref = GSMapModel(ModelConfig()).decoder.ref
    fan_out, fan_in = ref.weight.shape
    b = (6.0 / (fan_in + fan_out)) ** 0.5
    w = ref.weight.detach().abs()
    assert float(w.max()) <= b and float(w.max()) > 0.9 * b, (float(w.max()), b)
    assert not ref.bias.detach().any()


# -- std_streams.py to_devnull: a closed stream is passed over ------------------------------------
def test_a_closed_stream_is_passed_over_and_no_other_descriptor_moves(tmp_path):
    """Outside: Python's io: ``fileno()`` of a closed file raises ValueError ("I/O operation on
    closed file"). ``to_devnull`` of such a stream (a stderr a library closed under the logger)
    returns quietly, and the descriptor the file had (now another file's) is left alone: that file
    still receives its writes. (Suppressing only OSError and AttributeError, it raised, and the
    log handler's own error handling raised in turn.)"""
    from gs_mapping.std_streams import to_devnull

    closed = open(tmp_path / "was_stderr", "w")  # noqa: SIM115 - closed at once, on purpose
    closed.close()
    with open(tmp_path / "other", "w") as other:
        to_devnull(closed)
        other.write("kept\n")
    assert (tmp_path / "other").read_text() == "kept\n"


# -- topics.py _one_per_stream: the streams in name order -----------------------------------------
def test_ambiguous_depth_candidates_are_named_in_name_order():
    """Outside: a graph of three depth cameras' images (Azure Kinect, OAK-D, ZED: sensor_msgs/Image,
    none in the colour camera's namespace) beside a colour camera and its CameraInfo: discovery
    refuses to guess, and its one line names the candidates in name order (``sorted``), as it
    names ambiguous colour topics, so the line is the same whatever order the graph listed them
    in. (Listed in the reverse order, the same graph read differently from run to run of the
    docs' examples.)"""
    from gs_mapping.errors import ConfigError
    from gs_mapping.topics import discover

    image, info = "sensor_msgs/msg/Image", "sensor_msgs/msg/CameraInfo"
    depths = ["/zed/depth/image_raw", "/azure/depth/image_raw", "/oak/depth/image_raw"]
    types = {"/camera/color/image_raw": image, "/camera/color/camera_info": info} | dict.fromkeys(
        depths, image
    )
    with pytest.raises(ConfigError) as err:
        discover(types)
    assert f"candidates {', '.join(sorted(depths))};" in str(err.value), err.value


# -- messages/factory.py _coerce: a fixed-size array of fewer elements is refused ------------------
def test_a_fixed_size_array_of_fewer_elements_is_refused_as_the_ros_definition_sizes_it():
    """Outside: sensor_msgs/CameraInfo as rosbags' own Humble typestore defines it (``float64[9] k``,
    ``float64[9] r``, ``float64[12] p``, ROS's .msg file): each of those fields given one element
    less (a calibration cut short) is refused with one MessageError naming the field and both
    counts, and the full length is taken. (Checked only for more elements than the definition's,
    a short K went into the message, and its CDR then lacked the rest of the fixed array.)"""
    from rosbags.typesys import Stores, get_typestore

    from gs_mapping.errors import MessageError
    from gs_mapping.messages.factory import RosbagsFactory

    fields = get_typestore(Stores.ROS2_HUMBLE).fielddefs["sensor_msgs/msg/CameraInfo"][1]
    fixed = {name: desc[1][1] for name, desc in fields if int(desc[0]) == 3}  # Nodetype.ARRAY
    assert fixed == {"k": 9, "r": 9, "p": 12}
    factory = RosbagsFactory()
    for name, length in fixed.items():
        msg = factory.make("sensor_msgs/msg/CameraInfo", **{name: [1.0] * length})
        assert len(getattr(msg, name)) == length
        with pytest.raises(MessageError) as err:
            factory.make("sensor_msgs/msg/CameraInfo", **{name: [1.0] * (length - 1)})
        assert f"CameraInfo.{name}: expected {length} elements, got {length - 1}" in str(err.value)


# -- mapping/frames.py FrameStats.log_totals: the total of frames without a usable CameraInfo ------
def test_frames_without_a_usable_camera_info_are_totalled_once_at_the_end(tmp_path, caplog):
    """Outside: a robot's recording written with rosbags (TF, colour, depth at 10 Hz) whose only
    CameraInfos are an uncalibrated driver's (K all zeros, as camera_calibration_parsers leaves an
    uncalibrated camera): no frame can be used; the log says why once, then the total for that
    cause, as for a camera missing from TF. (Left out of the totals, a long bag's 4000 skipped
    frames were said as one skip.)"""
    import logging

    from test_hostile_robot_inputs import (
        CINFO,
        DT,
        IMG,
        OPT_Q,
        T0,
        TFM,
        T,
        _frames,
        _image,
        _info,
        _scene,
        _tf,
        _write,
    )

    n, fid = 4, "camera_color_optical_frame"
    topics = {"/camera/color/image_raw": IMG, "/camera/aligned_depth_to_color/image_raw": IMG}
    topics |= {"/camera/color/camera_info": CINFO, "/tf": TFM, "/tf_static": TFM}
    static = [_tf(T0, "base_link", "camera_link", (0.1, 0, 0.2)), _tf(T0, "camera_link", fid, q=OPT_Q)]
    msgs = [(T0 - 1, "/tf_static", T[TFM](transforms=static))]
    for i in range(-1, n + 1):
        ns = T0 + i * DT
        msgs.append((ns, "/tf", T[TFM](transforms=[_tf(ns, "map", "odom"), _tf(ns, "odom", "base_link")])))
    for i in range(n):
        ns = T0 + i * DT
        rgb, d = _scene(i)
        msgs.append((ns, "/camera/color/image_raw", _image(ns, fid, rgb, "rgb8")))
        msgs.append(
            (
                ns + 1000,
                "/camera/aligned_depth_to_color/image_raw",
                _image(ns, fid, (d * 1000).astype(np.uint16), "16UC1"),
            )
        )
        msgs.append((ns, "/camera/color/camera_info", _info(ns, fid, k=[0.0] * 9)))
    bag = _write(tmp_path / "b", topics, msgs)
    with caplog.at_level(logging.WARNING, logger="gs_mapping"):
        assert _frames(bag) == []
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert sum("no valid CameraInfo on /camera/color/camera_info" in x for x in lines) == 1, lines
    assert f"{n} frames skipped in all for no camera info" in lines, lines
