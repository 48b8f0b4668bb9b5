"""theora_image_transport's ``…/theora`` is a video stream (``theora_image_transport/msg/Packet``:
Ogg packets, a frame needs the header packets and every packet since its keyframe), never an image
per message: ``map`` on a bag of it, ``--color-topic …/theora`` and mapper_node pointed at one each
say so in one line naming the topics that carry the images, instead of a misleading type error."""

from __future__ import annotations

import numpy as np
import pytest

from gs_mapping.bag import BagWriter
from gs_mapping.cli import main
from gs_mapping.errors import ConfigError

CAM = "/camera/camera/color"
THEORA = f"{CAM}/image_raw/theora"
# the message as theora_image_transport defines it (msg/Packet.msg, ROS 2 branches)
PACKET_MSG = (
    "std_msgs/Header header\nuint8[] data\nint32 b_o_s\nint32 e_o_s\nint64 granulepos\nint64 packetno\n"
)


def _theora_bag(path) -> None:
    """What ``ros2 bag record`` of a RealSense keeps when only the theora colour stream was chosen:
    the colour as theora packets, its CameraInfo, raw depth."""
    from gs_mapping.messages import RosbagsFactory, intrinsics_to_camera_info, numpy_to_image
    from gs_mapping.messages.camera_info import CameraIntrinsics

    with BagWriter(path) as bag:
        bag.register_msg("theora_image_transport/msg/Packet", PACKET_MSG)
        fac = RosbagsFactory(bag.typestore)
        bag.add_topic(THEORA, "theora_image_transport/msg/Packet")
        bag.add_topic(f"{CAM}/camera_info", "sensor_msgs/msg/CameraInfo")
        bag.add_topic("/camera/camera/depth/image_rect_raw", "sensor_msgs/msg/Image")
        ts = bag.typestore.types
        header = ts["std_msgs/msg/Header"](
            stamp=ts["builtin_interfaces/msg/Time"](sec=1, nanosec=0), frame_id="c"
        )
        packet = ts["theora_image_transport/msg/Packet"](
            header=header,
            data=np.frombuffer(b"\x80theora", np.uint8),
            b_o_s=1,
            e_o_s=0,
            granulepos=0,
            packetno=0,
        )
        bag.write(THEORA, 10**9, packet)
        cam = CameraIntrinsics(160, 120, [[300.0, 0, 80.0], [0, 300.0, 60.0], [0, 0, 1]], frame_id="c")
        bag.write(f"{CAM}/camera_info", 10**9, intrinsics_to_camera_info(cam, fac, 10**9, "c"))
        depth = numpy_to_image(np.full((120, 160), 1000, np.uint16), "16UC1", 10**9, "c", fac)
        bag.write("/camera/camera/depth/image_rect_raw", 10**9, depth)


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize("named", [False, True])
def test_map_on_a_bag_of_theora_colour_says_what_to_use_instead(tmp_path, capsys, named):
    _theora_bag(tmp_path / "bag")
    argv = ["map", str(tmp_path / "bag"), "--out", str(tmp_path / "out")]
    assert main([*argv, *(["--color-topic", THEORA] if named else [])]) == 2
    err = _one_line(capsys)
    assert err.startswith("gs-mapping map: error:")
    assert f"colour topic {THEORA} is theora_image_transport's video stream" in err
    assert f"{CAM}/image_raw, {CAM}/image_raw/compressed or {CAM}/image_raw/zstd" in err
    assert not (tmp_path / "out").exists()


def test_mapper_node_pointed_at_theora_says_what_to_use_instead():
    pytest.importorskip("torch")
    from gs_mapping.nodes.mapper_node import MapperNode
    from gs_mapping.runtime.replay import ReplayBus, ReplayContext

    for field, topic, instead in [
        ("color", THEORA, f"{CAM}/image_raw/compressed or {CAM}/image_raw/zstd"),
        (
            "depth",
            "/cam/depth/image_raw/theora",
            "/cam/depth/image_raw/compressedDepth or /cam/depth/image_raw/zstd",
        ),
    ]:
        cfg = MapperNode.load_config(None)
        setattr(cfg["mapper"].topics, field, topic)
        with pytest.raises(ConfigError) as e:
            MapperNode(ReplayContext(ReplayBus(), "mapper_node"), cfg)
        line = str(e.value)
        assert line.startswith(f"mapper.topics.{field}: ") and "\n" not in line
        assert f"topic {topic} is theora_image_transport's video stream" in line and instead in line
