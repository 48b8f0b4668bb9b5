"""The torch working copy ⇄ GaussianMap sync: change tracking by id, and the hard cap."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gs_mapping.gaussians import GaussianMap
from gs_mapping.mapping.densify import enforce_cap
from gs_mapping.mapping.params import FIELDS, TorchGaussians


def _random(n, rng, sh_degree=0):
    q = rng.standard_normal((n, 4)).astype(np.float32)
    return {
        "means": rng.standard_normal((n, 3)).astype(np.float32),
        "quats": q / np.linalg.norm(q, axis=1, keepdims=True),
        "log_scales": rng.uniform(-4, -1, (n, 3)).astype(np.float32),
        "opacity_logits": rng.standard_normal(n).astype(np.float32),
        "sh": rng.standard_normal((n, (sh_degree + 1) ** 2, 3)).astype(np.float32),
    }


def _assert_same(p: TorchGaussians, g: GaussianMap):
    assert np.array_equal(p.ids, g.ids)
    for name in FIELDS:
        assert np.array_equal(p.numpy(name), getattr(g, name)), name


def test_sync_reports_added_updated_removed():
    rng = np.random.default_rng(0)
    g = GaussianMap(sh_degree=1)
    p = TorchGaussians(1)
    p.append(**_random(10, rng, 1))
    assert p.sync_to(g) == {"added": 10, "updated": 0, "removed": 0}
    ch = g.take_changes()
    assert ch.added.tolist() == g.ids.tolist() and len(ch.updated) == 0 and len(ch.removed) == 0
    _assert_same(p, g)

    ids_before = g.ids.copy()
    with torch.no_grad():
        p.sh[2, 0, 0] += 1.0  # update row 2
        p.means[5] += 0.5  # update row 5 (moves)
    keep = np.ones(10, bool)
    keep[[0, 7]] = False
    p.keep(keep)  # remove two
    p.append(**_random(3, rng, 1))  # add three
    assert p.sync_to(g) == {"added": 3, "updated": 2, "removed": 2}
    ch = g.take_changes()
    assert ch.removed.tolist() == sorted(ids_before[[0, 7]].tolist())
    assert ch.updated.tolist() == sorted(ids_before[[2, 5]].tolist())
    assert len(ch.added) == 3 and ch.added.min() > ids_before.max()
    _assert_same(p, g)
    # nothing changed → nothing reported
    p.sync_to(g)
    assert g.take_changes().empty


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 8), st.integers(0, 2**31 - 1), st.booleans()), min_size=1, max_size=6)
)
def test_sync_keeps_map_equal_to_working_copy(ops):
    """Any sequence of append / prune / edit, synced after each, leaves map == working copy and the
    change record consistent with the id sets."""
    g = GaussianMap()
    p = TorchGaussians(0)
    for n_new, seed, edit in ops:
        rng = np.random.default_rng(seed)
        before = set(g.ids.tolist())
        if len(p):
            p.keep(rng.random(len(p)) > 0.3)
        if edit and len(p):
            with torch.no_grad():
                p.opacity_logits[int(rng.integers(0, len(p)))] += 1.0
        p.append(**_random(n_new, rng))
        p.sync_to(g)
        _assert_same(p, g)
        after = set(g.ids.tolist())
        ch = g.take_changes()
        assert set(ch.added.tolist()) == after - before
        assert set(ch.removed.tolist()) == before - after
        assert set(ch.updated.tolist()) <= before & after


def test_cap_removes_least_contributing_first():
    rng = np.random.default_rng(1)
    p = TorchGaussians(0)
    p.append(**_random(20, rng))
    p.contrib = np.arange(20, dtype=float)[::-1].copy()  # row 19 contributes least
    ids_marker = p.numpy("means").copy()
    assert enforce_cap(p, 15) == 5
    assert len(p) == 15
    np.testing.assert_array_equal(p.numpy("means"), ids_marker[:15])
    assert enforce_cap(p, 15) == 0


def test_row_adam_moves_only_seen_rows_and_state_follows_rows():
    from gs_mapping.mapping.params import RowAdam

    rng = np.random.default_rng(2)
    p = TorchGaussians(0)
    p.append(**_random(6, rng))
    opt = RowAdam(p, {"means": 0.1, "sh": 0.1})
    before = p.numpy("means").copy()
    loss = (p.means[:3] ** 2).sum() + p.sh[:3].sum()  # rows 3..5 get zero gradient
    loss.backward()
    opt.step()
    after = p.numpy("means")
    assert np.all(np.abs(after[:3] - before[:3]) > 0.05)  # first Adam step ≈ lr · sign(grad)
    np.testing.assert_array_equal(after[3:], before[3:])
    assert p.adam_t.tolist() == [1, 1, 1, 0, 0, 0]
    m_row2 = p.adam_m["means"][2].clone()
    keep = np.array([False, True, True, True, True, True])
    p.keep(keep)
    p.append(**_random(2, rng))
    assert len(p.adam_t) == 7 and p.adam_t.tolist() == [1, 1, 0, 0, 0, 0, 0]
    assert torch.equal(p.adam_m["means"][1], m_row2)
    assert torch.count_nonzero(p.adam_v["sh"][5:]) == 0


def test_a_move_of_some_rows_moves_them_as_scipy_says_and_leaves_the_others_bit_for_bit():
    """TorchGaussians.move(T, rows) (a loaded map held apart while the rest moves into TF's map):
    the chosen rows' means are R p + t and their rotations R · R_q (scipy), the colour each shows
    along R d is the one it showed along d (render.sh's SH, the renderer's); every other row, with
    its Adam moments, is left exactly as it was."""
    from scipy.spatial.transform import Rotation

    from gs_mapping.render.sh import sh_to_color

    rng = np.random.default_rng(5)
    n, degree = 12, 2
    p = TorchGaussians(degree)
    p.append(**_random(n, rng, degree))
    for st_ in (p.adam_m, p.adam_v):
        for name in FIELDS:
            st_[name] = torch.as_tensor(rng.uniform(0.1, 1.0, tuple(st_[name].shape)), dtype=torch.float32)
    before = {name: p.numpy(name).copy() for name in FIELDS}
    adam = {(k, name): s[name].clone() for k, s in (("m", p.adam_m), ("v", p.adam_v)) for name in FIELDS}
    R = Rotation.from_rotvec([0.3, -1.1, 2.0]).as_matrix()
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, (40.0, -3.0, 0.5)
    rows = np.zeros(n, bool)
    rows[[0, 3, 4, 9]] = True
    p.move(T, rows)
    np.testing.assert_allclose(p.numpy("means")[rows], before["means"][rows] @ R.T + T[:3, 3], atol=1e-5)
    got = Rotation.from_quat(p.numpy("quats")[rows]).as_matrix()
    np.testing.assert_allclose(got, R @ Rotation.from_quat(before["quats"][rows]).as_matrix(), atol=1e-5)
    d = torch.as_tensor(rng.normal(size=(int(rows.sum()), 3)))
    seen = sh_to_color(degree, d, torch.as_tensor(before["sh"][rows]).double())
    turned = sh_to_color(degree, d @ torch.as_tensor(R).T, torch.as_tensor(p.numpy("sh")[rows]).double())
    torch.testing.assert_close(turned, seen, atol=1e-5, rtol=0)
    for name in FIELDS:
        np.testing.assert_array_equal(p.numpy(name)[~rows], before[name][~rows])
        for k, s in (("m", p.adam_m), ("v", p.adam_v)):
            assert torch.equal(s[name][~torch.as_tensor(rows)], adam[k, name][~torch.as_tensor(rows)])
    assert not torch.equal(
        p.adam_m["means"][torch.as_tensor(rows)], adam["m", "means"][torch.as_tensor(rows)]
    )
