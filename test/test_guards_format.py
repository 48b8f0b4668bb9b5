"""The wire format held still: containers written by earlier encoders (test/data/codec_golden_*.bin,
from test/data/make_codec_golden.py) still decode to the maps quantised. Encoder and decoder share
their predictors, so a changed predictor still round-trips: only a stored container shows that the
format moved (old files and other senders would then decode wrongly). The encoder may choose other
bytes for the same format (palette order, stream forms, each Gaussian's frame) without touching
these files. Nine generations: version 4 (``codec_golden_q*``: each Gaussian in its own frame,
``least_turned=False``), version 6 (``codec_golden_v6_q*``), version 7 (``codec_golden_v7_q*``:
short streams plain), version 8 (``codec_golden_v8_q*``: refined rotation codes, and a
single-level snapshot of near-grey colours whose blue channel takes the extrapolated prediction)
version 9 (``codec_golden_v9_q*``: and a scene of smooth colour, read without ids, whose colour
travels blue first in neighbour phases) and version 10 (``codec_golden_v10_q*``: octree tails, in
the scene in levels of detail and in a single-level piece of the real guitar scene) and version 11
(``codec_golden_v11_q*``: higher SH channels 0 and 2 from channel 1, per Gaussian and in a palette)
and version 12 (``codec_golden_v12_q*``: an SH palette by first use).
Each is compared with the map quantised on the lattices its header declares (the presets of its
day)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from synthetic_maps import sheen_scene, smooth_colour_scene, synthetic_map

from gs_map_share import quantize
from gs_map_share.container import TILES, unpack, unpack_header
from gs_map_share.delta import MapSender
from gs_map_share.entropy import Groups
from gs_map_share.quantize import QuantParams, to_qmap
from gs_map_share.receiver import APPLIED, SNAPSHOT, MapStore
from gs_map_share.snapshot import encode_map, spatial_ids
from gs_mapping.splat_formats import load_splats

DATA = Path(__file__).resolve().parent / "data"
QUALITIES = (0, 3)


def golden_maps(quality: int):
    g = synthetic_map(600, 1, seed=20 + quality)
    g2 = g.copy()
    rng = np.random.default_rng(quality)
    ids = g2.ids[rng.random(len(g2)) < 0.3]
    rows = g2.rows_of(ids)
    g2.update(ids, means=g2.means[rows] + np.float32(0.02), opacity_logits=g2.opacity_logits[rows] - 0.5)
    g2.remove(g2.ids[:40])
    return g, g2


def grey_map(quality: int):
    """Colours whose blue channel continues the step from red to green (the extrapolated
    prediction of version 8 wins)."""
    g, _ = golden_maps(quality)
    rng = np.random.default_rng(100 + quality)
    dc = g.sh[:, 0, :]
    dc[:, 2] = dc[:, 1] + 0.5 * (dc[:, 1] - dc[:, 0]) + rng.normal(0, 0.01, len(g)).astype(np.float32)
    return g


def scene_map(quality: int):
    """4,200 Gaussians of smooth colour read without ids (``smooth_colour_scene``)."""
    return smooth_colour_scene(4200, 40 + quality, 200 + quality)


def bright_map():
    """The quality-3 scene 10 DC units from grey: its first colour channel centred and phased."""
    return smooth_colour_scene(4200, 43, 203, offset=10.0)


def guitar_piece(shared_data: Path):
    """The first 3,000 Gaussians of the real guitar scene (read without ids): a single-level
    octree that ends in tails, with branches, over an odd number of depths."""
    return load_splats(shared_data / "splats" / "guitar.ply").subset(np.arange(3000))


def sheen_maps():
    """Version 11's cases: per-Gaussian higher SH in one level, and an SH palette in 3 levels."""
    return {"sheen": (sheen_scene(4200, 50), 1), "sheen_palette": (sheen_scene(6000, 60, palette=300), 3)}


def golden_containers() -> dict[str, bytes]:
    """Today's encoder's containers (the version-12 generation's names)."""
    out = {}
    for q in QUALITIES:
        g, g2 = golden_maps(q)
        sender = MapSender.from_map(g, QuantParams.from_quality(q), first_seq=7, map_id=3)
        out[f"v12_q{q}_snapshot"] = sender.snapshot()
        out[f"v12_q{q}_delta"], _ = sender.update(g2, g2.take_changes())
    # an SH palette by first use, under coarse levels
    scene, levels = sheen_maps()["sheen_palette"]
    out["v12_q3_sheen_palette"] = encode_map(scene, QuantParams.from_quality(3), n_levels=levels)[0]
    return out


# generation: (file prefix, whether each Gaussian took its least-turned frame, whether its rotation
# codes were refined: quantize.refine_rotations, 2026-12-04)
GENERATIONS = {
    4: ("codec_golden_", False, False),
    6: ("codec_golden_v6_", True, False),
    7: ("codec_golden_v7_", True, False),
    8: ("codec_golden_v8_", True, True),
    9: ("codec_golden_v9_", True, True),
    10: ("codec_golden_v10_", True, True),
    11: ("codec_golden_v11_", True, True),
    12: ("codec_golden_v12_", True, True),
}


@pytest.mark.parametrize("version", sorted(GENERATIONS))
@pytest.mark.parametrize("quality", QUALITIES)
def test_stored_containers_decode_to_the_maps_quantised(quality, version, monkeypatch):
    prefix, least_turned, refined = GENERATIONS[version]
    if not refined:  # their encoders rounded each component alone
        monkeypatch.setattr(quantize, "REFINE_ROUNDS", 0)
    g, g2 = golden_maps(quality)
    snapshot = (DATA / f"{prefix}q{quality}_snapshot.bin").read_bytes()
    assert struct.unpack_from("<H", snapshot, 4)[0] == version
    p = unpack_header(snapshot)[0].params  # the sender's lattices, as its header declares them
    store = MapStore()
    assert store.receive(snapshot) == SNAPSHOT
    assert store.state.equals(to_qmap(g, p, least_turned=least_turned))
    assert store.receive((DATA / f"{prefix}q{quality}_delta.bin").read_bytes()) == APPLIED
    assert store.state.equals(to_qmap(g2, p, least_turned=least_turned))


@pytest.mark.parametrize("quality", QUALITIES)
def test_stored_blue_extrapolation_decodes(quality, monkeypatch):
    """Version 8's blue-channel prediction, as stored: the grey snapshot decodes to its map
    quantised, and it does name that prediction (without it, decoding fails)."""
    from gs_map_share import section

    data = (DATA / f"codec_golden_v8_q{quality}_grey.bin").read_bytes()
    p = unpack_header(data)[0].params
    store = MapStore()
    assert store.receive(data) == SNAPSHOT
    assert store.state.equals(to_qmap(grey_map(quality), p))
    monkeypatch.setattr(section, "_extrapolated", lambda a, b: np.zeros(len(a), np.int64))
    assert MapStore().receive(data) != SNAPSHOT


@pytest.mark.parametrize("quality", QUALITIES)
def test_stored_neighbour_phases_and_blue_first_decode(quality, monkeypatch):
    """Version 9's colour, as stored: the scene decodes to its map quantised and numbered as the
    octree visits it; its colour streams do travel in phases, blue first (decoding fails with
    either taken away: phase contexts off by one bucket, or the order flag ignored)."""
    from gs_map_share import phases

    data = (DATA / f"codec_golden_v9_q{quality}_scene.bin").read_bytes()
    _decodes_to(data, scene_map(quality))
    with monkeypatch.context() as m:
        real = phases.contexts
        top = 2 * phases.BUCKETS - 1
        m.setattr(phases, "contexts", lambda *a: Groups(np.minimum(real(*a).ctx + 1, top), top + 1))
        assert MapStore().receive(data) != SNAPSHOT  # (the header's checksum refuses a wrong map)
    _fails_in_red_first(data, monkeypatch)


def test_stored_blue_first_with_levels_and_a_centred_phased_channel_decode(monkeypatch):
    """Version 9 as stored, two more forms: blue first in a section of 5 levels (parent and
    cross-channel predictions in that order), and a phased channel that is centred as well (the
    constant before the shift)."""
    from gs_map_share import section

    levels = (DATA / "codec_golden_v9_q3_scene5.bin").read_bytes()
    _decodes_to(levels, scene_map(3))
    _fails_in_red_first(levels, monkeypatch)
    bright = (DATA / "codec_golden_v9_q3_bright.bin").read_bytes()
    _decodes_to(bright, bright_map())
    with monkeypatch.context() as m:  # the stream does hold a centred phased channel
        seen = []
        real = section._get_pred
        m.setattr(section, "_get_pred", lambda r, *a, **k: seen.append(r.data[r.pos]) or real(r, *a, **k))
        assert MapStore().receive(bright) == SNAPSHOT
        assert section.CENTRED | section.PHASED in seen


def _decodes_to(data: bytes, scene) -> None:
    p = unpack_header(data)[0].params
    store = MapStore()
    assert store.receive(data) == SNAPSHOT
    assert store.state.equals(spatial_ids(to_qmap(scene, p), p))


def _fails_in_red_first(data: bytes, monkeypatch) -> None:
    """Decoding ``data`` with its blue-first flag read but the colour taken in R, G, B order
    fails (the header's checksum refuses the wrong map)."""
    from gs_map_share import section

    real = section._code_attrs
    with monkeypatch.context() as m:
        m.setattr(section, "_code_attrs", lambda *a, **k: real(*a, **{**k, "blue_first": False}))
        assert MapStore().receive(data) != SNAPSHOT


def test_stored_tails_decode(shared_data, monkeypatch):
    """Version 10's octree tails, as stored: a piece of the real guitar scene (one level; its
    tails cover an odd number of depths, some nodes branch) and the scene in levels of detail
    (each voxel's parent carried through the tails) decode to their maps quantised. Their TILES
    chunks do name tails, and decoding fails with the path's octants read one per value instead
    of in pairs."""
    from gs_map_share import tails

    cases = [("q2_guitar", guitar_piece(shared_data)), ("q3_scene5", scene_map(3))]
    for name, scene in cases:
        data = (DATA / f"codec_golden_v10_{name}.bin").read_bytes()
        assert tiles_header(data)[1] is not None
        _decodes_to(data, scene)
        with monkeypatch.context() as m:
            m.setattr(tails, "parts", lambda depths: [3] * depths)
            assert MapStore().receive(data) != SNAPSHOT


def tiles_header(data: bytes) -> tuple[list[int], int | None]:
    """The level depths and the tail depth (None: no tails) of a container's (only) section."""
    from gs_map_share.bitio import Reader
    from gs_map_share.section import TAILS

    r = Reader([c.data for c in unpack(data)[1] if c.type == TILES][0])
    r.varint()
    depths = [r.u8() for _ in range(r.varint())]
    if not r.u8() & TAILS:
        return depths, None
    r.raw(24 * r.varint())
    s = r.u8()
    r.end()
    return depths, s


def test_stored_sh_channel_prediction_decodes(monkeypatch):
    """Version 11's SH channels from channel 1, as stored: per Gaussian in one level and in an SH
    palette under coarse levels, each decodes to its map quantised; each does hold the form, and
    a decoder that does not know its byte refuses it."""
    from gs_map_share import section

    real = section._get_sh_cols
    seen: list[int] = []
    monkeypatch.setattr(section, "_get_sh_cols", lambda r, *a: seen.append(r.data[r.pos]) or real(r, *a))
    for name, (scene, _) in sheen_maps().items():
        data = (DATA / f"codec_golden_v11_q3_{name}.bin").read_bytes()
        seen.clear()
        _decodes_to(data, scene)
        assert section.CHANNEL_PRED in seen
        with monkeypatch.context() as m:
            m.setattr(section, "CHANNEL_PRED", 255)  # the byte then reads as an unknown stream mode
            assert MapStore().receive(data) != SNAPSHOT


def test_stored_sh_palette_by_first_use_decodes(monkeypatch):
    """Version 12's SH palette by first use, as stored under coarse levels, decodes to its map
    quantised; version 11's palette (byte 5, rows most used first) still does (above). The stored
    one does use the form: a decoder that does not know its byte refuses it."""
    from gs_map_share import section

    scene, _ = sheen_maps()["sheen_palette"]
    data = (DATA / "codec_golden_v12_q3_sheen_palette.bin").read_bytes()
    _decodes_to(data, scene)
    monkeypatch.setattr(section, "PALETTE_FIRST_USE", 255)  # byte 9 then reads as an unknown mode
    assert MapStore().receive(data) != SNAPSHOT
