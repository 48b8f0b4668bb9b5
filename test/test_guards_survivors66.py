"""Guards for behaviours a mutation-testing pass (sixty-sixth round: about sixty lines sampled
uniformly over src/'s executable lines, seed 35) found unguarded. Each test compares with something
outside the line it guards: the formula worked by hand in the test, or the real component's
other path."""

from __future__ import annotations

import numpy as np
import pytest
from test_guards_survivors12 import one_message_mcap

# ------------------------------------------------------------------------------------------------
# gs_map_share/phases.py _neighbour_sums: faint neighbours weighed at the default faint_factor 2


def test_bucket_shift_weighs_faint_neighbours_at_the_default_factor_two():
    """``choose_shift`` with ``faint=2`` (QuantParams' default faint_factor): the median |sum| of the
    odd rows' neighbours (rows 1, 17, 33, …; each neighbour on the faint lattice, base context 1,
    counted twice), its bit length less three. Worked here independently of phases.py; the weighing
    must change the answer for this channel or the test would prove nothing."""
    from gs_map_share.phases import choose_shift

    rng = np.random.default_rng(66)
    n = 8192
    base = (rng.random(n) < 0.7).astype(np.int64)  # mostly faint rows
    res = rng.integers(-300, 301, n).astype(np.int64)

    def by_hand(faint: int) -> int:
        sums = []
        for r in range(1, n, 16):
            after = r + 1 if r + 1 < n else r - 1
            w = [faint if base[i] == 1 else 1 for i in (r - 1, after)]
            sums.append(abs(int(res[r - 1]) * w[0] + int(res[after]) * w[1]))
        return max(0, int(np.median(sums)).bit_length() - 3)

    assert by_hand(2) != by_hand(1)
    assert choose_shift(res, base, 2) == by_hand(2)
    assert choose_shift(res, base, 1) == by_hand(1)


# ------------------------------------------------------------------------------------------------
# gs_map_share/merge.py FleetMerge.offer: a buffered delta pushed out by a nearer one is counted


def test_a_buffered_delta_pushed_out_by_a_nearer_one_is_counted_dropped():
    """max_pending 1, a vehicle at 10: delta 13 waits; delta 12 arrives and, being nearer, pushes 13
    out (the buffer's count of others dropped, not the new one's own status). One 'dropped', two
    'buffered'; when 11 comes, 11 and 12 apply and the vehicle's map is the real state at 12."""
    from test_guards_survivors7 import GLOBAL_ID, PARAMS, _stream

    from gs_map_share.merge import FleetMerge

    m = FleetMerge(PARAMS, global_map_id=GLOBAL_ID, max_pending=1)
    stream, states = _stream(1, 3)
    for k in (0, 3, 2):
        m.offer(stream[k])
    v = m.vehicles[1]
    assert (v.counts["dropped"], v.counts["buffered"], len(v.pending)) == (1, 2, 1)
    m.offer(stream[1])
    assert v.seq == 12 and v.state.equals(states[2]) and v.counts["dropped"] == 1


# ------------------------------------------------------------------------------------------------
# gsmap_hd/train.py: a resume whose checkpoint's RNG state is a tensor of the wrong type


def test_a_resume_refuses_a_checkpoint_whose_rng_state_is_not_bytes(tmp_path, capsys):
    """last.pt's loop RNG state must be a uint8 tensor (torch.set_rng_state takes nothing else): one
    that is a tensor, but int64, is refused up front with the run's files as they were (exit 2, one
    line naming it), not taken and failed on later. The checkpoint is a real 1-step run's, its state
    rewritten with torch's own save."""
    torch = pytest.importorskip("torch")
    from test_guards_survivors63 import TRAIN

    from gs_mapping.cli import main

    out = tmp_path / "run"
    assert main(["hd-train", "--out", str(out), *TRAIN, "--steps", "1"]) == 0
    last = out / "last.pt"
    state = torch.load(last, weights_only=False)
    assert state["loop"]["rng"].dtype == torch.uint8  # the real one, before it is spoilt
    state["loop"]["rng"] = state["loop"]["rng"].to(torch.int64)
    torch.save(state, last)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    capsys.readouterr()
    assert main(["hd-train", "--out", str(out), *TRAIN, "--steps", "2", "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "RNG state is not a byte tensor" in err[0], err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


# ------------------------------------------------------------------------------------------------
# gs_map_share/snapshot.py check_ids: the encoder's own bound on ids, 2**63


def test_the_encoder_refuses_an_id_of_2_to_the_63_and_keeps_2_to_the_63_minus_1():
    """Ids are below 2**63 on the wire (the decoders refuse more): a map whose last id is 2**63 − 1
    encodes and decodes to the same ids; one whose last id is exactly 2**63 is refused when encoding
    (EncodeError naming the bound), not written as a container no decoder takes."""
    from test_guards_survivors7 import PARAMS, _vmap

    from gs_map_share.errors import EncodeError
    from gs_map_share.snapshot import decode_snapshot, encode_snapshot

    q = _vmap(5)
    for last, ok in (((1 << 63) - 1, True), (1 << 63, False)):
        q.ids = np.array([1, 2, 3, 4, last], np.uint64)
        if ok:
            data = encode_snapshot(q, PARAMS, map_id=1, seq=1, n_levels=1)[0]
            assert decode_snapshot(data)[1].ids.tolist() == [1, 2, 3, 4, last]
        else:
            with pytest.raises(EncodeError, match="below 2"):
                encode_snapshot(q, PARAMS, map_id=1, seq=1, n_levels=1)


# ------------------------------------------------------------------------------------------------
# gs_mapping/bag.py _check_mcap_framing: a Header record too short for its first string's length


def test_a_header_record_too_short_for_its_profile_is_named_corrupt(tmp_path):
    """MCAP spec: the Header record's body is profile (u32 length + bytes), then library. A real
    bag whose Header record claims 2 bytes (less than the profile's 4-byte length) is refused as
    "corrupt MCAP: … truncated before profile", naming the file, not some reader's own complaint
    about a short buffer."""
    import struct

    from gs_mapping.bag import BagReader
    from gs_mapping.errors import BagError

    out = tmp_path / "b"
    f = one_message_mcap(out)
    data = bytearray(f.read_bytes())
    assert data[8] == 0x01 and struct.unpack_from("<Q", data, 9)[0] >= 8  # the real Header record
    struct.pack_into("<Q", data, 9, 2)
    f.write_bytes(bytes(data))
    with pytest.raises(BagError, match=r"corrupt MCAP: MCAP header record truncated before profile") as err:
        BagReader(out).open()
    assert str(f) in str(err.value)


# ------------------------------------------------------------------------------------------------
# gs_mapping/bag.py _mcap_statistics: an MCAP file's own Statistics record against metadata.yaml


def test_an_mcap_bag_whose_metadata_lies_about_counts_takes_the_storage_counts(tmp_path, caplog):
    """metadata.yaml may lie: an MCAP bag's counts come from the file's own summary (Statistics
    record) and the disagreement is said. A real 3-message bag whose metadata.yaml claims 7: its
    topic reports 3, as many as are read from it."""
    import logging

    import yaml

    from gs_mapping.bag import BagReader, BagWriter, default_typestore

    store = default_typestore()
    out = tmp_path / "b"
    with BagWriter(out) as w:
        w.add_topic("/a", "std_msgs/msg/String")
        for k in range(3):
            w.write("/a", 10 + k, store.types["std_msgs/msg/String"](data="x"))
    assert list(out.glob("*.mcap"))
    meta_path = out / "metadata.yaml"
    meta = yaml.safe_load(meta_path.read_text())
    info = meta["rosbag2_bagfile_information"]
    info["message_count"] = 7
    for t in info["topics_with_message_count"]:
        t["message_count"] = 7
    meta_path.write_text(yaml.safe_dump(meta))
    with caplog.at_level(logging.WARNING, logger="gs_mapping.bag"), BagReader(out) as r:
        read = sum(1 for _ in r.messages())
        assert read == 3 and {t.name: t.count for t in r.topics} == {"/a": 3}
    assert "metadata.yaml disagrees with the storage" in caplog.text


# ------------------------------------------------------------------------------------------------
# gsmap_hd/eval_io.py parse_vector: "pts" that is not a list


@pytest.mark.parametrize("pts", [{"x": 1.0, "y": 2.0}, 3.5, "1,2"], ids=["object", "number", "string"])
def test_a_vector_whose_pts_is_not_a_list_is_named_as_such(pts):
    """A submission vector's "pts" must be a JSON list of [x, y]: an object, a number or a string
    there is one HDMapError naming ``pts`` and what it was, not a crash or another field's complaint."""
    from gsmap_hd.errors import HDMapError
    from gsmap_hd.eval_io import parse_vector

    with pytest.raises(HDMapError, match=rf"^v\.pts: expected a list of \[x, y\], got {type(pts).__name__}$"):
        parse_vector({"pts": pts, "type": 0}, "v", need_score=False)


# ------------------------------------------------------------------------------------------------
# gs_mapping/tf.py TFBuffer._mount: re-parenting a frame under its own descendant


@pytest.mark.timeout(60)
def test_remounting_a_frame_under_its_own_descendant_is_refused_and_the_tree_kept():
    """tf2 keeps a tree: map → odom → base_link, then a sample odom with parent base_link would close
    the loop odom → base_link → odom. It is refused (TFError naming the loop), and base_link is
    still posed through map → odom → base_link: 1 m + 2 m along x."""
    from gs_mapping.errors import TFError
    from gs_mapping.geometry import Transform, TransformStamped
    from gs_mapping.tf import TFBuffer

    S = 1_000_000_000

    def ts(parent, child, stamp, x):
        return TransformStamped(
            parent, child, stamp, Transform(np.array([x, 0.0, 0.0]), np.array([0, 0, 0, 1.0]))
        )

    buf = TFBuffer()
    buf.add(ts("map", "odom", S, 1.0), static=True)
    buf.add(ts("odom", "base_link", S, 2.0), static=True)
    with pytest.raises(TFError, match="would close a loop"):
        buf.add(ts("base_link", "odom", S, 0.5), static=True)
    assert np.allclose(buf.lookup("map", "base_link", S).translation, [3.0, 0.0, 0.0])


# ------------------------------------------------------------------------------------------------
# gs_mapping/output_files.py remove_made_folders: only this command's folders


def test_a_failed_command_removes_only_the_folders_it_made_itself(tmp_path):
    """One process, two commands that fail (a node, a test session): the first's new folder is
    removed; then the user makes that folder again, by hand, and a second command fails with an
    output elsewhere. Only the second's folder goes; the user's (empty) one is not the second's
    to remove."""
    from gs_mapping.output_files import check_output, remove_made_folders

    first = tmp_path / "first" / "deep"
    check_output(first / "map.ply")
    assert first.is_dir()
    remove_made_folders()
    assert not (tmp_path / "first").exists()
    first.mkdir(parents=True)  # the user's own, made outside check_output
    second = tmp_path / "second" / "deep"
    check_output(second / "map.ply")
    remove_made_folders()
    assert not (tmp_path / "second").exists() and first.is_dir()


# ------------------------------------------------------------------------------------------------
# gs_mapping/progress.py ProgressLines.line: the rate is this run's steps over its elapsed time


def test_a_progress_line_gives_this_runs_steps_per_second():
    """30 steps in 4 s (a clock given, so no real time) after resuming at 10: 7.5 frames/s (steps
    over seconds, not their product), and the ETA is the 60 left at that rate: 8 s."""
    from gs_mapping.progress import ProgressLines

    t = [100.0]
    p = ProgressLines(total=100, initial=10, unit="frames", interval_s=1e9, clock=lambda: t[0])
    p.update(30)
    line = p.line(104.0)
    assert "7.5 frames/s" in line and "ETA 00:08" in line, line
