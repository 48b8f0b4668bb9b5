"""Guards for behaviours a mutation-testing pass found unguarded (third round): each test compares
the component with an independent reference (a LEB128 varint written by hand, the format rules of
docs/format.md applied to hand-edited and resealed containers, the ROS domain and tf2 QoS rules,
the documented Bayer cell average, a hand-computed matching cost, the rule a docstring states), so
that breaking the line it guards makes it fail."""

from __future__ import annotations

import struct

import numpy as np
import pytest

# ------------------------------------------------------------------------------------------------
# codec: bit reader, container header, streams, sections


def _leb128(v: int) -> bytes:
    """The unsigned LEB128 varint of ``v``, written out byte by byte (7 bits a byte, low first,
    the high bit set on every byte but the last)."""
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


@pytest.mark.parametrize("limit", [1, 127, 300, 1 << 40])
def test_varint_at_its_limit_is_read_and_one_above_is_refused(limit):
    """Reader.varint(limit): the value ``limit`` itself comes back, ``limit + 1`` is a DecodeError
    naming the limit (the bound is inclusive and exact)."""
    from gs_map_share.bitio import Reader
    from gs_map_share.errors import DecodeError

    assert _leb128(300) == b"\xac\x02"  # the LEB128 example of the spec
    r = Reader(_leb128(limit) + b"\x07")
    assert r.varint(limit) == limit
    assert r.pos == len(_leb128(limit))
    with pytest.raises(DecodeError, match=f"exceeds the limit {limit}"):
        Reader(_leb128(limit + 1)).varint(limit)


def _header(seq: int, base_seq: int, frame_id: str = "map"):
    from gs_map_share.container import Header
    from gs_map_share.quantize import QuantParams

    return Header(1, seq, base_seq, 0, 0, 0, 1, QuantParams(), 2.0, frame_id)


def test_delta_whose_base_is_its_own_sequence_is_refused():
    """A delta applies to an earlier state: base_seq == seq (5 on 5) is a DecodeError naming the
    base sequence; base_seq 4 under seq 5 is read."""
    from gs_map_share.container import pack, unpack_header
    from gs_map_share.errors import DecodeError

    h, _, _ = unpack_header(pack(_header(5, 4), []))
    assert (h.seq, h.base_seq) == (5, 4)
    with pytest.raises(DecodeError, match="base sequence 5 is not before sequence 5"):
        unpack_header(pack(_header(5, 5), []))


def test_header_with_a_frame_id_longer_than_128_bytes_is_refused():
    """docs/format.md: the frame id is at most 128 bytes. A header edited to carry a 130-byte frame
    id, its lengths consistent (flen, header length) and resealed, is a DecodeError; the same
    header with 128 bytes decodes."""
    from gs_map_share.container import _FIXED, MAX_FRAME_ID, pack, reseal, unpack_header
    from gs_map_share.errors import DecodeError

    assert MAX_FRAME_ID == 128
    frame = "f" * 128
    data = pack(_header(3, 0, frame), [])
    assert unpack_header(data)[0].frame_id == frame
    off = _FIXED.size  # n_chunks (u16), flen (u8), then the frame id
    assert data[off + 2] == 128
    hlen = struct.unpack_from("<H", data, 6)[0]
    end = off + 3 + 128
    edited = bytearray(data[:end] + b"gg" + data[end:])
    edited[off + 2] = 130
    struct.pack_into("<H", edited, 6, hlen + 2)
    assert hlen + 2 <= 256  # the header-length bound alone does not refuse it
    edited = reseal(bytes(edited))
    with pytest.raises(DecodeError, match="frame id length"):
        unpack_header(edited)


def test_stream_table_with_an_alphabet_of_one_symbol_is_refused():
    """A coded stream's table must have two symbols at least (docs/format.md; the encoder pads a
    one-symbol table with a zero): a stream edited to declare an alphabet of one is a DecodeError."""
    from gs_map_share.bitio import Reader, Writer
    from gs_map_share.entropy import decode_stream, encode_stream
    from gs_map_share.errors import DecodeError

    values = (np.arange(100) % 3 == 0).astype(np.int64)
    w = Writer()
    encode_stream(w, values, signed=False, log2t=6)
    data = bytearray(w.getvalue())
    assert data[0] == 2 and data[1] == 6 and data[2] == 1  # mode 2, log2t 6, one table
    assert data[3] == 2  # its alphabet: symbols 0 and 1
    assert np.array_equal(decode_stream(Reader(bytes(data)), 100, signed=False), values)
    data[3] = 1
    with pytest.raises(DecodeError, match="alphabet of one symbol"):
        decode_stream(Reader(bytes(data)), 100, signed=False)


def test_id_ordered_section_with_a_repeated_id_is_refused():
    """Id-ordered geometry lists ids strictly increasing: a gap stream whose value wraps the next id
    back onto the previous one (gap 2**64 − 1, + 1 ≡ 0) is refused as "not increasing"."""
    from synthetic_maps import synthetic_map
    from test_share_id_order import _crafted, _valid_fields

    from gs_map_share.errors import DecodeError
    from gs_map_share.snapshot import decode_snapshot

    swept = synthetic_map(3000, 1, seed=5)
    first, gaps, d = _valid_fields(swept)
    gaps = gaps.astype(np.uint64)
    gaps[10] = np.uint64((1 << 64) - 1)  # id 12 == id 11
    with pytest.raises(DecodeError, match="not increasing"):
        decode_snapshot(_crafted(swept, first, gaps, d))


def test_section_with_a_repeated_level_depth_is_refused():
    """A section's level depths increase strictly to the tile depth: a two-level section edited so
    both levels sit at the tile depth ([D, D]) is a DecodeError naming the depths; unedited, the
    snapshot decodes."""
    from synthetic_maps import synthetic_map

    from gs_map_share.bitio import Reader
    from gs_map_share.container import TILES, Chunk, Header
    from gs_map_share.errors import DecodeError
    from gs_map_share.quantize import QuantParams, to_qmap
    from gs_map_share.section import encode_section
    from gs_map_share.snapshot import decode_snapshot, finish

    p = QuantParams.from_quality(2)
    D = p.tile_bits
    q = to_qmap(synthetic_map(2000, 0, seed=6), p)
    chunks, _ = encode_section(q, p, 2)
    assert chunks[0].type == TILES
    tiles = bytes(chunks[0].data)
    r = Reader(tiles)
    r.varint()
    assert r.varint() == 2
    depths = list(tiles[r.pos : r.pos + 2])
    assert depths[1] == D and depths[0] < D
    h = Header(1, 1, 0, len(q), q.checksum(), 0, 2, p, 2.0, "map")
    assert decode_snapshot(finish(h, chunks, [len(q)]))[1].checksum() == q.checksum()
    edited = tiles[: r.pos] + bytes([D, D]) + tiles[r.pos + 2 :]
    bad = [Chunk(TILES, 0, edited), *chunks[1:]]
    with pytest.raises(DecodeError, match=rf"level depths \[{D}, {D}\] are not increasing"):
        decode_snapshot(finish(h, bad, [len(q)]))


def test_the_same_snapshot_twice_is_a_duplicate():
    """A receiver given the snapshot it already holds answers DUPLICATE and counts it, without
    decoding it again (the second is not another SNAPSHOT)."""
    from synthetic_maps import synthetic_map

    from gs_map_share.delta import MapSender
    from gs_map_share.quantize import QuantParams
    from gs_map_share.receiver import DUPLICATE, SNAPSHOT, MapStore

    sender = MapSender.from_map(synthetic_map(200, 0, seed=2), QuantParams.from_quality(2), first_seq=4)
    snap = sender.snapshot()
    store = MapStore()
    assert store.receive(snap) == SNAPSHOT
    assert store.receive(snap) == DUPLICATE
    assert store.stats[SNAPSHOT] == 1 and store.stats[DUPLICATE] == 1


# ------------------------------------------------------------------------------------------------
# command line, nodes, messages


def test_apply_without_an_output_refuses_and_leaves_the_last_delta_alone(tmp_path):
    """``gs-mapping apply base.gsd d1.gsd d2.gsd --overwrite`` (OUT forgotten): the last argument is
    not a .ply, so exit 2 with one error line, and d2.gsd keeps its bytes."""
    from hostile_cases import run_cli
    from synthetic_maps import synthetic_map

    from gs_map_share.delta import MapSender
    from gs_map_share.quantize import QuantParams

    g = synthetic_map(80, 0, seed=9)
    sender = MapSender.from_map(g, QuantParams.from_quality(2), map_id=2)
    paths = [tmp_path / n for n in ("base.gsd", "d1.gsd", "d2.gsd")]
    paths[0].write_bytes(sender.snapshot())
    for k, path in enumerate(paths[1:]):
        g.update(g.ids[k : k + 5], means=g.means[k : k + 5] + np.float32(0.03))
        path.write_bytes(sender.update(g, g.take_changes())[0])
    before = paths[2].read_bytes()
    out = run_cli(["apply", *paths, "--overwrite"], "argument", inputs=paths, must_name=["d2.gsd"])
    assert out.violation == ""
    assert out.rc == 2 and ".ply" in out.stderr
    assert paths[2].read_bytes() == before


def test_ros_domain_id_accepts_232_and_refuses_233(monkeypatch):
    """ROS domains are 0..232 (the last whose RTPS ports fit in 16 bits): 232 is taken, from the
    argument and from $ROS_DOMAIN_ID; 233 is a ConfigError."""
    from gs_mapping.errors import ConfigError
    from gs_mapping.nodes.context import ros_domain_id

    assert ros_domain_id(232) == 232
    assert ros_domain_id(0) == 0
    monkeypatch.setenv("ROS_DOMAIN_ID", "232")
    assert ros_domain_id(None) == 232
    with pytest.raises(ConfigError, match="0..232"):
        ros_domain_id(233)
    monkeypatch.setenv("ROS_DOMAIN_ID", "233")
    with pytest.raises(ConfigError, match="ROS_DOMAIN_ID"):
        ros_domain_id(None)


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
def test_bayer_green_is_the_mean_of_the_cells_two_greens(pattern):
    """image_to_rgb: a Bayer mosaic's colour per 2x2 cell, green the mean of its two green pixels
    (G1 = 10, G2 = 30 → 20), on all four pixels of the cell."""
    from gs_mapping.messages import image_to_rgb, numpy_to_image

    values = {"r": 200, "b": 60}
    greens = iter((10, 30))
    cell = np.array([values[c] if c != "g" else next(greens) for c in pattern], np.uint8).reshape(2, 2)
    mosaic = np.tile(cell, (2, 3))
    rgb = image_to_rgb(numpy_to_image(mosaic, f"bayer_{pattern}8"))
    assert rgb.shape == (4, 6, 3)
    assert np.array_equal(rgb, np.broadcast_to(np.array([200, 20, 60], np.uint8), (4, 6, 3)))


# ------------------------------------------------------------------------------------------------
# mapping


def test_unexplained_where_the_observed_depth_is_well_in_front_of_the_map():
    """unexplained_mask: an opaque map (alpha 1) rendering 3 m where 1 m is measured has something
    new in front: unexplained; where the rendered depth agrees (1 m), explained."""
    from gs_mapping.mapping.mapper_config import SeedingConfig
    from gs_mapping.mapping.seeding import unexplained_mask

    cfg = SeedingConfig()
    depth = np.ones((2, 3), np.float32)
    alpha = np.ones((2, 3), np.float32)
    rendered = np.ones((2, 3), np.float32)
    rendered[0, 1] = 3.0
    rendered[1, 2] = 1.0 * (1.0 + cfg.depth_behind_ratio) * 0.99  # within the ratio: explained
    want = np.zeros((2, 3), bool)
    want[0, 1] = True
    assert np.array_equal(unexplained_mask(alpha, rendered, depth, cfg), want)


def test_coarse_voxel_goes_to_the_gaussian_nearest_its_centre():
    """assign_levels: of two new Gaussians in one free level-0 voxel, the one nearest the voxel
    centre takes level 0 and the other the finest level, whatever their row order."""
    from gs_mapping.mapping.levels import assign_levels
    from gs_mapping.mapping.mapper_config import LevelsConfig

    cfg = LevelsConfig(count=2, base_voxel_m=1.0)
    far = [0.05, 0.1, 0.9]  # ~0.69 m from the centre (0.5, 0.5, 0.5)
    near = [0.45, 0.55, 0.5]  # ~0.07 m
    assert assign_levels(np.array([far, near]), cfg).tolist() == [1, 0]
    assert assign_levels(np.array([near, far]), cfg).tolist() == [0, 1]


def _play_bag(path):
    """A bag of two /tf_static messages (two static broadcasters, latched), /tf and a camera image."""
    from hostile_cases import tf_message

    from gs_mapping.bag import BagWriter, default_typestore
    from gs_mapping.messages import RosbagsFactory, numpy_to_image

    f = RosbagsFactory(default_typestore())

    def tf(stamp, parent, child, x):
        return tf_message(f, stamp, parent, child, x)

    with BagWriter(path) as bag:
        bag.add_topic("/tf_static", "tf2_msgs/msg/TFMessage", latched=True)
        bag.add_topic("/tf", "tf2_msgs/msg/TFMessage")
        bag.add_topic("/camera/image_raw", "sensor_msgs/msg/Image")
        bag.write("/tf_static", 0, tf(0, "base_link", "camera", 0.2))
        bag.write("/tf_static", 1, tf(0, "base_link", "lidar", 0.5))
        for i in range(3):
            stamp = 10**8 + i * 10**7
            bag.write("/tf", stamp, tf(stamp, "map", "base_link", 0.1 * i))
            img = np.full((4, 6, 3), i, np.uint8)
            bag.write("/camera/image_raw", stamp, numpy_to_image(img, "rgb8", stamp, "camera", factory=f))
    return path


def _run_play(monkeypatch, argv) -> tuple[dict, dict, int]:
    """``gs-mapping play ARGV`` in-process with a context that records each publisher's QoS and how
    many messages each published (the transport is not what these tests check): (qos, sent, exit)."""
    from gs_mapping.cli import main, run_node

    qos, sent = {}, {}

    class Pub:
        def __init__(self, name):
            self.name = name

        def publish(self, msg):
            sent[self.name] = sent.get(self.name, 0) + 1

        def subscription_count(self):
            return 1

    class Ctx:
        def create_publisher(self, name, typename, q):
            qos[name] = q
            return Pub(name)

        def spin_once(self, timeout_s=0.0):
            pass

        def close(self):
            pass

    monkeypatch.setattr(run_node, "make_context", lambda args, name: Ctx())
    code = main(["play", *argv, "--rate", "1000", "--wait-for-subscribers", "0"])
    return qos, sent, code


def _played_qos(tmp_path, monkeypatch) -> tuple[dict, dict]:
    """Run ``gs-mapping play`` on :func:`_play_bag`: the QoS each topic's publisher was created
    with, and how many messages each published."""
    qos, sent, code = _run_play(monkeypatch, [str(_play_bag(tmp_path / "bag"))])
    assert code == 0
    return qos, sent


def test_play_publishes_tf_reliable_static_tf_latched_and_sensors_as_recorded(tmp_path, monkeypatch):
    """gs-mapping play offers what subscribers expect (tf2's and rclpy's rules): /tf reliable and
    volatile (tf2's dynamic broadcaster), /tf_static reliable and transient-local (tf2's static
    broadcaster: late joiners get it), a camera topic as it was recorded (ros2 bag play's rule):
    this bag's writer offered it reliable and volatile, which reaches reliable and best-effort
    readers alike (test_outside_ros2_qos plays a best-effort recording)."""
    qos, sent = _played_qos(tmp_path, monkeypatch)
    assert sent == {"/tf_static": 2, "/tf": 3, "/camera/image_raw": 3}
    tf, static, cam = qos["/tf"], qos["/tf_static"], qos["/camera/image_raw"]
    assert tf.reliable and not tf.transient_local
    assert static.reliable and static.transient_local
    assert cam.reliable and not cam.transient_local and cam.depth == 10


def test_play_keeps_tf2s_history_depths(tmp_path, monkeypatch):
    """tf2_ros's DynamicBroadcasterQoS keeps the last 100 /tf messages; a bag's /tf_static holds one
    message per static broadcaster, and a late subscriber (transient-local) must get every one, so
    the player keeps at least as many (the project's own TF_STATIC_QOS comment: 100). It played /tf
    at depth 10 and /tf_static at depth 1: a late subscriber got only the last static transform."""
    qos, sent = _played_qos(tmp_path, monkeypatch)
    assert qos["/tf"].depth == 100
    assert qos["/tf_static"].depth >= sent["/tf_static"]


# ------------------------------------------------------------------------------------------------
# HD maps


def test_training_checkpoints_its_last_step_off_the_checkpoint_grid(tmp_path):
    """train: last.pt is resumable from where the run ended: with steps=5 and checkpoint_every=2 it
    holds step 5 (not 4) and the weights of the final model.pt (stored there more compactly: equal
    to fp16 rounding)."""
    import torch
    from test_hd_model_train import _cfg

    from gsmap_hd.checkpoint import load_model
    from gsmap_hd.train import train

    train(_cfg(steps=5, checkpoint_every=2, log_every=5, eval_every=0), tmp_path, progress=False)
    last, _, state = load_model(tmp_path / "last.pt")
    final, _, _ = load_model(tmp_path / "model.pt")
    assert state["step"] == 5
    for (k, a), b in zip(last.state_dict().items(), final.state_dict().values(), strict=True):
        torch.testing.assert_close(a.float(), b.float(), atol=2e-3, rtol=2e-3, msg=k)


# ------------------------------------------------------------------------------------------------
# mapping runs


def test_holdout_every_three_holds_out_the_third_and_sixth_frames(tmp_path):
    """map_bag with holdout_every 3 on a 6-frame bag: every 3rd frame (indices 2 and 5) is held
    out, evaluated and saved as a PNG; the other four are mapped."""
    from fleet_drives import tiny_config

    from gs_mapping.mapping.run import map_bag
    from gs_mapping.world import Drive
    from gs_mapping.world.record import write_bag

    bag = tmp_path / "world"
    write_bag(Drive.make(5, 6, "front", (40, 24)), bag, progress=False)
    cfg = tiny_config(1)
    cfg.holdout_every = 3
    cfg.topics.color = "/cameras/front/image_raw"
    cfg.topics.depth = "/cameras/front/depth"
    cfg.topics.camera_info = "/cameras/front/camera_info"
    m = map_bag(bag, tmp_path / "out", cfg, device="cpu", progress=False)
    assert m["frames"] == 6
    assert [v["index"] for v in m["heldout"]["per_view"]] == [2, 5]
    assert m["mapping_frames"] == 4
    pngs = sorted(p.name for p in (tmp_path / "out" / "heldout").glob("*.png"))
    assert pngs == ["000002.png", "000005.png"]


def test_ground_truth_logged_half_a_second_late_still_pairs_with_the_first_frame(tmp_path):
    """predict_bag(max_frames=1) reads on for the predicted frames' ground truth (GT_GRACE_NS, 2 s
    of log time): a bag whose /ground_truth/lanes_json is logged 0.5 s after the images still
    pairs frame 0 with its lanes (the world's own lanes of that frame). The bag is written without
    the world's whole map (/ground_truth/map_json), from which hd-predict would otherwise cut each
    frame's GT over the model's patch: the per-frame GT, and its pairing, are what is under test."""
    import json

    from gs_mapping.bag import BagReader, BagWriter
    from gs_mapping.world import Drive
    from gs_mapping.world.record import write_bag
    from gsmap_hd.predict_bag import GT_TOPIC, MAP_TOPIC, predict_bag

    drive = Drive.make(2026, 2, "front", (256, 128), rate_hz=2.0)
    bag, late = tmp_path / "drive", tmp_path / "late"
    write_bag(drive, bag, progress=False)
    shift = 500_000_000
    with BagReader(bag) as r, BagWriter(late) as w:
        for t in r.topics:
            if t.name != MAP_TOPIC:
                w.add_topic(t.name, t.type, latched=t.latched)
        msgs = [
            (topic, stamp + (shift if topic == GT_TOPIC else 0), msg)
            for topic, stamp, msg in r.messages()
            if topic != MAP_TOPIC
        ]
        assert any(m[0] == GT_TOPIC for m in msgs)
        for topic, stamp, msg in sorted(msgs, key=lambda m: m[1]):
            w.write(topic, stamp, msg)
    summary = predict_bag(late, tmp_path / "pred.json", max_frames=1, progress=False)
    assert summary["frames"] == 1 and summary["with_gt"] and summary["frames_without_gt"] == 0
    doc = json.loads((tmp_path / "pred.json").read_text())
    fr = drive.frame(0)
    assert doc["results"][0]["stamp_ns"] == fr.stamp_ns
    want = json.loads(json.dumps([e.to_json() for e in fr.lanes]))
    assert want and doc["GTs"][0]["vectors"] == want


def test_a_lane_seen_in_reverse_extends_its_track_in_order():
    """LaneMap reads an observation in its track's direction: a divider seen forward (x 0 → 20 m)
    and then backward over x 30 → 10 m (its points listed the other way) is one track running
    monotonically along the lane from 0 to 30 m (length 30 m), not folded back on itself."""
    from dataclasses import dataclass

    from gsmap_hd.lane_map import LaneMap

    @dataclass
    class Obs:
        cls: int
        score: float
        points: np.ndarray

    lm = LaneMap()
    forward = np.stack([np.linspace(0, 20, 11), np.zeros(11)], 1)
    backward = np.stack([np.linspace(30, 10, 11), np.full(11, 0.2)], 1)
    lm.update([Obs(0, 0.9, forward)])
    stats = lm.update([Obs(0, 0.9, backward)])
    assert stats["matched"] == 1 and stats["new"] == 0
    assert len(lm.tracks) == 1
    (t,) = lm.tracks.values()
    x, y = t.points[:, 0], t.points[:, 1]
    assert np.all(np.diff(x) > 0) or np.all(np.diff(x) < 0)
    assert min(x) == pytest.approx(0.0, abs=0.5) and max(x) == pytest.approx(30.0, abs=0.5)
    assert np.all((y >= -0.01) & (y <= 0.21))
    assert t.length() == pytest.approx(30.0, abs=0.5)


def test_point_cost_ignores_the_padded_orderings_of_a_line():
    """ordered_l1 takes the minimum over a GT's *valid* orderings only: beside a polygon (14
    orderings) a line has 2, the rest zero padding. A prediction with every point at the patch
    centre (0, 0) costs against the line y = 2, x −20..20 what the line's points give by hand —
    mean |Δu| + |Δv| in patch-normalised coordinates — not the 0 of a padded all-zero ordering."""
    import torch

    from gsmap_hd.gaussians2d import BEVGrid
    from gsmap_hd.matching import build_targets, ordered_l1
    from gsmap_hd.model_config import LossConfig, ModelConfig

    m = ModelConfig(num_points=8, num_instances=6)
    loss = LossConfig(raster_res=1.0, iou_cost_res=2.0)
    line = (0, np.array([[-20.0, 2.0], [20.0, 2.0]]))
    crossing = (1, np.array([[10.0, -5.0], [14.0, -5.0], [14.0, 5.0], [10.0, 5.0], [10.0, -5.0]]))
    t = build_targets([line, crossing], m, loss)
    assert t.order_valid.sum(1).tolist() == [2, 14]
    grid = BEVGrid(m.x_range, m.y_range, m.bev_h, m.bev_w)
    pred = torch.zeros(1, 8, 2)
    cost, best = ordered_l1(grid.normalize(pred), grid.normalize(t.orders), t.order_valid)
    (x0, x1), (y0, y1) = m.x_range, m.y_range
    xs = np.linspace(-20.0, 20.0, 8)
    want = np.mean(np.abs(xs / (x1 - x0))) + abs(2.0 / (y1 - y0))
    assert float(cost[0, 0]) == pytest.approx(want, rel=1e-5)
    assert int(best[0, 0]) in (0, 1)


def test_decoder_layers_sample_at_the_sigmoid_of_the_refined_centres():
    """MapDecoder: each layer's reference points are normalised patch coordinates in [0, 1] — the
    first layer's the sigmoid of the reference head, every later one's the sigmoid of the centre
    logits the layer before output (torch.sigmoid applied here to the returned states)."""
    import torch

    from gsmap_hd.decoder import MapDecoder

    torch.manual_seed(3)
    dec = MapDecoder(16, 3, 4, 3, 3, 4, 4, 32, 0.0, scale_init_logit=0.0).eval()
    with torch.no_grad():
        for head in dec.reg:  # (zero at init: give the refinements something to move)
            torch.nn.init.normal_(head[-1].weight, std=0.5)
            torch.nn.init.normal_(head[-1].bias, std=1.0)
    refs = []
    hooks = [
        layer.register_forward_pre_hook(lambda _m, args: refs.append(args[2].detach().clone()))
        for layer in dec.layers
    ]
    try:
        with torch.no_grad():
            outs = dec(torch.randn(2, 16, 6, 5))
    finally:
        for h in hooks:
            h.remove()
    assert len(refs) == 3
    for ref in refs:
        assert ref.shape == (2, 12, 2)
        assert float(ref.min()) >= 0.0 and float(ref.max()) <= 1.0
    for i in (1, 2):
        state = outs[i - 1][1]  # (B, E, K, 5) logits of the layer before
        want = torch.sigmoid(state[..., :2]).reshape(2, 12, 2)
        torch.testing.assert_close(refs[i], want)
