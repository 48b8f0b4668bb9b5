"""apply_delta builds the new map in one pass (kept rows and added rows allocated once): the result is
the map the old algorithm made (``state.take(keep)``, the updates, then ``.merged(added)``), field by
field and dtype by dtype, for real deltas of a real scene, and the map the sender holds."""

from __future__ import annotations

import numpy as np
import pytest

from gs_map_share.bitio import Reader
from gs_map_share.container import CLEAR_TILES, LEVEL, REMOVED, TILES, UPDATED, unpack
from gs_map_share.delta import _WRITTEN, MapSender, _apply_updates, _get_ids, apply_delta, decode_delta
from gs_map_share.entropy import decode_stream
from gs_map_share.errors import DecodeError
from gs_map_share.quantize import QMap, QuantParams, find_ids, to_qmap
from gs_map_share.receiver import APPLIED, MapStore
from gs_map_share.section import decode_section, max_gaussians_for
from gs_mapping.gaussians import GaussianMap

P = QuantParams.from_quality(3)


def _old_apply(state: QMap, h, chunks, nbytes: int, changed: list) -> QMap:
    """The algorithm before the one-pass build, for valid deltas (no checks): a copy of the kept rows,
    the updates written into it, then ``merged`` with the added Gaussians."""
    cap = max_gaussians_for(nbytes)
    keep = np.ones(len(state), bool)
    for c in chunks:
        if c.type == CLEAR_TILES:
            r = Reader(c.data, "CLEAR_TILES")
            n = r.varint(r.remaining // 24)
            tiles = r.array("<i8", 3 * n).reshape(n, 3).astype(np.int64)
            hit = ((state.pos >> h.params.tile_bits)[:, None, :] == tiles[None]).all(-1).any(1)
            keep &= ~hit
            changed.append(state.ids[hit])
    for c in chunks:
        if c.type == REMOVED:
            ids = _get_ids(Reader(c.data, "REMOVED"), cap)
            keep[find_ids(state.ids, ids)[0]] = False
            changed.append(ids)
    shared = bool(keep.all())
    out = state.take(slice(None)) if shared else state.take(keep)
    own = set() if shared else set(_WRITTEN)
    for c in chunks:
        if c.type == UPDATED:
            r = Reader(c.data, "UPDATED")
            ids = _get_ids(r, cap)
            mask = decode_stream(r, len(ids), signed=False).astype(np.int64)
            _apply_updates(r, out, find_ids(out.ids, ids)[0], mask, own)
            changed.append(ids)
    section = [c for c in chunks if c.type in (TILES, LEVEL)]
    if section:
        added = decode_section(section, h.params, h.sh_degree, cap, None, "delta")
        out = out.merged(added)
        changed.append(added.ids)
    return out


def _same(a: QMap, b: QMap) -> None:
    assert a.sh_degree == b.sh_degree
    for f in ("ids", *QMap.FIELDS):
        x, y = getattr(a, f), getattr(b, f)
        assert x.dtype == y.dtype and x.shape == y.shape, f
        assert x.flags.c_contiguous == y.flags.c_contiguous, f
        assert np.array_equal(x, y), f


def _check(state: QMap, data: bytes, sender: MapSender, seen: set) -> QMap:
    """Apply ``data`` the new way and the old way; both must be the sender's map, ``state`` untouched."""
    h, chunks = unpack(data)
    seen.update(c.type for c in chunks)
    before = state.copy()
    changed, was = [], []
    new = apply_delta(state, h, chunks, len(data), changed=changed)
    old = _old_apply(state, h, chunks, len(data), was)
    _same(new, old)
    _same(state, before)
    assert [c.tolist() for c in changed] == [c.tolist() for c in was]
    assert new.equals(sender.shadow)
    # a state of other dtypes (all int64, the same checksum): the new map keeps them, as merged did
    wide = QMap(state.sh_degree, state.ids, *(getattr(state, f).astype(np.int64) for f in QMap.FIELDS))
    _same(apply_delta(wide, h, chunks, len(data)), _old_apply(wide, h, chunks, len(data), []))
    return new


@pytest.fixture(scope="module")
def guitar(shared_data):
    from gs_mapping.ply import load_ply

    return load_ply(shared_data / "splats" / "guitar.ply")


def test_random_deltas_of_a_real_scene_equal_the_old_build_and_the_sender(guitar):
    """Subsets of guitar.ply: each delta removes, adds (ids among the kept ones: placed between
    them, not only after), updates and clears whole tiles at random."""
    rng = np.random.default_rng(36)
    full = to_qmap(guitar, P)
    moved = guitar.copy()
    moved.means += rng.normal(0, 0.01, moved.means.shape).astype(np.float32)
    moved.opacity_logits += np.float32(0.3)
    full2 = to_qmap(moved, P)  # the same ids, other values: updates
    tiles = full.pos >> P.tile_bits
    member = rng.random(len(full)) < 0.5
    sender = MapSender(P, map_id=3, first_seq=1)
    sender.shadow = full.take(member)
    store = MapStore()
    assert store.receive(sender.snapshot()) is not None
    state, seen, kinds = store.state, set(), set()
    for k in range(12):
        pick = full2 if k % 2 else full
        member = member.copy()
        inside = np.flatnonzero(member)
        member[rng.choice(inside, int(rng.integers(1, len(inside) // 20)), replace=False)] = False
        if k % 3 == 0:  # every Gaussian of a few occupied tiles
            t = tiles[rng.choice(inside, 3)]
            member &= ~(tiles[:, None, :] == t[None]).all(-1).any(1)
        outside = np.flatnonzero(~member)
        if k != 4:  # (one delta removes only: the take without merge)
            member[rng.choice(outside, int(rng.integers(1, len(outside) // 20)), replace=False)] = True
        rows = np.flatnonzero(member)
        upd = rng.random(len(rows)) < 0.02
        new = full.take(rows)
        moved_rows = pick.take(rows[upd])
        new = new.with_rows(moved_rows, np.zeros(0, np.uint64))
        data, info = sender.delta_to(new)
        kinds.add((info.removed > 0, info.added > 0, info.updated > 0))
        state = _check(state, data, sender, seen)
        assert store.receive(data) == APPLIED
        _same(store.state, state)  # the receiver holds it too, checked by the delta's own CRC
    assert {CLEAR_TILES, REMOVED, UPDATED, TILES} <= seen
    assert (True, True, True) in kinds and (True, False, True) in kinds


def test_mapper_edits_with_sh_rest_equal_the_old_build(guitar):
    """The mapper's own path (GaussianMap edits, MapSender.update with its change record), with SH
    degree 1 added to the scene so that the ``rest`` field is built too; nothing removed: shared."""
    rng = np.random.default_rng(7)
    g = guitar.subset(np.arange(20000))
    sh = np.concatenate([g.sh, rng.normal(0, 0.1, (len(g), 3, 3)).astype(np.float32)], 1)
    g = GaussianMap(
        1, g.tile_size, g.means, g.quats, g.log_scales, g.opacity_logits, sh, ids=g.ids, levels=g.levels
    )
    g.next_id = int(g.ids[-1]) + 1
    sender = MapSender.from_map(g, P, map_id=1, first_seq=1)
    state, seen = sender.shadow, set()
    src = guitar.subset(np.arange(20000, 40000))
    src_sh = np.concatenate([src.sh, rng.normal(0, 0.1, (len(src), 3, 3)).astype(np.float32)], 1)
    for k in range(6):
        ids = rng.choice(g.ids, 300, replace=False)
        g.update(ids, means=g.means[g.rows_of(ids)] + 0.02)
        if k % 3 != 2:
            g.remove(rng.choice(g.ids, 200, replace=False))
        r = rng.choice(len(src), 200)
        g.add(src.means[r], src.quats[r], src.log_scales[r], src.opacity_logits[r], src_sh[r])
        data, _ = sender.update(g, g.take_changes())
        state = _check(state, data, sender, seen)
    assert {REMOVED, UPDATED, TILES} <= seen


def _guitar_pair(guitar):
    full = to_qmap(guitar.subset(np.arange(3000)), P)
    moved = guitar.subset(np.arange(3000))
    moved.means[10] += 0.05
    return full, to_qmap(moved, P)


def test_an_update_cannot_name_a_gaussian_the_same_delta_adds(guitar):
    """The added Gaussians are in the new arrays before the updates are applied: an update naming
    one is still refused as unknown (it is not in the map it applies to)."""
    full, moved = _guitar_pair(guitar)
    x = int(full.ids[10])
    base = full.take(full.ids != x)
    s1 = MapSender(P, map_id=1, first_seq=1)
    s1.shadow = full
    h1, c1 = unpack(s1.delta_to(moved)[0])  # updates x
    s2 = MapSender(P, map_id=1, first_seq=1)
    s2.shadow = base
    data2 = s2.delta_to(full)[0]  # adds x
    h2, c2 = unpack(data2)
    chunks = [c for c in c2 if c.type in (TILES, LEVEL)] + [c for c in c1 if c.type == UPDATED]
    with pytest.raises(DecodeError, match=f"delta updates unknown Gaussian id {x}$"):
        apply_delta(base, h2, chunks, len(data2))


def test_an_update_error_comes_before_the_section_error(guitar):
    """The section is decoded before the updates now; its errors still come after theirs."""
    full, moved = _guitar_pair(guitar)
    x, y = int(full.ids[10]), int(full.ids[20])
    s = MapSender(P, map_id=1, first_seq=1)
    s.shadow = full.take(full.ids != y)
    data = s.delta_to(moved)[0]  # updates x, adds y
    h, chunks = unpack(data)
    assert {UPDATED, TILES} <= {c.type for c in chunks}
    both = full.take(full.ids != x)  # x unknown to the update, y there already for the section
    with pytest.raises(DecodeError, match=f"delta updates unknown Gaussian id {x}$"):
        apply_delta(both, h, chunks, len(data))
    with pytest.raises(DecodeError, match=f"adds Gaussian id {y} that already exists"):
        apply_delta(full.take(full.ids != full.ids[30]), h, chunks, len(data))  # (the same room)
    _same(decode_delta(full.take(full.ids != y), data)[1], moved)  # its own base: applies


def test_a_delta_onto_an_empty_map_and_one_re_adding_what_it_removes(guitar):
    """Removing an id and adding it again in one delta is allowed (the encoder sends an update
    instead, a delta joined from two is one such): the add is checked against the kept rows."""
    full, _ = _guitar_pair(guitar)
    s = MapSender(P, map_id=1, first_seq=1, sh_degree=0)
    _check(QMap.empty(0), s.delta_to(full)[0], s, set())
    x = full.ids[[10, 11, 2500]]
    less = full.with_rows(None, x)
    _, rem = unpack(s.delta_to(less)[0])
    data = s.delta_to(full)[0]
    h, add = unpack(data)
    chunks = [c for c in rem if c.type == REMOVED] + [c for c in add if c.type in (TILES, LEVEL)]
    assert len(chunks) >= 2
    got = apply_delta(full, h, chunks, len(data), changed=(changed := []))
    _same(got, _old_apply(full, h, chunks, len(data), was := []))
    _same(got, full.copy())
    assert [c.tolist() for c in changed] == [c.tolist() for c in was] == [x.tolist(), x.tolist()]
