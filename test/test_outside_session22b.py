"""Session 22's own checks of its new pieces against an independent reading.

- ``zstd_frames.inflate`` against the zstd module's one-shot ``decompress`` (which reads every frame
  of a stream, skippable ones skipped: RFC 8878 §3.1, as Niantic's ``ZSTD_decompress``), on streams
  of several frames, with a bound;
- ``sync.RecordingPairer`` against the ground truth of which colour and depth image belong to one
  camera frame, on random drives with dropped frames, jittered stamps and one stream logged late;
- a frame a node's timer retries (its CameraInfo of its stamp never came) that fails in a way no
  subscription would have let out (the mapper's optimiser out of memory) is contained, not raised
  out of the timer: under rclpy an exception out of a timer callback ends the process.
"""

from __future__ import annotations

import random

import pytest

# ------------------------------------------------------------------------------------------------
# zstd streams of several frames


def _zstd():
    from gs_mapping.zstd_frames import zstd

    return zstd


@pytest.mark.parametrize("seed", range(6))
def test_inflate_reads_every_frame_as_the_zstd_library_does(seed):
    """Random streams of 1-5 frames, some skippable, some written without a content size: inflate
    gives what the library's own one-shot decompress gives; a limit one byte short refuses (None)."""
    import struct

    from gs_mapping.zstd_frames import inflate

    zstd = _zstd()
    rng = random.Random(seed)
    stream, frames = b"", []
    for _ in range(rng.randint(1, 5)):
        if rng.random() < 0.3:  # a skippable frame (magic 0x184D2A5?)
            junk = bytes(rng.randrange(256) for _ in range(rng.randint(0, 40)))
            stream += struct.pack("<II", 0x184D2A50 + rng.randrange(16), len(junk)) + junk
        part = bytes(rng.randrange(4) for _ in range(rng.randint(0, 5000)))
        c = zstd.ZstdCompressor()
        stream += (
            c.compress(part, mode=zstd.ZstdCompressor.FLUSH_FRAME)
            if rng.random() < 0.5
            else zstd.compress(part)
        )
        frames.append(part)
    want = zstd.decompress(stream)
    assert want == b"".join(frames)
    assert inflate(stream, len(want)) == want
    if want:
        assert inflate(stream, len(want) - 1) is None


def test_inflate_refuses_a_cut_frame_and_bytes_that_are_no_frame():
    from gs_mapping.zstd_frames import ZstdError, inflate

    zstd = _zstd()
    one = zstd.compress(b"x" * 1000)
    with pytest.raises(ZstdError):
        zstd.decompress(one[:-3])  # (the library refuses it too)
    with pytest.raises(ZstdError):
        inflate(one[:-3], 10_000)
    with pytest.raises(ZstdError):
        inflate(one + b"garbage!", 10_000)


def test_a_message_compressed_bag_row_of_two_frames_reads_whole():
    """A zstd message row (what rosbag2's message compression writes) read by the bag reader's
    inflater: two frames are the concatenation, as zstd's decompress reads them."""
    from gs_mapping.bag import _zstd_decompress

    zstd = _zstd()
    data = zstd.compress(b"\x00\x01" * 700) + zstd.compress(b"\x02" * 300)
    assert _zstd_decompress(data, 1 << 20) == zstd.decompress(data)


# ------------------------------------------------------------------------------------------------
# pairing a finished recording


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize(
    "period, jitter, slop",
    [(33_333_333, 3_000_000, 10_000_000), (16_666_667, 1_000_000, 20_000_000)],
    ids=["30Hz-slop10ms", "60Hz-slop20ms"],
)
def test_recording_pairer_pairs_each_camera_frame_with_its_own_depth(seed, period, jitter, slop):
    """A camera at 30 Hz (jitter 3 ms, slop 10 ms) or 60 Hz (jitter 1 ms, the default slop of 20 ms:
    more than a frame period, so a neighbour's image is within it too): frame i's colour and depth
    are stamped i × period with independent jitter; 10 % of colour and 10 % of depth images are
    dropped; the depth stream is logged up to 40 messages late. Every frame whose two images both
    exist is paired with each other; at 60 Hz two neighbours' orphans may pair too."""
    from gs_mapping.sync import RecordingPairer

    rng = random.Random(seed)
    n = 300
    colour = [(i * period + rng.randint(-jitter, jitter), ("c", i)) for i in range(n) if rng.random() > 0.1]
    depth = [(i * period + rng.randint(-jitter, jitter), ("d", i)) for i in range(n) if rng.random() > 0.1]
    lag = rng.randint(0, 40)
    # the log: colour in order, depth in order, depth `lag` messages behind
    log, ci, di = [], 0, 0
    while ci < len(colour) or di < len(depth):
        if di < len(depth) and (ci >= len(colour) or ci >= di + lag):
            log.append((1, *depth[di]))
            di += 1
        else:
            log.append((0, *colour[ci]))
            ci += 1
    pairer = RecordingPairer(slop)
    pairs = []
    for stream, stamp, msg in log:
        pairs += pairer.add(stream, stamp, msg)
    pairs += pairer.finish()
    has_c, has_d = {i for _, (_, i) in colour}, {i for _, (_, i) in depth}
    assert all(c[0] == "c" and d[0] == "d" for c, d in pairs)
    own = {c[1] for c, d in pairs if c[1] == d[1]}
    assert own == has_c & has_d  # every frame with both images: its own two
    # any other pair is two orphans whose partners were dropped, each the other's nearest within
    # the slop (no stamp can tell them apart from a frame; only where the slop passes a period)
    others = [(c[1], d[1]) for c, d in pairs if c[1] != d[1]]
    assert all(i not in has_d and j not in has_c and abs(i - j) == 1 for i, j in others), others
    assert not others or slop > period - 2 * jitter
    assert pairer.dropped == len(colour) + len(depth) - 2 * len(pairs) and pairer.pending() == 0


# ------------------------------------------------------------------------------------------------
# a frame retried from a timer


def test_a_frame_the_diagnostics_timer_retries_is_contained_when_it_fails(kitchen_bag, monkeypatch):
    """mapper_node on the real kitchen recording: the first frame's CameraInfo is held back, so the
    frame waits; the diagnostics timer (node time past tf_wait_s) makes it with the CameraInfo
    there is. Its mapping step fails as the optimiser does when the GPU runs out of memory
    (torch.OutOfMemoryError is a RuntimeError) — injected here, being the one thing that cannot be
    had on this machine. The failure is counted in /diagnostics against the colour topic and the
    timer returns: under rclpy an exception out of a timer callback ends the node."""
    from conftest import use_kitchen_topics

    from gs_mapping.bag import BagReader
    from gs_mapping.nodes.mapper_node import MapperNode
    from gs_mapping.runtime.replay import ReplayBus

    bus = ReplayBus()
    cfg = MapperNode.load_config(None)
    use_kitchen_topics(cfg["mapper"].topics)
    node = MapperNode(bus.context("mapper_node"), cfg)
    t = node.cfg.topics
    with BagReader(kitchen_bag) as bag:
        msgs = list(bag.messages())
    info = next((m, s) for topic, s, m in msgs if topic == t.camera_info)
    for topic, s, m in msgs:
        if topic in (t.tf, t.tf_static):
            bus.inject(topic, m, s)
    color = next((m, s) for topic, s, m in msgs if topic == t.color)
    depth = min(((m, s) for topic, s, m in msgs if topic == t.depth), key=lambda ms: abs(ms[1] - color[1]))

    def out_of_memory(frame):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(node.mapper, "add_frame", out_of_memory)
    node.camera_infos._paired = True  # (a camera whose CameraInfos carry their images' stamps)
    m, s = info
    m.header.stamp.sec, m.header.stamp.nanosec = 1, 0  # an older CameraInfo: the frame's own is awaited
    bus.inject(t.camera_info, m, s)
    depth_info = t.depth_info()  # (the default 'auto': the depth topic's sibling, where recorded)
    if depth_info and depth_info != t.camera_info and any(x[0] == depth_info for x in msgs):
        topic, s_d, m_d = next(x for x in msgs if x[0] == depth_info)
        m_d.header.stamp.sec, m_d.header.stamp.nanosec = 1, 0
        bus.inject(topic, m_d, s_d)
    bus.inject(t.color, color[0], color[1])
    bus.inject(t.depth, depth[0], depth[1])
    assert node._before_info is not None  # waiting for the CameraInfo of its stamp
    bus.advance(bus.now_ns + int(2e9))  # the timer, past tf_wait_s
    assert node._before_info is None
    assert "out of memory" in node.diag.last_error
    assert node.diag.rejected.get(t.color, 0) == 1


def _pair_stream(events, slop_ns=20_000_000):
    from gs_mapping.sync import RecordingPairer

    pairer = RecordingPairer(slop_ns)
    pairs = []
    for stream, stamp, msg in events:
        pairs += pairer.add(stream, stamp, msg)
    return pairs + pairer.finish(), pairer.dropped


def test_recording_pairer_drops_a_lone_stamp_far_back_and_pairs_on():
    """A driver hiccup: one depth image stamped 0 in a 30 Hz drive at t = 100 s (its colour image
    dropped). The frames before and after it are all paired with their own; the lone one is dropped."""
    ms = 1_000_000
    events = []
    for k in range(10):
        s = 100_000 * ms + k * 33 * ms
        if k == 4:
            events.append((1, 0, "d_glitch"))
            continue
        events += [(0, s, f"c{k}"), (1, s + ms, f"d{k}")]
    pairs, dropped = _pair_stream(events)
    assert pairs == [(f"c{k}", f"d{k}") for k in range(10) if k != 4]
    assert dropped == 1


def test_recording_pairer_starts_a_new_take_when_only_one_stream_stepped_back_for_long():
    """Only the colour camera's clock is reset (its stamps restart at 0; depth's go on): once more
    than ``keep`` colour images wait aside for depth to step back too, the new take starts; no
    colour image of it finds a partner (depth is 100 s away), and nothing is kept for ever."""
    from gs_mapping.sync import RecordingPairer

    ms = 1_000_000
    pairer = RecordingPairer(20 * ms, keep=5)
    out = []
    for k in range(3):
        s = 100_000 * ms + k * 33 * ms
        out += pairer.add(0, s, f"c{k}") + pairer.add(1, s, f"d{k}")
    for k in range(20):
        out += pairer.add(0, k * 33 * ms, f"c'{k}") + pairer.add(1, 100_200 * ms + k * 33 * ms, f"d'{k}")
    out += pairer.finish()
    assert out[:3] == [("c0", "d0"), ("c1", "d1"), ("c2", "d2")] and len(out) == 3
    assert pairer.pending() == 0 and pairer.dropped == 40
