"""Uniform mutation survey (seed 36) of src/: tests for the mutants that survived the suite, each
checked to fail with its mutant and pass without.

- sync: an input whose newest stamp equals a new message's stamp has reached it (``t >= stamp``,
  as ``_reach`` counts a stamp equal to the one reached): the message's own input (streams come in
  stamp order, so every message is at its input's newest) and an input already at that stamp.
  Counted as not reached (``>``), a frame whose partner was lost is never "left behind" by a loop
  of ``ros2 bag play --loop``: it holds a queue slot for good, and the next loop's depth frame
  delivered before its colour pairs with the last loop's colour frame of that stamp.
- entropy: a stream whose largest value is the escape bound itself (the first escape, symbol t).
- map_receiver_node: its diagnostics count the containers per kind.
- seeding: a seed is stored unrotated (the identity, as 3DGS seeds), not a half-turn.
- save_splats: a str path, as its signature says.
- gsmap_hd.images_to_model: the caller's float32 K stays as it was.
- the mapper's ``keyframe_cpu_seconds``: one sample per keyframe.
"""

from __future__ import annotations

import numpy as np
import pytest

from gs_map_share.bitio import Reader, Writer
from gs_map_share.entropy import decode_stream, encode_stream
from gs_mapping.bag import BagReader
from gs_mapping.cli import main
from gs_mapping.mapping.mapper_config import TopicsConfig
from gs_mapping.sync import ApproximateTimeSynchronizer

REALSENSE = "realsense_kitchen_rgbd"
COLOR = "/camera/camera/color/image_raw/compressed"
DEPTH = "/camera/camera/aligned_depth_to_color/image_raw/compressedDepth"
INFO = "/camera/camera/color/camera_info"


def _play(data_dir, topics, lose=()):
    """One pass of the real recording as a replay delivers it: (topic, header stamp, message), a
    fresh message per pass (as a middleware deserialises each), the depth frames ``lose`` lost;
    at each stamp in the order of ``topics``."""
    out, k = [], dict.fromkeys(topics, 0)
    with BagReader(data_dir / REALSENSE) as bag:
        for topic, _, msg in bag.messages(topics):
            frame = k[topic]
            k[topic] += 1
            if topic == DEPTH and frame in lose:
                continue
            out.append((topic, msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec, msg))
    return sorted(out, key=lambda m: (m[1], topics.index(m[0])))


@pytest.mark.parametrize("topics", [[COLOR, DEPTH], [DEPTH, COLOR], [INFO, COLOR, DEPTH]])
def test_a_loop_drops_the_frames_the_last_loop_left_unpaired(shared_data, topics):
    """The kitchen recording (50 frames at 15 Hz, colour and depth at equal stamps) played twice as
    ``ros2 bag play --loop`` does, through mapper_node's synchroniser (queue of 10, its slop), with
    13 depth frames lost in the first loop (a 0.9 s outage). Loop 1's unpaired colour frames (the
    queue keeps 9 of them) leave as soon as both inputs have stepped back, and the second loop pairs
    each colour frame with its own depth frame, never with loop 1's leftovers at the same stamps.
    In either order at a stamp (the leftovers' own input reached them as they came: ``>=``), and
    with the colour CameraInfo as a third input delivered first (an input already at the stamp
    reached it too)."""
    lost = range(20, 33)
    loops = [_play(shared_data, topics, lost), _play(shared_data, topics)]
    inputs = sorted(topics, key=[COLOR, DEPTH, INFO].index)
    sync = ApproximateTimeSynchronizer(inputs, queue_size=10, slop=TopicsConfig().sync_slop_s)
    got: list[list[tuple]] = [[], []]
    after_first_pair = None
    for n, loop in enumerate(loops):
        for topic, stamp, msg in loop:
            pair = sync.add(topic, stamp, msg)
            if pair is not None:
                got[n].append(pair)
                if n == 1 and after_first_pair is None:
                    after_first_pair = (sync.pending(), sync.dropped)
    waited = len(lost) * (len(inputs) - 1)  # (each lost depth frame's colour, and its CameraInfo)
    assert after_first_pair == (0, waited), "loop 1's leftovers outlived the loop"
    for n, loop in enumerate(loops):  # each pair a colour frame and the depth frame of its stamp
        by_stamp: dict[int, dict] = {}
        for topic, stamp, msg in loop:
            by_stamp.setdefault(stamp, {})[topic] = msg
        want = [tuple(m[t] for t in inputs) for _, m in sorted(by_stamp.items()) if len(m) == len(inputs)]
        assert len(got[n]) == len(want) == 50 - (len(lost) if n == 0 else 0)
        bad = [
            k
            for k, (a, b) in enumerate(zip(got[n], want, strict=True))
            if any(x is not y for x, y in zip(a, b, strict=True))
        ]
        assert not bad, f"loop {n + 1}: pairs {bad} are not a frame's own colour and depth"
    assert sync.pending() == 0 and sync.dropped == waited


# ---------------------------------------------------------------------------------------------------
# entropy: a stream whose largest value is the direct-symbol bound itself


@pytest.mark.parametrize("n", [300, 5000])  # one lane and two (LANES_MIN: 4096)
@pytest.mark.parametrize("log2t", [4, 6, 8])
@pytest.mark.parametrize("signed", [True, False])
def test_a_stream_whose_largest_value_is_the_escape_bound_comes_back(signed, log2t, n):
    """Symbols below t = 2**log2t are the values; t itself is the first escape (symbol t, log2t
    mantissa bits), so a stream whose largest zig-zagged value is exactly t must take the escape
    path: coded as a plain symbol it decodes to a missing mantissa."""
    t = 1 << log2t
    rng = np.random.default_rng(log2t)
    top = t // 2 if signed else t  # (zig-zag: 2v for v ≥ 0)
    v = rng.integers(-top + 1 if signed else 0, top, n)
    v[n // 3] = top
    if not signed:
        v = v.astype(np.uint64)
    w = Writer()
    encode_stream(w, v, signed, log2t)
    out = decode_stream(Reader(w.getvalue()), n, signed)
    assert np.array_equal(out, v)


# ---------------------------------------------------------------------------------------------------
# map_receiver_node: the diagnostics count the containers it got


def test_the_receivers_diagnostics_count_each_kind_of_container(shared_data):
    """A real map (guitar.ply) shared to map_receiver_node: a snapshot, a delta (a thousand
    Gaussians removed), that delta again and a corrupted copy. Its /diagnostics say so, per kind
    (containers_snapshot, _applied, _duplicate, _rejected), and its map is the sender's."""
    from gs_map_share.delta import MapSender
    from gs_map_share.quantize import QuantParams
    from gs_mapping.messages import bytes_to_uint8_multiarray
    from gs_mapping.nodes.map_receiver_node import MapReceiverNode
    from gs_mapping.ply import load_ply
    from gs_mapping.runtime.replay import ReplayBus

    gmap = load_ply(shared_data / "splats" / "guitar.ply")
    sender = MapSender.from_map(gmap, QuantParams.from_quality(2), map_id=36)
    snapshot = sender.snapshot()
    gmap.remove(gmap.ids[:1000])
    delta, _ = sender.update(gmap, gmap.take_changes())
    corrupt = bytearray(delta)
    corrupt[len(corrupt) // 2] ^= 0x10

    bus = ReplayBus()
    receiver = MapReceiverNode(bus.context("map_receiver_node"), MapReceiverNode.load_config(None))
    said = []
    bus.context("probe").create_subscription("/diagnostics", "", None, said.append)
    t = 10**9
    for topic, blob in (
        ("/mapper_node/map_snapshot", snapshot),
        ("/mapper_node/map_delta", delta),
        ("/mapper_node/map_delta", delta),
        ("/mapper_node/map_delta", bytes(corrupt)),
    ):
        t += 10**6
        bus.inject(topic, bytes_to_uint8_multiarray(blob, bus.factory), t)
    assert receiver.store.state.equals(sender.shadow) and len(receiver.store.state) == len(gmap)
    want = {"snapshot": 1, "applied": 1, "duplicate": 1, "rejected": 1}
    summary = receiver.diag.summary()
    assert {k: summary.get(f"containers_{k}") for k in want} == want
    bus.advance(t + 5 * 10**9)  # (its diagnostics timer)
    values = {kv.key: kv.value for kv in said[-1].status[0].values}
    assert {k: values.get(f"containers_{k}") for k in want} == {k: str(v) for k, v in want.items()}


# ---------------------------------------------------------------------------------------------------
# seeding: a new Gaussian is unrotated


def test_seeded_gaussians_are_stored_unrotated_as_3dgs_seeds_them(kitchen_bag, tmp_path):
    """``map`` of one real kitchen frame with no optimisation: the map is its seeds. Seeds are
    spheres, so any rotation draws the same, but the stored one is the identity, as the 3DGS
    reference seeds (``rots[:, 0] = 1``: w first in its PLY's rot_0..3); a seed stored as a
    half-turn (w = 0) is another map to a diff, a codec and a densification's split."""
    pytest.importorskip("torch")
    plyfile = pytest.importorskip("plyfile")
    cfg = tmp_path / "m.yaml"
    cfg.write_text(
        "/**:\n  ros__parameters:\n    mapper:\n      backend: cpu\n      seeding: {stride: 8}\n"
        "      levels: {count: 1}\n"  # (no coarse levels: no discs beside the seeds)
        "      optim: {iterations: 0, first_iterations: 0, refine_iterations: 0}\n"
    )
    out = tmp_path / "out"
    argv = ["map", str(kitchen_bag), "--out", str(out), "--device", "cpu", "--config", str(cfg)]
    assert main([*argv, "--max-frames", "1", "--no-progress"]) == 0
    v = plyfile.PlyData.read(str(out / "map.ply"))["vertex"]
    scales = np.stack([v[f"scale_{i}"] for i in range(3)], 1)
    wxyz = np.stack([v[f"rot_{i}"] for i in range(4)], 1)
    assert len(wxyz) > 1000 and (scales == scales[:, :1]).all()  # spheres: the seeds
    assert np.array_equal(wxyz, np.tile([1.0, 0, 0, 0], (len(wxyz), 1)))


# ---------------------------------------------------------------------------------------------------
# save_splats: a path given as a string


@pytest.mark.parametrize("suffix", [".ply", ".spz", ".splat"])
def test_save_splats_takes_a_string_path_as_it_takes_a_path(shared_data, tmp_path, suffix):
    """``save_splats(gmap, path: str | Path)``: a real scene (guitar.ply) written through a str
    name is the file a Path writes, and the count it returns is the file's size."""
    from gs_mapping.ply import load_ply
    from gs_mapping.splat_formats import save_splats

    gmap = load_ply(shared_data / "splats" / "guitar.ply")
    by_path, by_str = tmp_path / f"a{suffix}", tmp_path / f"b{suffix}"
    assert save_splats(gmap, by_path) == by_path.stat().st_size
    assert save_splats(gmap, str(by_str)) == by_str.stat().st_size
    assert by_str.read_bytes() == by_path.read_bytes()


def test_save_splats_refuses_a_format_it_cannot_write_by_a_string_name_too(shared_data, tmp_path):
    from gs_mapping.errors import MapError
    from gs_mapping.ply import load_ply
    from gs_mapping.splat_formats import save_splats

    gmap = load_ply(shared_data / "splats" / "guitar.ply")
    with pytest.raises(MapError, match=r"writing \.sog is not supported here"):
        save_splats(gmap, str(tmp_path / "x.sog"))
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------------
# gsmap_hd.data.images_to_model: the caller's K stays as it was


@pytest.mark.parametrize("as_tensor", [False, True])
def test_images_to_model_leaves_the_callers_float32_K_as_it_was(shared_data, as_tensor):
    """A real frame (the kitchen bag's 640x480 colour, its CameraInfo's K in float32, the dtype a
    model's K has) cropped and resized to the model's 128x256: the K returned is for the model's
    pixels, and the caller's K (shared memory where no dtype conversion copies it) is untouched, so
    a second call gives the same."""
    torch = pytest.importorskip("torch")
    from gs_mapping.messages import image_to_numpy
    from gsmap_hd.data import images_to_model

    with BagReader(shared_data / "7scenes_kitchen_rgbd") as bag:
        _, _, img = next(iter(bag.messages(["/camera/color/image_raw"])))
        _, _, info = next(iter(bag.messages(["/camera/color/camera_info"])))
    rgb = image_to_numpy(img)
    K = np.asarray(info.k, np.float32).reshape(1, 3, 3)
    K = torch.from_numpy(K) if as_tensor else K
    before = np.asarray(K).copy()
    x, k1 = images_to_model(rgb[None], K, (128, 256))
    assert tuple(x.shape) == (1, 3, 128, 256)
    assert np.array_equal(np.asarray(K), before)
    _, k2 = images_to_model(rgb[None], K, (128, 256))
    assert torch.equal(k1, k2)
    # crop 320x240 to 2:1 (40 rows off the top), then scale by 0.8: cx' = (cx + 0.5) · 0.8 − 0.5
    s = 256 / 320
    cx, cy = float(before[0, 0, 2]), float(before[0, 1, 2])
    assert float(k1[0, 0, 2]) == pytest.approx((cx + 0.5) * s - 0.5, abs=1e-4)
    assert float(k1[0, 1, 2]) == pytest.approx((cy - 40 + 0.5) * s - 0.5, abs=1e-4)


# ---------------------------------------------------------------------------------------------------
# mapper stats: one CPU time per keyframe


def test_the_mappers_cpu_time_is_one_sample_per_keyframe_it_made(kitchen_bag):
    """Real kitchen frames mapped on the CPU: ``keyframe_cpu_seconds`` (whose median ``map``'s
    metrics give as cpu_seconds_per_keyframe_p50) holds one positive sample per keyframe made, as
    the wall-time list does; a sample of no keyframe (a 0.0) would halve the median of one."""
    pytest.importorskip("torch")
    from conftest import use_kitchen_topics
    from mapper_configs import small_cpu_config

    from gs_mapping.mapping import IncrementalMapper
    from gs_mapping.mapping.frames import read_frames

    cfg = small_cpu_config()
    cfg.optim.iterations = cfg.optim.first_iterations = 1
    use_kitchen_topics(cfg.topics)
    m = IncrementalMapper(cfg, "cpu")
    for k, frame in enumerate(read_frames(kitchen_bag, cfg.topics)):
        m.add_frame(frame)
        if k == 9:
            break
    s = m.stats
    assert s.keyframes >= 2
    assert len(s.keyframe_cpu_seconds) == len(s.keyframe_seconds) == s.keyframes
    assert min(s.keyframe_cpu_seconds) > 0
