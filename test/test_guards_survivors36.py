"""Guards from mutation testing (session 24, seed 2412061): lines of gs_mapping / gsmap_hd whose
breakage no test noticed. Each test checks the project against something outside it: tf2_ros's
MessageFilter order, gsplat's rule for a degenerate 2D covariance, rmw_zenoh's entity ids, the
documented defaults (README, config/full.yaml), a hand computation.

Known bugs are ``xfail(strict=True)``.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from conftest import KITCHEN_TOPICS_YAML

REPO = Path(__file__).resolve().parents[1]

MAPPER_YAML = f"""
/**:
  ros__parameters:
    mapper:
      {KITCHEN_TOPICS_YAML}
      device: cpu
      max_gaussians: 20000
      seeding: {{stride: 8}}
      optim: {{iterations: 1, first_iterations: 2}}
      keyframe: {{max_gap: 4}}
    mapper_node:
      tf_wait_s: 0.5
"""


@pytest.mark.shared_data
def test_frames_queued_for_their_tf_are_all_mapped_oldest_first(kitchen_bag, tmp_path):
    """tf2_ros::MessageFilter keeps the messages whose transform has not arrived in a queue and,
    when TF comes, delivers every one that can now be transformed in the order they arrived (its
    ``messages_`` list is walked front to back). Here the real kitchen bag's /tf for frames 2-4 is
    held back until all three frames' images are in (a TF broadcaster stalled for 0.1 s): the three
    frames wait (TF_QUEUE is 3), then all four frames are mapped, in stamp order, none dropped.
    Taking the newest waiting frame first maps it and then drops the older two as 'stamp not after
    the previous frame's'."""
    pytest.importorskip("torch")  # (the mapper)
    from gs_mapping.bag import BagReader
    from gs_mapping.nodes.mapper_node import MapperNode
    from gs_mapping.runtime.replay import ReplayBus

    cfg = tmp_path / "nodes.yaml"
    cfg.write_text(MAPPER_YAML)
    with BagReader(kitchen_bag) as bag:
        msgs = list(bag.messages())
    stamps = sorted({s for t, s, _ in msgs if t == "/camera/color/image_raw"})[:4]
    msgs = [m for m in msgs if m[1] <= stamps[-1]]
    order = {"/tf_static": 0, "/camera/color/camera_info": 0, "/tf": 2}  # images: 1
    msgs.sort(key=lambda m: (m[1], order.get(m[0], 1)))
    late = [m for m in msgs if m[0] == "/tf" and m[1] > stamps[0]]
    early = [m for m in msgs if not (m[0] == "/tf" and m[1] > stamps[0])]
    assert late, "the bag has /tf after its first frame"
    bus = ReplayBus()
    node = MapperNode(bus.context("mapper_node"), MapperNode.load_config(str(cfg)))
    mapped = []
    add_frame = node.mapper.add_frame

    def spy(frame):
        mapped.append(node.last_stamp_ns)
        return add_frame(frame)

    node.mapper.add_frame = spy
    for topic, stamp, msg in early:
        bus.inject(topic, msg, stamp)
    assert node.diag.values.get("frames_waiting_for_tf") == 3
    for topic, _stamp, msg in late:  # the stalled TF arrives, all at once
        bus.inject(topic, msg, stamps[-1] + 1)
    d = node.diag.summary()
    assert not d["dropped"], d["dropped"]
    assert node.mapper.stats.frames == 4
    assert mapped == stamps, (mapped, stamps)


def test_reference_rasteriser_skips_a_gaussian_whose_2d_covariance_is_singular():
    """gsplat's projection (``fully_fused_projection``: ``if (det <= 0.f) return;``) gives a
    Gaussian whose 2D covariance is not positive definite radius 0: it is skipped, the others render.
    The dense reference rasteriser (the specification the CPU backend is tested against) says it
    follows gsplat; with ``eps2d=0`` a zero-scale Gaussian (a PLY with log-scale -inf) has a
    singular 2D covariance. The image must be the one of the scene without it (hand expectation),
    not an exception from inverting a singular matrix."""
    torch = pytest.importorskip("torch")

    from gs_mapping.render.reference import rasterize_reference

    f64 = torch.float64
    means = torch.tensor([[0, 0, 3.0], [0.2, 0.1, 4], [0.1, 0, 2.5]], dtype=f64)
    quats = torch.tensor([[0, 0, 0, 1.0]] * 3, dtype=f64)
    scales = torch.tensor([[0.1, 0.1, 0.1], [0.2, 0.1, 0.1], [0.0, 0.0, 0.0]], dtype=f64)
    opac = torch.tensor([0.8, 0.7, 0.9], dtype=f64)
    colors = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 1.0]], dtype=f64)
    view = torch.eye(4, dtype=f64)
    K = torch.tensor([[20.0, 0, 8], [0, 20, 8], [0, 0, 1]], dtype=f64)
    rgb, dep, acc = rasterize_reference(means, quats, scales, opac, colors, view, K, 16, 16, eps2d=0.0)
    rgb2, dep2, acc2 = rasterize_reference(
        means[:2], quats[:2], scales[:2], opac[:2], colors[:2], view, K, 16, 16, eps2d=0.0
    )
    assert float(acc.max()) > 0.5  # the other two render
    torch.testing.assert_close(rgb, rgb2)
    torch.testing.assert_close(acc, acc2)


def test_predict_bag_default_score_threshold_is_hd_map_nodes_documented_default():
    """README: ``hd-predict … [--score-threshold 0.3]``, and config/full.yaml (the parameter file
    the nodes and the CLI read) gives ``hd_map_node.score_threshold: 0.3``. The Python entry point
    ``predict_bag`` says in its signature that its default is hd_map_node's: a caller of the API
    gets the same elements as the node and the CLI."""
    import inspect

    import yaml

    from gsmap_hd.predict_bag import predict_bag

    doc = yaml.safe_load((REPO / "config" / "full.yaml").read_text())["/**"]["ros__parameters"]
    node_default = doc["hd_map_node"]["score_threshold"]
    assert node_default == 0.3
    assert "--score-threshold 0.3" in (REPO / "README.md").read_text()
    assert inspect.signature(predict_bag).parameters["score_threshold"].default == node_default


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_zenoh_entities_of_one_node_have_distinct_entity_ids():
    """rmw_zenoh (``rmw_context_impl_s::get_next_entity_id``) numbers every node, publisher,
    subscription and service of a session with its own id, and that id is in the entity's
    liveliness token (``@ros2_lv/<domain>/<zid>/<nid>/<eid>/<kind>/…``, docs/design.md) and in the
    publisher GID hashed from it. Two entities with one id would be one entity to a graph cache that
    keys by (zid, nid, eid). Read back from the router as any rmw_zenoh peer would: the tokens of
    one node with two publishers and a subscription carry four different entity ids."""
    pytest.importorskip("zenoh")
    from gs_mapping.nodes.context import RELIABLE_QOS
    from gs_mapping.runtime import zenoh_wire as zw
    from gs_mapping.runtime.zenoh_runtime import ZenohContext, run_router

    endpoint = f"tcp/127.0.0.1:{_free_port()}"
    router = run_router([endpoint])
    ctx = None
    try:
        ctx = ZenohContext("ids_node", domain_id=47, connect=[endpoint])
        a = ctx.create_publisher("/gs_test/a", "std_msgs/msg/String", RELIABLE_QOS)
        b = ctx.create_publisher("/gs_test/b", "std_msgs/msg/String", RELIABLE_QOS)
        ctx.create_subscription("/gs_test/a", "std_msgs/msg/String", RELIABLE_QOS, lambda m: None)
        deadline, mine = time.monotonic() + 20, []
        while len(mine) < 4 and time.monotonic() < deadline:  # (the tokens reach the router)
            keys = ctx.liveliness_get("@ros2_lv/47/**")
            mine = [t for t in map(zw.parse_liveliness, keys) if t.zid == ctx.zid]
            time.sleep(0.2)
        assert len(mine) == 4, mine
        ids = [t.entity_id for t in mine]
        assert len(set(ids)) == 4, ids
        assert a.gid != b.gid
    finally:
        if ctx is not None:
            ctx.close()
        router.close()


def test_basic_block_adds_the_shortcut_before_its_only_final_relu():
    """He et al. 2016 (Deep Residual Learning, fig. 2) and torchvision's ``BasicBlock``:
    ``out = relu(bn2(conv2(relu(bn1(conv1(x))))) + x)``: the residual branch ends in batch norm
    with no ReLU, so it can subtract from the shortcut. Hand computation in eval mode with conv2's
    weights zero and bn2's shift -10: the branch is -10 everywhere and the block maps an input of
    ones to relu(1 - 10) = 0. A ReLU closing the branch would clamp -10 to 0 and pass the input
    through (1), and the shipped checkpoints, trained with the first form, would predict otherwise."""
    torch = pytest.importorskip("torch")

    from gsmap_hd.backbone import BasicBlock

    block = BasicBlock(2, 2, 1).eval()
    conv2, bn2 = block.body[1][0], block.body[1][1]
    with torch.no_grad():
        conv2.weight.zero_()
        bn2.bias.fill_(-10.0)
        out = block(torch.ones(1, 2, 5, 5))
    assert torch.equal(out, torch.zeros_like(out)), out.unique()
    with torch.no_grad():
        bn2.bias.fill_(0.5)  # and a positive branch adds: relu(1 + 0.5)
        out = block(torch.ones(1, 2, 5, 5))
    torch.testing.assert_close(out, torch.full_like(out, 1.5))
