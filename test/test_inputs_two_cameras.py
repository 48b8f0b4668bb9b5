"""An outside user's findings on ``map`` / ``replay`` inputs: a depth named alone takes its own camera's
colour; a registered depth of another camera than the colour is refused; a cut-short bag's warnings
are said once a run; replay's ``mapper_node.cloud_type`` is the Livox topic's type; 8UC3 is BGR.

The two-camera bag is the real RealSense-layout kitchen recording with its camera copied under a
second namespace (``/cam2/camera``), frame ids and all: what two RealSense drivers launched with the
same ``camera_name`` record."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import map_args

pytest.importorskip("rosbags.rosbag2")

CAM1, CAM2 = "/camera/camera", "/cam2/camera"
COLOR = "/color/image_raw/compressed"
DEPTH = "/aligned_depth_to_color/image_raw/compressedDepth"
I, C, INFO = "sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage", "sensor_msgs/msg/CameraInfo"


@pytest.fixture(scope="module")
def two_camera_bag(shared_data, tmp_path_factory):
    """The real RealSense kitchen bag's first 3 frames, its camera recorded twice (the second under
    /cam2/camera, the same messages)."""
    from gs_mapping.bag import BagReader, BagWriter

    out = tmp_path_factory.mktemp("two_cameras") / "two"
    with BagReader(shared_data / "realsense_kitchen_rgbd") as r:
        names = [t.name for t in r.topics]
        types = {t: r.topic(t).type for t in names}
        rows, count = [], {}
        for topic, t, m in r.messages(names):
            count[topic] = count.get(topic, 0) + 1
            if topic.startswith(CAM1) and count[topic] > 3:
                continue
            rows.append((t, topic, m))
            if topic.startswith(CAM1):
                rows.append((t, CAM2 + topic[len(CAM1) :], m))
    with BagWriter(out) as w:
        for t in names:
            w.add_topic(t, types[t], latched=t == "/tf_static")
            if t.startswith(CAM1):
                w.add_topic(CAM2 + t[len(CAM1) :], types[t])
        for t, topic, m in sorted(rows, key=lambda row: row[0]):
            w.write(topic, t, m)
    return out


def test_a_depth_named_alone_takes_the_colour_of_its_own_camera(two_camera_bag):
    """``--depth-topic`` of the second camera: its colour and CameraInfo, not 'colour: ambiguous'."""
    from gs_mapping.cli.map import choose_topics
    from gs_mapping.mapping.mapper_config import MapperConfig

    for cam in (CAM1, CAM2):
        cfg = MapperConfig()
        assert choose_topics(two_camera_bag, cfg, map_args(depth_topic=cam + DEPTH)) == ""
        t = cfg.topics
        assert (t.color, t.depth, t.camera_info, t.depth_camera_info) == (
            cam + COLOR,
            cam + DEPTH,
            cam + "/color/camera_info",
            "",
        )


def test_a_depth_with_no_or_several_cameras_of_its_own_is_one_line_naming_them():
    from gs_mapping.errors import ConfigError
    from gs_mapping.topics import discover

    two = {"/a/image_raw": I, "/a/camera_info": INFO, "/b/image_raw": I, "/b/camera_info": INFO}
    with pytest.raises(ConfigError) as exc:  # (a depth in no camera's namespace)
        discover({**two, "/depth/image_raw": I}, depth="/depth/image_raw")
    said = str(exc.value)
    assert "\n" not in said and "/a/image_raw, /b/image_raw" in said and "--color-topic" in said
    rig = {f"/rig{k}": v for k, v in two.items()} | {"/rig/depth/image_raw": I}
    with pytest.raises(ConfigError) as exc:  # (two cameras in the depth's namespace alike)
        discover(rig, depth="/rig/depth/image_raw")
    said = str(exc.value)
    assert "\n" not in said and "/rig/a/image_raw, /rig/b/image_raw" in said and "ambiguous" in said
    # one colour camera in the bag: it, whatever its namespace (Azure Kinect's /rgb and /depth_to_rgb)
    kinect = {"/rgb/image_raw": I, "/rgb/camera_info": INFO, "/depth_to_rgb/image_raw": I}
    assert discover(kinect, depth="/depth_to_rgb/image_raw").color == "/rgb/image_raw"


def test_a_registered_depth_of_another_camera_is_refused_in_one_line(two_camera_bag, tmp_path):
    """Colour of one camera, aligned depth of the other, both in one frame id: once mapped without a
    word (the other camera's pixels taken for this one's); now exit 2, one line, nothing written.
    With the depth's own CameraInfo named it is placed through TF, and allowed."""
    from gs_mapping.cli.map import choose_topics
    from gs_mapping.mapping.mapper_config import MapperConfig

    r = subprocess.run(
        [sys.executable, "-m", "gs_mapping", "map", str(two_camera_bag), "--out", str(tmp_path / "o")]
        + ["--color-topic", CAM1 + COLOR, "--depth-topic", CAM2 + DEPTH],
        capture_output=True,
        text=True,
        timeout=300,  # (refused before any mapping: seconds)
    )
    assert r.returncode == 2, r.stderr
    err = r.stderr.strip()
    assert "\n" not in err and "another camera" in err and CAM2 + COLOR in err, err
    assert not (tmp_path / "o").exists()
    cfg = MapperConfig()
    info = CAM2 + "/aligned_depth_to_color/camera_info"
    choose_topics(
        two_camera_bag,
        cfg,
        map_args(color_topic=CAM1 + COLOR, depth_topic=CAM2 + DEPTH, depth_info_topic=info),
    )
    assert (cfg.topics.color, cfg.topics.depth_camera_info) == (CAM1 + COLOR, info)
    # the same camera's colour beside it, named: as before
    choose_topics(two_camera_bag, cfg, map_args(color_topic=CAM2 + COLOR, depth_topic=CAM2 + DEPTH))
    assert cfg.topics.color == CAM2 + COLOR


def test_a_cut_short_bags_warnings_are_said_once_a_run(shared_data, tmp_path):
    """The kitchen bag cut to a third with its metadata.yaml kept: topic choice and the reads after it
    (each opens the bag) say 'ends without its summary' and 'metadata.yaml disagrees' once each."""
    src = shared_data / "7scenes_kitchen_rgbd"
    cut = tmp_path / "cut"
    cut.mkdir()
    (cut / "metadata.yaml").write_bytes((src / "metadata.yaml").read_bytes())
    data = (src / "7scenes_kitchen_rgbd.mcap").read_bytes()
    (cut / "7scenes_kitchen_rgbd.mcap").write_bytes(data[: len(data) // 3])
    code = (
        "import sys\n"
        "sys.path.insert(0, sys.argv[2])\n"
        "from conftest import map_args\n"
        "from gs_mapping.bag import BagReader\n"
        "from gs_mapping.cli.map import choose_topics\n"
        "from gs_mapping.mapping.mapper_config import MapperConfig\n"
        "choose_topics(sys.argv[1], MapperConfig(), map_args())\n"
        "for _ in range(2):\n"
        "    with BagReader(sys.argv[1]) as r:\n"
        "        assert sum(1 for _ in r.messages()) > 0\n"
    )
    test_dir = str(Path(__file__).parent)  # (conftest's map_args)
    r = subprocess.run([sys.executable, "-c", code, str(cut), test_dir], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("ends without its summary") == 1, r.stderr
    assert r.stderr.count("metadata.yaml disagrees") == 1, r.stderr


def test_replay_sets_cloud_type_from_the_livox_topics_type(tmp_path):
    """``replay``'s mapper_node gets the found Livox topic's type, as a live graph's node needs it."""
    pytest.importorskip("cv2")
    import test_livox_mapping as lm

    from gs_mapping.cli.replay import _discover_mapper_topics
    from gs_mapping.nodes.registry import node_class

    bag = lm.bag(tmp_path / "b", lm.livox_msg)
    nodes = node_class("mapper_node").load_config(None)
    _discover_mapper_topics(bag, nodes)
    assert (nodes["mapper_node"].cloud_topic, nodes["mapper_node"].cloud_type) == (lm.TOPIC, lm.LIVOX)


def test_8uc3_from_an_opencv_node_is_read_in_its_bgr_order(shared_data, caplog):
    """A real kitchen frame as an OpenCV-based node publishes it: cv2.imdecode's Mat (BGR) sent as
    TYPE_8UC3. Its colours are the JPEG's as the suite's own decoder reads it (PIL, RGB), within JPEG
    decoders' rounding; taken as rgb8 (as before) red and blue swap. Said once."""
    cv2 = pytest.importorskip("cv2")
    from gs_mapping.bag import BagReader
    from gs_mapping.messages import compressed_image_to_numpy, image_to_rgb, numpy_to_image

    with BagReader(shared_data / "realsense_kitchen_rgbd") as r:
        _, _, msg = next(iter(r.messages([CAM1 + COLOR])))
    want = compressed_image_to_numpy(msg).astype(int)
    bgr = cv2.imdecode(np.frombuffer(bytes(msg.data), np.uint8), cv2.IMREAD_COLOR)
    with caplog.at_level("WARNING"):
        got = image_to_rgb(numpy_to_image(bgr, "8UC3")).astype(int)
        image_to_rgb(numpy_to_image(bgr, "8UC3"))
    assert np.abs(got - want).mean() < 1.0
    assert np.abs(got[..., ::-1] - want).mean() > 10.0  # (the frame has colour: a swap shows)
    said = [m for m in caplog.messages if "8UC3" in m and "no colour order" in m]
    assert len(said) == 1 and "bgr8" in said[0], caplog.messages
