"""Guards for mutants that survived the project's tests (mutation run 43, seed 2512053).

Each test checks the project against something outside its own bookkeeping (the documented error
contract that the CLI and nodes rely on, the file system and SQLite read back, torch's own gradient
norms, diagnostic_msgs' levels, hand computations), and fails on the surviving mutant it is
named after while passing on the real code.
"""

from __future__ import annotations

import pytest

from gs_mapping.errors import ConfigError
from gs_mapping.sync import ApproximateTimeSynchronizer


def test_one_topic_given_twice_to_the_synchroniser_is_a_one_line_configuration_error():
    """Outside thing: the CLI and the nodes turn a ConfigError into one line naming the mistake
    (README / docs: configuration mistakes are reported, not raised as tracebacks); a synchroniser
    fed the same topic as colour and depth is exactly such a mistake, and the message names the
    topic given twice. A plain ValueError (mutant: sync.py:83 raising ValueError) passes
    test_sync_approximate's ``pytest.raises(ValueError)`` but escapes the ConfigError handlers."""
    with pytest.raises(ConfigError, match="/camera/image_raw"):
        ApproximateTimeSynchronizer(["/camera/image_raw", "/camera/image_raw"], 5, 0.01)
    with pytest.raises(ConfigError, match="distinct: b given more than once"):
        ApproximateTimeSynchronizer(["a", "b", "b"], 5, 0.01)


def test_a_failed_vehicle_compaction_keeps_ingesting_and_the_log_stays_complete(tmp_path, monkeypatch):
    """Outside thing: the SQLite store itself (read back with the sqlite3 module). Compaction only
    replaces a vehicle's log by a snapshot (docs/fleet.md); when the store refuses it
    (FleetStoreError: disk full, a locked file) the log rows already written are the complete
    record, so the server must keep taking containers: after a refused compaction at delta 12
    (compact_after 2), delta 13 is still logged and the server has not stopped ingest.
    (Mutant map_server_node.py:415 importing only Row: the except clause raises NameError.)"""
    import sqlite3

    import numpy as np
    from synthetic_maps import synthetic_map

    from gs_map_share.delta import encode_delta
    from gs_map_share.fleet_store import FleetStore, FleetStoreError
    from gs_map_share.quantize import QuantParams, to_qmap
    from gs_map_share.snapshot import encode_snapshot
    from gs_mapping.messages import bytes_to_uint8_multiarray
    from gs_mapping.nodes.map_server_node import MapServerNode, MapServerNodeConfig
    from gs_mapping.runtime.replay import ReplayBus

    params = QuantParams.from_quality(3)
    full = to_qmap(synthetic_map(400, 0, seed=3), params).take(np.arange(50))
    full.ids = np.arange(1, 51, dtype=np.uint64)
    states = [full.take(np.arange(20 + 10 * k)) for k in range(4)]
    stream = [encode_snapshot(states[0], params, map_id=1, seq=10, n_levels=1, frame_id="map")[0]]
    stream += [
        encode_delta(states[k - 1], states[k], params, map_id=1, seq=10 + k, base_seq=9 + k)[0]
        for k in (1, 2, 3)
    ]

    def refuse(self, *a, **k):
        raise FleetStoreError("database or disk is full")

    monkeypatch.setattr(FleetStore, "compact_vehicle", refuse)
    store = tmp_path / "fleet.sqlite3"
    bus = ReplayBus()
    server = MapServerNode(
        bus.context("map_server_node"),
        {"map_server_node": MapServerNodeConfig(store_path=str(store), compact_after=2, global_period_s=0.0)},
    )
    try:
        for seq, data in zip((10, 11, 12, 13), stream, strict=True):
            topic = "map_snapshot" if seq == 10 else "map_delta"
            bus.inject(f"/vehicle1/mapper_node/{topic}", bytes_to_uint8_multiarray(data), bus.now_ns + 1000)
    finally:
        server.close()
    with sqlite3.connect(store) as db:
        seqs = [r[0] for r in db.execute("SELECT seq FROM vehicle_log ORDER BY seq")]
    assert seqs == [10, 11, 12, 13]
    assert not server.storage_failed


def test_a_drop_warns_in_one_diagnostics_report_and_the_next_quiet_report_is_ok_again():
    """Outside thing: diagnostic_msgs/DiagnosticStatus (OK = 0, WARN = 1 in the .msg) and ROS 2
    diagnostic_updater's windowed statuses: a fault is reported in the window it happened in, and a
    later window without new faults reports OK (the counts stay in the values). Published message by
    message: drop → WARN; nothing new → OK; another drop → WARN; quiet → OK.
    (Mutant diagnostics.py:176 not remembering what was reported: WARN forever after one drop.)"""
    from gs_mapping.messages.factory import default_factory
    from gs_mapping.nodes.diagnostics import NodeDiagnostics

    msg_ok, msg_warn = 0, 1  # diagnostic_msgs/msg/DiagnosticStatus.msg: byte OK=0, byte WARN=1
    diag = NodeDiagnostics("mapper_node")
    factory = default_factory()

    def report(t):
        (status,) = diag.to_message(factory, t * 10**9).status
        return int(status.level), {kv.key: kv.value for kv in status.values}.get("dropped no_tf")

    assert report(1)[0] == msg_ok
    diag.drop("no_tf", "frame 'camera' unknown")
    assert report(2) == (msg_warn, "1")
    assert report(3) == (msg_ok, "1")
    diag.drop("no_tf", "frame 'camera' unknown")
    assert report(4)[0] == msg_warn
    assert report(5) == (msg_ok, "2")


def test_a_started_over_run_without_the_swap_installs_its_files_one_by_one(tmp_path):
    """Outside thing: the file system, read back. A run started over in a folder that cannot be
    swapped whole (a mount point, a read-only parent: swap False) stages its files inside and, at
    its first checkpoint, puts them in the old ones' places one by one: afterwards the folder holds
    the new run's last.pt / metrics.jsonl bytes, the old run's files the new run did not write are
    gone (no mix of two runs), the user's own file is untouched and no staging folder is left.
    (Mutant train.py:356 dropping the os.replace: the new run's files never arrive.)"""
    pytest.importorskip("torch")
    from gsmap_hd.train import _RunFiles

    out = tmp_path / "run"
    out.mkdir()
    for name, data in {
        "last.pt": b"old-last",
        "model.pt": b"old-model",
        "metrics.jsonl": b'{"step": 9}\n',
        "notes.txt": b"mine",
    }.items():
        (out / name).write_bytes(data)
    run = _RunFiles(out, start_over=True, swap=False)
    assert run.dir != out and run.dir.parent == out
    (run.dir / "last.pt").write_bytes(b"new-last")
    (run.dir / "metrics.jsonl").write_bytes(b'{"step": 1}\n')
    assert (out / "last.pt").read_bytes() == b"old-last"  # before the checkpoint: the old run intact
    run.checkpointed()
    assert sorted(p.name for p in out.iterdir()) == ["last.pt", "metrics.jsonl", "notes.txt"]
    assert (out / "last.pt").read_bytes() == b"new-last"
    assert (out / "metrics.jsonl").read_bytes() == b'{"step": 1}\n'
    assert (out / "notes.txt").read_bytes() == b"mine"
    assert run.dir == out


def test_depth_naming_the_colour_camera_info_gets_it_from_the_one_subscription():
    """Outside thing: a registered RGB-D driver's topics (e.g. realsense2_camera with
    align_depth: the aligned depth's camera_info is the colour's K), written by hand: with
    mapper.topics.depth_camera_info set to the colour's CameraInfo topic, one CameraInfo message on
    that topic is both the colour's and the depth's (one subscription, counted once), so a
    colour/depth pair at its stamp finds both with that K and waits for nothing.
    (Mutant mapper_node.py:141 never taking the one message in both roles: the depth waits for a
    CameraInfo forever.)"""
    pytest.importorskip("torch")  # (the mapper renders with it)
    import numpy as np

    from gs_mapping.messages import CameraIntrinsics, intrinsics_to_camera_info
    from gs_mapping.nodes.mapper_node import MapperNode
    from gs_mapping.runtime.replay import ReplayBus

    bus = ReplayBus()
    cfg = MapperNode.load_config(None)
    cfg["mapper"].device = "cpu"
    t = cfg["mapper"].topics
    t.depth_camera_info = t.camera_info
    node = MapperNode(bus.context("mapper_node"), cfg)
    K = np.array([[30.0, 0, 16], [0, 30.0, 12], [0, 0, 1]])
    stamp = 100 * 10**6
    info = intrinsics_to_camera_info(
        CameraIntrinsics(32, 24, K, frame_id="color"), bus.factory, stamp_ns=stamp
    )
    bus.inject(t.camera_info, info, stamp)
    c, d, waiting = node._infos((info.header,), (info.header,), False)
    assert waiting == ""
    np.testing.assert_allclose(c.K, K)
    np.testing.assert_allclose(d.K, K)


def test_a_run_lock_that_cannot_be_created_is_a_one_line_data_error_with_the_os_reason(tmp_path):
    """Outside thing: the kernel's answer to open(2) (O_RDWR on a directory: EISDIR, strerror
    "Is a directory", taken from Python's own os.strerror). hd-train's lock file inside the run
    folder (not swappable: beside False) whose name is taken by a directory cannot be created:
    HDDataError (the CLI's one-line error) naming the lock path and the OS's reason, not a raw
    IsADirectoryError traceback.
    (Mutant train.py:285 without the try: the OSError escapes.)"""
    import errno
    import os

    pytest.importorskip("torch")
    from gsmap_hd.errors import HDDataError
    from gsmap_hd.train import _lock_run

    out = tmp_path / "run"
    (out / ".hd-train.lock").mkdir(parents=True)
    with pytest.raises(HDDataError) as info:
        fd = _lock_run(out, beside=False)
        os.close(fd)
    msg = str(info.value)
    assert str(out / ".hd-train.lock") in msg
    assert os.strerror(errno.EISDIR) in msg


def test_the_logged_grad_norm_is_the_mean_of_torch_s_norms_over_the_log_window(tmp_path, monkeypatch):
    """Outside thing: torch.nn.utils.clip_grad_norm_'s own return value (the total gradient norm
    before clipping), recorded at each step. metrics.jsonl logs every log_every steps the mean of
    the window (as it does the losses): 4 steps, log_every 2 → grad_norm of step 2 = mean of
    steps 1-2's norms, of step 4 = mean of steps 3-4's, by hand.
    (Mutant train.py:470 not accumulating: the last norm / 2.)"""
    import json

    torch = pytest.importorskip("torch")
    from test_hd_model_train import _cfg

    from gsmap_hd.train import train

    torch.set_num_threads(1)
    norms = []
    real = torch.nn.utils.clip_grad_norm_

    def recording(*a, **k):
        n = real(*a, **k)
        norms.append(float(n))
        return n

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", recording)
    train(
        _cfg(steps=4, warmup_steps=1, eval_every=0, log_every=2, checkpoint_every=4),
        tmp_path / "run",
        progress=False,
    )
    recs = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    logged = [(r["step"], r["grad_norm"]) for r in recs if "grad_norm" in r]
    assert len(norms) == 4 and len({round(n, 6) for n in norms}) > 1
    assert [s for s, _ in logged] == [2, 4]
    for (step, g), pair in zip(logged, (norms[0:2], norms[2:4]), strict=True):
        assert g == pytest.approx(sum(pair) / 2, rel=1e-6), f"step {step}"
