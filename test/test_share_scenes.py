"""The codec on scenes it did not make: implicit ids cost nothing, scale-relative presets are
unit-free, byte accounting is an explicit argument."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from synthetic_maps import smooth_colour_scene, synthetic_map

from gs_map_share.quantize import QuantParams, quantize
from gs_map_share.snapshot import decode_map, encode_map
from gs_mapping.gaussians import GaussianMap


def _scene(g: GaussianMap, order: np.ndarray, ids=None) -> GaussianMap:
    """``g``'s Gaussians in file order ``order``, as a reader builds them (no ids → implicit)."""
    return GaussianMap(
        g.sh_degree,
        means=g.means[order],
        quats=g.quats[order],
        log_scales=g.log_scales[order],
        opacity_logits=g.opacity_logits[order],
        sh=g.sh[order],
        ids=ids,
    )


def _rows(m: GaussianMap) -> np.ndarray:
    """Every Gaussian as one row of its float32 bytes, sorted: the map as a set."""
    a = np.concatenate(
        [m.means, m.quats, m.log_scales, m.opacity_logits[:, None], m.sh.reshape(len(m), -1)], axis=1
    )
    v = np.ascontiguousarray(a, np.float32).view(np.dtype((np.void, a.shape[1] * 4))).ravel()
    return np.sort(v)


def test_implicit_ids_cost_nothing_and_keep_every_gaussian():
    g = synthetic_map(4000, 1, seed=11)
    order = np.random.default_rng(0).permutation(len(g))  # a trainer's file order: not spatial
    implicit = _scene(g, order)
    explicit = _scene(g, order, ids=np.arange(1, len(g) + 1, dtype=np.uint64))
    assert implicit.ids_implicit and not explicit.ids_implicit
    p = QuantParams.from_quality(2)
    sizes = {}
    for name, m in (("implicit", implicit), ("explicit", explicit)):
        for levels in (1, 5):
            stats: dict = {}
            data, _ = encode_map(m, p, n_levels=levels, stats=stats)
            sizes[name, levels] = (len(data), stats.get("ids", 0))
            dec = decode_map(data)
            # the receiver holds the same Gaussians as the sender's quantised scene (as a set; the
            # implicit ids are renumbered 1..N in the codec's order)
            assert np.array_equal(_rows(dec), _rows(quantize(m, p)))
            assert np.array_equal(dec.ids, np.arange(1, len(g) + 1))
    assert sizes["explicit", 5][1] > 0.5 * len(g)  # the octree's ids in file order: a permutation
    for levels in (1, 5):
        assert sizes["implicit", levels][1] <= 8  # a constant stream: a few bytes
        assert sizes["implicit", levels][0] < sizes["explicit", levels][0]


def test_relative_presets_do_not_depend_on_the_unit():
    g = synthetic_map(3000, 0, seed=12)
    big = g.copy()
    big.means *= 64.0  # the same scene in units 64 times smaller (exact in float32)
    big.log_scales += np.float32(np.log(64.0))
    p, pb = (QuantParams.from_quality(2).relative_to(m) for m in (g, big))
    # (the median size comes from the scale codes, which the shift by log 64 rounds differently)
    assert np.isclose(pb.pos_step / p.pos_step, 64.0, rtol=1e-2)
    a, _ = encode_map(g, p, n_levels=1)
    b, _ = encode_map(big, pb, n_levels=1)
    assert abs(len(a) - len(b)) <= 0.01 * len(a)
    assert QuantParams.from_quality(2).pos_step == 0.001  # the metre presets are unchanged
    # scenes: one rotation bit fewer where the anisotropy tiers leave room (quality 0 has none)
    assert p.rot_bits == QuantParams.from_quality(2).rot_bits - 1
    assert QuantParams.from_quality(0).relative_to(g).rot_bits == QuantParams.from_quality(0).rot_bits


def test_scene_levels_of_detail_cost_little():
    # a scene many map tiles wide: in scale-relative mode its tile is wider, so the octree has room
    # above for coarse levels at the 1/16 ratio instead of forcing them to the finest depths
    g = synthetic_map(40000, 0, seed=3)
    p = QuantParams.from_quality(2).relative_to(g)
    # (a single level's colour travels in neighbour phases, which a parent's prediction leaves
    # nothing to gain in progressive leaves: 1.13 here, 1.10 without them; 1.23 with a map's tile)
    single, prog = (len(encode_map(g, p, n_levels=k)[0]) for k in (1, 5))
    assert prog < 1.16 * single
    narrow = replace(p, tile_bits=QuantParams.from_quality(2).tile_bits)  # a map's tile
    assert len(encode_map(g, narrow, n_levels=5)[0]) > 1.2 * single


@pytest.mark.parametrize("scene", ["sh2", "phased colour"])
def test_byte_accounting_is_an_explicit_return(scene):
    # every stream's bytes are counted, phased colour too: what is left is the header, the chunk
    # table and the choice bytes (~170 bytes here)
    g = synthetic_map(2000, 2, seed=13) if scene == "sh2" else smooth_colour_scene(5000, 13, 14)
    stats: dict = {}
    data, info = encode_map(g, QuantParams.from_quality(2), n_levels=1, stats=stats)
    assert {"op", "scale", "rot", "dc", "ids"} <= set(stats)
    assert len(data) - 400 < sum(stats.values()) <= len(data)
    again: dict = {}
    encode_map(g, QuantParams.from_quality(2), n_levels=1, stats=again)
    assert again == stats  # nothing accumulates between calls (no global)


def _palette_scene(n=6000, entries=300, seed=14, pal=None) -> GaussianMap:
    """A scene whose higher SH come from a small palette (as SOG stores them; ``pal``: this one)."""
    g = synthetic_map(n, 2, seed=seed)
    rng = np.random.default_rng(seed)
    pal = rng.normal(0, 0.3, (entries, 8, 3)).astype(np.float32) if pal is None else pal
    entries = len(pal)
    sh = g.sh.copy()
    sh[:, 1:] = pal[rng.integers(entries, size=n)]
    return _scene(
        GaussianMap(
            2, means=g.means, quats=g.quats, log_scales=g.log_scales, opacity_logits=g.opacity_logits, sh=sh
        ),
        np.arange(n),
    )


def test_sh_palette_is_found_and_exact(monkeypatch):
    from gs_map_share import section

    g = _palette_scene()
    p = QuantParams.from_quality(3)
    stats: dict = {}
    data, _ = encode_map(g, p, n_levels=1, stats=stats)
    assert "sh_palette_index" in stats
    assert np.array_equal(_rows(decode_map(data)), _rows(quantize(g, p)))
    monkeypatch.setattr(section, "PALETTE_MIN_ROWS", 1 << 40)  # the per-coefficient form
    direct, _ = encode_map(g, p, n_levels=1)
    assert len(data) < 0.75 * len(direct)
    assert np.array_equal(_rows(decode_map(direct)), _rows(quantize(g, p)))


def test_palette_sh_gets_a_finer_step_where_its_bits_are_shared():
    g = _palette_scene(8000, 1000, 16)
    pal = np.unique(g.sh[:, 1:].reshape(len(g), -1), axis=0)  # the source's palette
    p = QuantParams.from_quality(1)
    pp = p.for_shared_sh(g)
    assert np.isclose(pp.rest_step, p.rest_step * len(pal) / len(g) / 2)  # half K/n (version 11)
    assert pp.dc_step == p.dc_step / 2  # the DC's error then the larger: halved too
    assert replace(pp, rest_step=p.rest_step, dc_step=p.dc_step) == p  # nothing else moves
    err, size = {}, {}
    for name, q in (("preset", p), ("shared", pp)):
        data, _ = encode_map(g, q, n_levels=1)
        rest = decode_map(data).sh[:, 1:].reshape(len(g), -1)
        # each decoded Gaussian's higher SH against the source palette row it came from (the
        # nearest: the rows are far apart next to these steps)
        d = np.abs(rest[:, None, :] - pal[None, :, :]).max(axis=2).min(axis=1)
        err[name], size[name] = float(d.max()), len(data)
    assert err["shared"] <= pp.rest_step + 1e-6 < err["preset"] / 2  # degree 2 uses 2 × the step
    # 16× finer: ~4 bits more per coefficient, paid by the palette's 1000 rows, not by 8000 Gaussians
    assert size["shared"] < 1.25 * size["preset"]
    plain = synthetic_map(8000, 2, seed=17)  # per-Gaussian SH: no palette, the step is kept
    assert plain.sh_degree == 2 and p.for_shared_sh(plain) == p


def _palette_rows(k: int, n: int, seed: int) -> np.ndarray:
    """n rows drawn from k distinct ones (skewed use, a shuffled first-use order)."""
    rng = np.random.default_rng(seed)
    distinct = rng.integers(-40, 40, (k, 24)).astype(np.int32)
    return distinct[rng.zipf(1.5, n) % k]


def test_sh_palette_lists_rows_by_first_use_and_indexes_them_by_repeats():
    """The palette's rows come in order of first use; the flags mark exactly the Gaussians whose
    row was not met before, and each repeat names its own row, read back here with the plain
    stream decoder and contexts worked out from the format's text (octave of the rows seen)."""
    from gs_map_share import section
    from gs_map_share.bitio import Reader, Writer
    from gs_map_share.entropy import decode_stream

    rows = _palette_rows(300, 6000, 9)
    w = Writer()
    assert section._put_sh_palette(w, rows)
    r = Reader(w.getvalue(), "test")
    assert r.u8() == section.PALETTE_FIRST_USE
    k = r.varint()
    pal = np.zeros((24, k), np.int32)
    section._get_sh_cols(r, pal, np.full(24, 1 << 20))
    _, first = np.unique(rows, axis=0, return_index=True)
    assert np.array_equal(pal.T, rows[np.sort(first)])  # the distinct rows as first met
    flags = decode_stream(r, len(rows), signed=False).astype(bool)
    met = set()
    expected = []
    for row in map(bytes, rows):
        expected.append(row not in met)
        met.add(row)
    assert np.array_equal(flags, expected)
    seen = (np.cumsum(flags) - flags)[~flags]
    ctx = np.array([int(s).bit_length() - 1 for s in seen])  # K = 300 < 2**15: no octave merged
    rep = decode_stream(r, len(seen), signed=False, ctx=ctx, n_ctx=(k.bit_length() - 1) + 1)
    r.end()
    idx = np.empty(len(rows), np.int64)
    idx[flags] = np.arange(k)
    idx[~flags] = rep
    assert np.array_equal(pal.T[idx], rows)


def test_sh_palette_first_uses_cost_less_than_the_indices_entropy():
    """Rows by first use drop the log2(K!) bits of a free row order: the index streams together
    take less than the n · H(index) bits any per-index code of a fixed order needs."""
    from gs_map_share import section
    from gs_map_share.bitio import Writer

    rng = np.random.default_rng(4)
    use = rng.integers(0, 2000, 16000)  # uniform use: H(index) ≈ 10.9 bits, log2(K!)/n ≈ 1.2
    w = Writer()
    w.stats = {}
    idx = _first_use_order(use)
    section._put_first_uses(w, *section._first_uses(idx, int(idx.max()) + 1))
    p = np.bincount(idx) / len(idx)
    entropy_bytes = len(use) * float(-(p * np.log2(p)).sum()) / 8
    assert w.stats["sh_palette_index"] < entropy_bytes - 0.08 * len(use)


def test_sh_palette_takes_most_used_first_where_popular_rows_come_late():
    """Rows met in first-use order but used mostly late (a few popular rows first met at the end)
    cost more by first use than by rank of use: the encoder takes the smaller form, by actual
    bytes too, and either decodes to the rows."""
    from gs_map_share import section
    from gs_map_share.bitio import Writer

    rng = np.random.default_rng(6)
    distinct = rng.integers(-40, 40, (1000, 24)).astype(np.int32)
    rare = np.arange(10, 1000)
    use = np.r_[rng.permutation(np.repeat(rare, 2)), rng.integers(0, 10, 18000)]  # popular rows last
    forms = {}
    for name, order in (("late", np.arange(len(use))), ("spread", rng.permutation(len(use)))):
        rows = distinct[use[order]]
        w = Writer()
        w.stats = {}
        assert section._put_sh_palette(w, rows)
        forms[name] = w.getvalue()[0]
        idx = _first_use_order(use[order])
        first_use = Writer()
        section._put_first_uses(first_use, *section._first_uses(idx, 1000))
        by_use = Writer()
        rank = np.argsort(np.argsort(-np.bincount(idx), kind="stable"))
        section._put(by_use, rank[idx], signed=False)
        smaller = (
            section.PALETTE_FIRST_USE
            if len(first_use.getvalue()) < len(by_use.getvalue())
            else section.PALETTE_MODE
        )
        assert forms[name] == smaller, (name, len(first_use.getvalue()), len(by_use.getvalue()))
    assert forms == {"late": section.PALETTE_MODE, "spread": section.PALETTE_FIRST_USE}
    # a map of that use in id order (the order its higher SH travel in), encoded and decoded: the
    # rows most used first, the map quantised
    g = synthetic_map(len(use), 2, seed=7)
    sh = g.sh.copy()
    sh[:, 1:] = rng.normal(0, 0.3, (1000, 8, 3)).astype(np.float32)[use]
    scene = _scene(replace(g, sh=sh), np.arange(len(use)), ids=np.arange(1, len(use) + 1))
    p = QuantParams.from_quality(3)
    calls = []
    real = section._put_first_uses
    section._put_first_uses = lambda *a: calls.append(1) or real(*a)
    try:
        data, _ = encode_map(scene, p, n_levels=1)
    finally:
        section._put_first_uses = real
    assert not calls and np.array_equal(_rows(decode_map(data)), _rows(quantize(scene, p)))


def _first_use_order(idx: np.ndarray) -> np.ndarray:
    """``idx`` relabelled so that labels appear in increasing order of first use."""
    _, first = np.unique(idx, return_index=True)
    label = np.empty(idx.max() + 1, np.int64)
    label[idx[np.sort(first)]] = np.arange(len(first))
    return label[idx]


@pytest.mark.parametrize(
    "flags, repeats, why",
    [
        ([0, 1, 1, 1], [0], "before its first use"),  # the first Gaussian cannot repeat a row
        ([1, 1, 0, 0], [0, 1], "first uses"),  # 2 new rows where K = 3
        ([1, 1, 1, 0, 0], [1, 3], "beyond"),  # row 3 does not exist (K = 3)
        ([1, 1, 0, 1, 0], [2, 0], "before its first use"),  # row 2 is met after its repeat
        ([1, 0, 1, 1, 0], [1, 0], "before its first use"),  # row 1 is not met before the 2nd Gaussian
        ([1, 2, 1, 0], [0], "beyond"),  # a flag of 2
    ],
)
def test_sh_palette_first_uses_refuse_what_they_cannot_mean(flags, repeats, why):
    from gs_map_share import section
    from gs_map_share.bitio import Reader, Writer
    from gs_map_share.entropy import put_stream
    from gs_map_share.errors import DecodeError

    k = 3
    w = Writer()
    put_stream(w, np.array(flags), signed=False)
    seen = (np.cumsum(np.array(flags) > 0) - (np.array(flags) > 0))[np.array(flags) == 0]
    ctx, n_ctx = section._seen_contexts(np.maximum(seen, 1), k)
    put_stream(w, np.array(repeats), signed=False, ctx=ctx[: len(repeats)], n_ctx=n_ctx)
    with pytest.raises(DecodeError, match=why):
        section._get_first_uses(Reader(w.getvalue(), "test"), len(flags), k)


def test_sh_palette_seen_contexts_keep_to_the_compiled_decoder():
    """Octaves of the rows seen (1 ≤ s ≤ K), the lowest merged into context 0 so that at most 16
    remain: the compiled decoder's limit."""
    from gs_map_share import section
    from gs_map_share.entropy import MAX_COMPILED_CONTEXTS

    for k in (1, 2, 3, 1 << 15, (1 << 16) - 1, 1 << 16, 1 << 20):
        seen = np.unique(np.r_[np.geomspace(1, k, 300).astype(np.int64), [1, 2, 3], k].clip(1, k))
        ctx, n_ctx = section._seen_contexts(seen, k)
        octave = np.array([int(s).bit_length() - 1 for s in seen])
        low = max(0, (k.bit_length() - 1) - (MAX_COMPILED_CONTEXTS - 1))
        assert n_ctx == octave.max() - low + 1 <= MAX_COMPILED_CONTEXTS
        assert np.array_equal(ctx, np.maximum(octave - low, 0))


def test_sh_palette_fuzz_only_decode_errors():
    from gs_map_share.container import reseal
    from gs_map_share.errors import DecodeError

    data, _ = encode_map(_palette_scene(5000, 200, 15), QuantParams.from_quality(2), n_levels=1)
    rng = np.random.default_rng(3)
    start = len(data) // 2  # the leaves' attribute and SH streams
    for _ in range(300):
        b = bytearray(data)
        for _ in range(rng.integers(1, 4)):
            b[rng.integers(start, len(b))] ^= 1 << int(rng.integers(8))
        try:
            decode_map(reseal(bytes(b)))
        except DecodeError:
            pass


def _derived(m: GaussianMap, quality: int) -> QuantParams:
    """The parameters ``gs-mapping encode --relative`` derives for a scene."""
    return QuantParams.from_quality(quality).relative_to(m).for_shared_sh(m)


def test_a_decoded_scene_re_encodes_to_the_same_bytes():
    """Encode a scene with derived parameters (scale-relative step, palette SH step), decode it,
    encode the decoded map the same way: the same parameters and the same bytes — the steps
    derive from what survives quantisation (scale codes; a palette factor of a power of two)."""
    scenes = [_scene(synthetic_map(3000, 0, seed=13), np.arange(3000)), _palette_scene(8000, 600, 14)]
    for scene in scenes:
        for quality in (0, 2):
            p = _derived(scene, quality)
            for levels in (1, 5):
                data, _ = encode_map(scene, p, n_levels=levels)
                decoded = decode_map(data)
                assert _derived(decoded, quality) == p
                assert encode_map(decoded, p, n_levels=levels)[0] == data
    assert (
        _derived(scenes[1], 2).rest_step == QuantParams.from_quality(2).rest_step / 32
    )  # 600/8000 ≈ 2**-3.7, halved


def test_a_palette_that_quantisation_merges_re_encodes_to_the_same_map():
    """Palette rows in near pairs (1e-4 apart) merge when quantised: the decoded map has half the
    rows, derives a step as fine or finer by a power of two, and re-encodes to the same values."""
    rng = np.random.default_rng(6)
    palette = rng.normal(0, 0.3, (1000, 8, 3)).astype(np.float32)
    palette[500:] = palette[:500] + rng.normal(0, 1e-4, (500, 8, 3)).astype(np.float32)
    scene = _palette_scene(8000, pal=palette, seed=15)
    p = _derived(scene, 2)
    decoded = decode_map(encode_map(scene, p)[0])
    p2 = _derived(decoded, 2)
    assert p2.rest_step <= p.rest_step and np.log2(p.rest_step / p2.rest_step) % 1 == 0
    again = decode_map(encode_map(decoded, p2)[0])
    assert np.array_equal(_rows(again), _rows(decoded))


def test_match_ids_pairs_equal_gaussians_and_numbers_the_rest_above():
    """Content-matched ids: equal quantised Gaussians pair up in order (duplicates too), the rest
    get fresh ids above the old map's in the new map's order; the result is sorted by id."""
    from gs_map_share.delta import match_ids
    from gs_map_share.quantize import to_qmap

    g = synthetic_map(6, 1, seed=3)
    p = QuantParams.from_quality(2)
    old = to_qmap(_scene(g, np.array([0, 0, 0, 1, 2, 3]), ids=np.array([5, 6, 7, 9, 10, 20], np.uint64)), p)
    new = to_qmap(_scene(g, np.array([4, 3, 0, 0, 5, 1])), p)
    got = match_ids(old, new)
    assert got.ids.tolist() == [5, 6, 9, 20, 21, 22]
    assert np.array_equal(got.pos, new.pos[[2, 3, 5, 1, 0, 4]])
    assert match_ids(old.take(np.zeros(0, np.int64)), new).ids.tolist() == [1, 2, 3, 4, 5, 6]


def test_a_scale_relative_step_beyond_the_lattice_bounds_is_refused_not_clamped():
    """A relative step outside QuantParams' [1e-9, 1e6] is an error naming the scaling, not a step
    silently clamped to the bound (which would not be the step asked for)."""
    from gs_map_share.errors import EncodeError

    g = synthetic_map(500, 0, seed=3)
    g.log_scales[:] = np.log(1e-3)  # Gaussians of 1 mm: the step scales by 1e-3 / 0.1
    with pytest.raises(EncodeError, match=r"scale-relative position step 9\.75e-12 .* outside"):
        QuantParams.from_quality(2, pos_step=1e-9).relative_to(g)
    assert QuantParams.from_quality(2, pos_step=1e-6).relative_to(g).pos_step == pytest.approx(
        9.75e-9, rel=1e-3
    )
