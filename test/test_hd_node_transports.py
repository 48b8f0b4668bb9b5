"""hd_map_node takes its cameras on every image_transport mapper_node takes (one rule:
``topics.image_type``): the raw Image, ``…/compressed`` and zstd_image_transport's ``…/zstd``
(CompressedImage), and refuses theora's video stream in one line at start-up, where it subscribed to
``…/zstd`` as a raw Image (a live graph then delivers nothing) and to ``…/theora`` silently."""

from __future__ import annotations

import json

import pytest
import test_outside_recordings10 as r10

pytest.importorskip("torch")
pytest.importorskip("rosbags.rosbag2")

RAW = "/cameras/front/image_raw"


@pytest.fixture(scope="module")
def zstd_front_bag(tmp_path_factory):
    """The world's surround bag with the front camera as zstd_image_transport records it (the raw
    Image, gzip-packed behind its header: zstd_publisher.cpp, written by hand in r10)."""
    from gs_mapping import messages as M
    from gs_mapping.bag import BagReader, BagWriter
    from gs_mapping.messages.camera_image import color_to_rgb
    from gs_mapping.world import Drive
    from gs_mapping.world.record import write_bag

    tmp = tmp_path_factory.mktemp("hdz")
    write_bag(Drive.make(3, 3, "surround", (128, 64)), tmp / "surround", progress=False)
    keep = [RAW, "/cameras/front/camera_info", "/tf", "/tf_static"]
    with BagReader(tmp / "surround") as r, BagWriter(tmp / "zstd") as w:
        for t in keep[1:]:
            w.add_topic(t, r.topic(t).type, latched=t == "/tf_static")
        w.add_topic(RAW + "/zstd", "sensor_msgs/msg/CompressedImage")
        n = 0
        for topic, t, m in r.messages(keep):
            if topic != RAW:
                w.write(topic, t, m)
                continue
            data = r10._zstd_transport(color_to_rgb(m), "rgb8")
            w.write(
                RAW + "/zstd", t, r10._msg("zstd", data, M.stamp_to_ns(m.header.stamp), m.header.frame_id)
            )
            n += 1
    return tmp / "zstd", tmp / "surround", n


def _lanes(bag, cams):
    """hd_map_node on a bag (hd3._node_on's set-up): the node and the lanes_json messages it sent."""
    from gs_mapping.bag import BagReader
    from gs_mapping.nodes.hd_map_node import HDMapNode
    from gs_mapping.runtime.replay import ReplayBus

    cfg = HDMapNode.load_config(None)
    cfg["hd_map_node"].device = "cpu"
    cfg["hd_map_node"].camera_topics = list(cams)
    bus = ReplayBus()
    node = HDMapNode(bus.context("hd_map_node"), cfg)
    sent: list = []
    bus.subscribe("/hd_map_node/lanes_json", sent.append)
    with BagReader(bag) as b:
        bus.run(b, progress=False)
    return node, [json.loads(m.data) for m in sent]


def test_a_zstd_camera_is_predicted_as_its_raw_images_are(zstd_front_bag):
    """Every frame of the zstd topic gives lanes, the same lanes as the raw Image topic gives (the
    zstd payload is the raw image, losslessly packed), and nothing is rejected."""
    zbag, raw_bag, n = zstd_front_bag
    node, lanes = _lanes(zbag, [RAW + "/zstd"])
    assert len(lanes) == n == 3
    assert not node.diag.rejected and not node.diag.dropped
    _, raw_lanes = _lanes(raw_bag, [RAW])
    assert lanes == raw_lanes


@pytest.mark.parametrize(
    "topic, want",
    [
        (RAW, "sensor_msgs/msg/Image"),
        (RAW + "/compressed", "sensor_msgs/msg/CompressedImage"),
        (RAW + "/zstd", "sensor_msgs/msg/CompressedImage"),  # (zstd_image_transport's ZstdPublisher)
    ],
)
def test_the_node_subscribes_to_each_transport_with_the_type_it_carries(topic, want):
    """The type the node asks the middleware for: a live ROS 2 graph delivers nothing to a
    subscription of another type (the replay bus here does not check it, hence this test)."""
    from gs_mapping.nodes.hd_map_node import HDMapNode
    from gs_mapping.runtime.replay import ReplayBus, ReplayContext

    asked = {}

    class Recording(ReplayContext):
        def create_subscription(self, topic, typename, qos, callback):
            asked[topic] = typename
            return super().create_subscription(topic, typename, qos, callback)

    cfg = HDMapNode.load_config(None)
    cfg["hd_map_node"].device = "cpu"
    cfg["hd_map_node"].camera_topics = [topic]
    HDMapNode(Recording(ReplayBus(), "hd_map_node"), cfg)
    assert asked[topic] == want


def test_a_theora_camera_is_refused_in_one_line_at_start_up():
    from gs_mapping.errors import ConfigError
    from gs_mapping.nodes.hd_map_node import HDMapNode
    from gs_mapping.runtime.replay import ReplayBus

    cfg = HDMapNode.load_config(None)
    cfg["hd_map_node"].device = "cpu"
    cfg["hd_map_node"].camera_topics = [RAW + "/theora"]
    with pytest.raises(ConfigError) as e:
        HDMapNode(ReplayBus().context("hd_map_node"), cfg)
    msg = str(e.value)
    assert "\n" not in msg and RAW + "/theora" in msg and RAW + "/compressed" in msg and RAW + "/zstd" in msg
