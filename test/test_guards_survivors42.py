"""Guards for two lines whose breakage no test noticed (a mutation pass over the nodes): hd_map_node
predicting a frame left waiting for its CameraInfo when a newer frame comes, and mapper_node placing
a registered depth of another stamp with the pose of the colour image's own frame. Each test
compares the node with something outside it: the stamps the bag gives the frames, in the order its
camera took them, or a hand computation of a wall's distance from the TF the test publishes; each
fails on the mutant it was written for."""

from __future__ import annotations

import numpy as np
import pytest

# ------------------------------------------------------------------------------------------------
# hd_map_node: a frame waiting for its CameraInfo goes, with what there is, when a newer frame comes


@pytest.fixture(scope="module")
def world_bag(tmp_path_factory):
    from gs_mapping.world import Drive
    from gs_mapping.world.record import write_bag

    out = tmp_path_factory.mktemp("hd42") / "world"
    write_bag(Drive.make(3, 6, "front", (256, 144)), out, progress=False)
    return out


def test_a_frame_waiting_for_its_camera_info_is_published_before_the_newer_frame(world_bag):
    """hd_map_node.on_frame: 'the newest frame wins: the waiting ones now, or never'. Camera frames
    0, 1 and 2 (stamps as the bag holds them); frame 0's CameraInfo of its stamp pairs it, frame 1's
    never comes (it waits: a CameraInfo published just after the image may still come), frame 2's
    comes after its image. Frame 1 must be predicted with the CameraInfo there is when frame 2
    arrives, so ~/lanes_json carries the three stamps in the order the camera took them. Without
    it frame 1 is overwritten by frame 2 (which waits too) and never published. All messages are
    delivered at one bus time: no timer makes frame 1 go by its tf_wait_s instead."""
    from gs_mapping.bag import BagReader
    from gs_mapping.messages import stamp_to_ns, string_message_to_json
    from gs_mapping.nodes.hd_map_node import HDMapNode
    from gs_mapping.runtime.replay import ReplayBus
    from gs_mapping.topics import info_topic

    cfg = HDMapNode.load_config(None)
    cfg["hd_map_node"].device = "cpu"
    cfg["hd_map_node"].score_threshold = 0.0
    cfg["hd_map_node"].fuse = False
    bus = ReplayBus()
    node = HDMapNode(bus.context("hd_map_node"), cfg)
    cam = node.cameras[0]
    with BagReader(world_bag) as bag:
        msgs = list(bag.messages())
    end = max(t for _, t, _ in msgs)
    for topic, t, msg in msgs:
        if topic in ("/tf", "/tf_static"):
            bus.inject(topic, msg, t)
    infos = [m for tp, _, m in msgs if tp == info_topic(cam)]
    images = [m for tp, _, m in msgs if tp == cam]
    stamps = [stamp_to_ns(m.header.stamp) for m in images[:3]]
    assert stamps == sorted(stamps) and len(set(stamps)) == 3
    assert [stamp_to_ns(m.header.stamp) for m in infos[:3]] == stamps  # one CameraInfo per image
    published: list = []
    bus.subscribe("/hd_map_node/lanes_json", published.append)
    bus.inject(info_topic(cam), infos[0], end)
    bus.inject(cam, images[0], end)
    bus.inject(cam, images[1], end)  # its CameraInfo never comes
    assert len(published) == 1  # frame 1 waits for it
    bus.inject(cam, images[2], end)  # before its CameraInfo, as a driver may publish them
    bus.inject(info_topic(cam), infos[2], end)
    got = [string_message_to_json(m)["stamp_ns"] for m in published]
    assert got == stamps, node.diag.summary()


# ------------------------------------------------------------------------------------------------
# mapper_node: a registered depth of another stamp is placed by the colour image's frame


def test_registered_depth_of_another_stamp_moves_with_the_colour_images_frame_not_the_camera_infos(
    fast_nodes_config, monkeypatch
):
    """mapper_node._frame passes the colour image's header frame to depth_in_color: a registered
    depth stamped 15 ms after the colour image is moved into the colour camera with the pose of
    that frame at the depth's stamp (docstring of depth_in_color: 'the colour camera's pose then').
    Here the CameraInfo names another frame, the camera's body frame 'cam_link' (x forward, at the
    same place as the optical frame), as some drivers do. The vehicle drives at 20 m/s towards a
    wall at map x = 18 m; by hand, the optical frame is at x = 10.5 m at the image's stamp and at
    10.8 m at the depth's, so the depth reads 7.2 m everywhere and the frame's depth must read
    7.5 m, the camera's distance to the wall at the image's stamp, with the frame's pose the
    optical frame's there. Taking the CameraInfo's frame for the depth's pose instead rotates the
    depth by the optical-to-body rotation: the wall leaves the view and no pixel reads 7.5 m (nor
    would one if the depth were taken at the image's stamp: 7.2 m)."""
    from gs_mapping.geometry import Transform, TransformStamped
    from gs_mapping.messages import intrinsics_to_camera_info, numpy_to_image, transforms_to_tf_message
    from gs_mapping.messages.camera_info import CameraIntrinsics
    from gs_mapping.nodes.mapper_node import MapperNode
    from gs_mapping.runtime.replay import ReplayBus

    t0, speed = 1_700_000_000_000_000_000, 20.0
    tc, td = t0, t0 + 15_000_000
    cfg = MapperNode.load_config(str(fast_nodes_config))
    cfg["mapper"].topics.color = "/cam/color/image_raw"
    cfg["mapper"].topics.camera_info = "/cam/color/camera_info"
    cfg["mapper"].topics.depth = "/cam/aligned_depth_to_color/image_raw"
    cfg["mapper"].topics.depth_camera_info = ""  # registered depth
    bus = ReplayBus()
    node = MapperNode(bus.context("mapper_node"), cfg)
    frames = []
    real_add = node.mapper.add_frame
    monkeypatch.setattr(node.mapper, "add_frame", lambda f: (frames.append(f), real_add(f))[1])

    def base_x(t):
        return 10.0 + speed * (t - t0) * 1e-9

    R_base_opt = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])  # optical: z forward
    T_base_opt = np.eye(4)
    T_base_opt[:3, :3], T_base_opt[:3, 3] = R_base_opt, [0.5, 0.0, 1.0]
    T_base_link = np.eye(4)
    T_base_link[:3, 3] = [0.5, 0.0, 1.0]  # the camera body: same place, x forward (REP-103)
    static = [
        TransformStamped("base_link", "cam_optical", t0, Transform.from_matrix(T_base_opt)),
        TransformStamped("base_link", "cam_link", t0, Transform.from_matrix(T_base_link)),
    ]
    bus.inject("/tf_static", transforms_to_tf_message(static), t0 - 200_000_000)
    for t in range(t0 - 200_000_000, t0 + 100_000_001, 5_000_000):
        tf = TransformStamped("map", "base_link", t, Transform(np.array([base_x(t), 0.0, 0.0])))
        bus.inject("/tf", transforms_to_tf_message([tf]), t)
    K = np.array([[50.0, 0, 32.0], [0, 50.0, 24.0], [0, 0, 1.0]])
    intr = CameraIntrinsics(64, 48, K, frame_id="cam_link")
    wall = 18.0
    at_depth = wall - (base_x(td) + 0.5)  # the optical frame's distance to the wall at the depth's stamp
    assert abs(at_depth - 7.2) < 1e-9
    depth = np.full((48, 64), at_depth, np.float32)
    rgb = np.full((48, 64, 3), 128, np.uint8)
    now = t0 + 100_000_000
    bus.inject("/cam/color/camera_info", intrinsics_to_camera_info(intr, stamp_ns=tc), now)
    bus.inject("/cam/color/image_raw", numpy_to_image(rgb, "rgb8", tc, "cam_optical"), now)
    bus.inject(
        "/cam/aligned_depth_to_color/image_raw", numpy_to_image(depth, "32FC1", td, "cam_optical"), now
    )
    assert len(frames) == 1, node.diag.summary()
    T_want = np.eye(4)
    T_want[:3, 3] = [base_x(tc), 0.0, 0.0]
    T_want = T_want @ T_base_opt  # map <- optical frame at the image's stamp, by hand
    np.testing.assert_allclose(frames[0].camera.T_map_cam, T_want, atol=1e-6)
    assert frames[0].camera.frame_id == "cam_optical"
    got = np.asarray(frames[0].depth, np.float64)
    valid = np.isfinite(got) & (got > 0)
    assert valid.mean() > 0.5
    want = wall - (base_x(tc) + 0.5)  # the camera's distance to the wall at the image's stamp
    assert abs(want - 7.5) < 1e-9
    np.testing.assert_allclose(got[valid], want, atol=0.02)
