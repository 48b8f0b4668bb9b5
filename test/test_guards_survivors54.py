"""Lines of gsmap_hd (all of it) and gs_map_share's quantize, snapshot, palette, octree, section,
entropy, tails, phases, idorder, lanes and region modules whose breaking passed every test that
concerns them (mutation survey mut31c: about 45 lines drawn with ``random.Random(3103)``, weighted by
file length), each now guarded by a test that compares with something outside the component's own
bookkeeping: a hand computation, the rule a doc (docs/format.md, docs/hd_model.md, README) or a
module docstring states, or an independent projection/geometry written out in the test.

- region.py: a region request missing its position is a RegionError.
- section.py: the joint SH form's base digits and its 2..6 range (docs/format.md).
- entropy.py: a context holding exactly one value round-trips.
- quantize.py: a zero DC step is refused like the others.
- synthetic.py: dividers are painted solid or dashed (projected by hand into the image).
- backbone.py: ``stride`` is the measured downsampling.
- losses.py: the raster term is 0.8·BCE + 0.2·D-SSIM (docs/hd_model.md).
- predict_bag.py: an output that appears during the run is not replaced; the short-GT warning
  reads every GT vector.
- train.py: a resume with another --init-from is refused (docs/hd_model.md).
- infer.py: clip_to_region keeps the Gaussians whose centres (x, y) lie inside.
"""

from __future__ import annotations

import numpy as np
import pytest
from hd_tiny import tiny_config

from gs_map_share.bitio import Reader, Writer
from gs_map_share.entropy import decode_stream, encode_stream, put_stream
from gs_map_share.errors import DecodeError
from gs_map_share.region import RegionError, RegionRequest
from gs_map_share.section import _get_sh_joint


def _divider_paint(seed: int) -> list[float]:
    """Each divider (class 0) of a flat-road scene: the fraction of its points 5..25 m ahead whose
    pixel (projected by hand through the pinhole K and T_ego_cam) is painted white."""
    pytest.importorskip("torch")
    from gsmap_hd.synthetic import generate

    s = generate(seed, "front", 384, 192)
    img = s.images[0].astype(float).mean(-1)
    h, w = img.shape
    K, T = s.K[0], s.T_ego_cam[0]
    out = []
    for cls, p in s.elements:
        if cls != 0:
            continue
        cum = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(p, axis=0), axis=1))])
        st = np.arange(0.0, cum[-1], 0.25)
        x, y = np.interp(st, cum, p[:, 0]), np.interp(st, cum, p[:, 1])
        keep = (x > 5) & (x < 25)
        pts = np.stack([x[keep], y[keep], np.zeros(int(keep.sum()))], 1)
        cam = (pts - T[:3, 3]) @ T[:3, :3]  # ego → camera (optical: z forward)
        u = np.rint(K[0, 0] * cam[:, 0] / cam[:, 2] + K[0, 2]).astype(int)
        v = np.rint(K[1, 1] * cam[:, 1] / cam[:, 2] + K[1, 2]).astype(int)
        ok = (cam[:, 2] > 0) & (u >= 1) & (u < w - 1) & (v >= 1) & (v < h - 1)
        bright = [img[b - 1 : b + 2, a - 1 : a + 2].max() > 170 for a, b in zip(u[ok], v[ok], strict=True)]
        assert len(bright) > 40
        out.append(float(np.mean(bright)))
    return out


def test_synthetic_dividers_are_solid_or_dashed_paint():
    """gsmap_hd/synthetic.py:118 (``if period:`` negated to ``if not period:``): the flat-road
    scenes' dividers are painted (module docstring: "painted dividers (class 0, some dashed)"). Seen
    in the image by projecting each divider's ground-truth points by hand: a solid divider is white
    all along, a dashed one (9 m period) white on about half of it. The mutant
    leaves solid dividers unpainted and paints the dashed ones solid."""
    fracs = _divider_paint(2)  # (a three-lane road: one solid divider, one dashed)
    assert len(fracs) == 2
    solid = [f for f in fracs if f >= 0.97]
    dashed = [f for f in fracs if 0.3 <= f <= 0.7]
    assert len(solid) == len(dashed) == 1, fracs


@pytest.mark.parametrize("body", [b'{"y": 1.0}', b'{"radius_m": 5}', b"{}"])
def test_region_request_without_its_position_is_a_region_error(body):
    """gs_map_share/region.py:71 (``except TypeError`` of the request's construction changed to
    ``except KeyError``): a request missing a required field (x, y) is a request that cannot be
    answered, refused as RegionError (a ValueError, what the server catches), not a TypeError
    escaping from the dataclass."""
    with pytest.raises(RegionError, match="x"):
        RegionRequest.from_bytes(body, 100.0, 1 << 20)


def test_backbone_stride_is_the_measured_downsampling():
    """gsmap_hd/backbone.py:75 (ResNet50's ``self.stride = 32`` changed to 16): each backbone's
    ``stride`` is the factor its feature map is smaller than the image, measured here on a 64×96
    input (the module docstring: ResNet-50 C5 at stride 32, the small CNN 2^len(channels))."""
    torch = pytest.importorskip("torch")

    from gsmap_hd.backbone import ResNet50, SmallBackbone

    with torch.no_grad():
        for net in (ResNet50(4), SmallBackbone((8, 8, 8, 8), 4)):
            net.eval()
            out = net(torch.zeros(1, 3, 64, 96))
            assert (64 // out.shape[2], 96 // out.shape[3]) == (net.stride, net.stride)
    assert ResNet50(4).stride == 32


def test_raster_term_weights_bce_and_dssim_as_documented():
    """gsmap_hd/losses.py:85 (the BCE and D-SSIM weights swapped in the total): docs/hd_model.md
    gives the raster term as raster weight 1 with BCE 0.8 / D-SSIM 0.2; the total of a layer is
    cls_weight·focal + pts_weight·L1 + raster_weight·(0.8·BCE + 0.2·D-SSIM), written out here."""
    torch = pytest.importorskip("torch")

    from gsmap_hd.data import collate
    from gsmap_hd.losses import GSMapCriterion
    from gsmap_hd.model import GSMapModel
    from gsmap_hd.model_config import LossConfig
    from gsmap_hd.synthetic import generate

    torch.manual_seed(0)
    m = tiny_config()
    loss_cfg = LossConfig(raster_res=1.5, iou_cost_res=3.0)
    assert (loss_cfg.raster_weight, loss_cfg.bce_weight, loss_cfg.dssim_weight) == (1.0, 0.8, 0.2)
    batch = collate([generate(2, "front", 64, 32)], m, loss_cfg)
    with torch.no_grad():
        out = GSMapModel(m).eval()(*batch[:3])
        got = GSMapCriterion(m, loss_cfg).layer_loss(out["logits"][-1], out["params"][-1], batch[3])
    bce, dssim = float(got["bce"]), float(got["dssim"])
    assert bce > 0 and dssim > 0 and abs(bce - dssim) > 1e-3  # (a swap shows)
    want = (
        loss_cfg.cls_weight * float(got["cls"])
        + loss_cfg.pts_weight * float(got["pts"])
        + 0.8 * bce
        + 0.2 * dssim
    )
    assert float(got["total"]) == pytest.approx(want, rel=1e-5)


def _joint_form(base: int, symbols, escaped=()) -> np.ndarray:
    """docs/format.md's joint form of one SH coefficient, written byte by byte (u8 4, u8 B, the
    joint symbols, three signed streams of the escaped Gaussians), decoded."""
    w = Writer()
    w.u8(4)
    w.u8(base)
    put_stream(w, np.array(symbols, np.int64), signed=False)
    for c in range(3):
        put_stream(w, np.array([e[c] for e in escaped], np.int64), signed=True)
    out = np.zeros((3, len(symbols)), np.int32)
    _get_sh_joint(Reader(w.getvalue()), out, 100)
    return out


def test_joint_sh_form_digits_and_base_range():
    """gs_map_share/section.py:1046 (the ``raise`` of a joint SH base outside JOINT_BASES replaced
    with ``pass``): docs/format.md gives the joint form's base B as 2..6 and the channels' zig-zag
    values as B's digits of each symbol (channel 0 least significant), B³ marking an escape. Bases
    outside 2..6 are an error (a decoder that took them would read a container no encoder writes)."""
    # B = 3: 21 = 0 + 1·3 + 2·9 → zig-zag (0, 1, 2) → (0, −1, 1); 5 = 2 + 1·3 → (1, −1, 0); 27 = escape
    got = _joint_form(3, [21, 0, 27, 5], [(7, -8, 9)])
    np.testing.assert_array_equal(got, [[0, 0, 7, 1], [-1, 0, -8, -1], [1, 0, 9, 0]])
    for base in (1, 7, 9, 255):
        with pytest.raises(DecodeError, match="base"):
            _joint_form(base, [0, 0, 0])


def test_predict_bag_never_replaces_an_output_that_appeared_during_the_run(tmp_path, monkeypatch):
    """gsmap_hd/predict_bag.py:394 (the final ``write_text(..., overwrite=overwrite)`` changed to
    ``overwrite=True``): README 'an existing output is replaced only with --overwrite'. The early
    check passes (no file yet); a file another program writes at the output path while the bag is
    being predicted must survive, and the run fail, rather than be silently replaced."""
    pytest.importorskip("torch")
    import json as real_json

    from gs_mapping.errors import OutputError
    from gs_mapping.world import Drive
    from gs_mapping.world.record import write_bag
    from gsmap_hd import predict_bag as pb

    bag = tmp_path / "drive"
    write_bag(Drive.make(2026, 1, "front", (256, 128), rate_hz=2.0), bag, progress=False)
    out = tmp_path / "pred.json"

    class _Racing:
        @staticmethod
        def dumps(doc, *a, **k):
            if not out.exists():
                out.write_text("someone else's file")
            return real_json.dumps(doc, *a, **k)

        def __getattr__(self, name):
            return getattr(real_json, name)

    monkeypatch.setattr(pb, "json", _Racing())
    with pytest.raises(OutputError):
        pb.predict_bag(bag, out, progress=False)
    assert out.read_text() == "someone else's file"


@pytest.mark.parametrize("first_is_far", [True, False])
def test_short_gt_warning_looks_at_every_gt_vector(caplog, first_is_far):
    """gsmap_hd/predict_bag.py:512 (the GT vectors read from ``g["vectors"][1:]``, the first of each
    frame skipped): the recorded GT 'reaches' as far ahead as its farthest point over all vectors,
    by hand 45 m here against a 30 m patch, so no 'reaches ... ahead at most' warning, whichever
    vector of the frame holds that point; a GT reaching 5 m is warned about."""
    pytest.importorskip("torch")
    import logging
    from types import SimpleNamespace

    from gsmap_hd.predict_bag import _warn_short_gt

    cfg = SimpleNamespace(x_range=(-30.0, 30.0))
    far = {"pts": [[40.0, 1.0], [45.0, 1.0]], "type": 0}
    near = {"pts": [[1.0, -1.0], [5.0, -1.0]], "type": 0}
    gts = [{"vectors": [far, near] if first_is_far else [near, far]}, None]
    with caplog.at_level(logging.WARNING, logger="gsmap_hd.predict_bag"):
        _warn_short_gt("bag", gts, cfg)
    assert not [r for r in caplog.records if "ahead at most" in r.getMessage()]
    with caplog.at_level(logging.WARNING, logger="gsmap_hd.predict_bag"):
        _warn_short_gt("bag", [{"vectors": [near]}], cfg)
    assert [r for r in caplog.records if "reaches 5.0 m ahead at most" in r.getMessage()]


@pytest.mark.parametrize("coder", ["encode_stream", "put_stream"])
def test_context_holding_one_value_round_trips(coder):
    """gs_map_share/entropy.py:373 (a context's ``if len(s) == 0:`` — no table — changed to
    ``<= 1``): a context stream whose second context holds exactly one value (at index 17, 5;
    the other 299 values −3..3 in context 0) decodes to the values written, not to a refusal."""
    rng = np.random.default_rng(0)
    vals = rng.integers(-3, 4, 300)
    ctx = np.zeros(300, np.int64)
    ctx[17], vals[17] = 1, 5
    w = Writer()
    if coder == "encode_stream":
        encode_stream(w, vals, True, 6, ctx=ctx, n_ctx=2)
    else:
        put_stream(w, vals, True, ctx=ctx, n_ctx=2)
    got = decode_stream(Reader(w.getvalue()), 300, True, ctx=ctx, n_ctx=2)
    assert got.tolist() == vals.tolist()


def test_resume_with_another_init_from_is_refused(tmp_path):
    """gsmap_hd/train.py:205 (the ``raise CheckpointError`` of a resume given another --init-from
    dropped): docs/hd_model.md 'nor can --init-from name another checkpoint than the run was started
    from (a resume takes last.pt's weights; --overwrite --init-from starts a new fine-tune)'. A run
    started from scratch, resumed with --init-from naming another run's model, is refused."""
    torch = pytest.importorskip("torch")

    from gs_mapping.config_file import from_dict
    from gsmap_hd.errors import CheckpointError
    from gsmap_hd.train import TrainConfig, train

    torch.set_num_threads(1)

    def cfg(**kw):
        base = {
            "model": {
                "bev_h": 20,
                "bev_w": 10,
                "image_size": [32, 64],
                "small_channels": [8, 16, 16],
                "embed_dim": 32,
                "num_instances": 6,
                "num_points": 6,
                "num_layers": 2,
                "num_heads": 4,
                "ffn_dim": 32,
            },
            "loss": {"raster_res": 1.5, "iou_cost_res": 3.0, "raster_warmup_steps": 2},
            "steps": 1,
            "batch_size": 1,
            "train_frames": 2,
            "data": "flat",
            "log_every": 1,
            "checkpoint_every": 1,
            "eval_every": 100,
            "eval_frames": 1,
        }
        return from_dict(TrainConfig, {**base, **kw})

    train(cfg(), tmp_path / "a", progress=False)
    train(cfg(), tmp_path / "b", progress=False)
    with pytest.raises(CheckpointError, match="init-from"):
        train(
            cfg(steps=2, init_from=str(tmp_path / "b" / "model.pt")),
            tmp_path / "a",
            resume=True,
            progress=False,
        )


@pytest.mark.parametrize("field", ["pos_step", "opacity_step", "scale_step", "dc_step", "rest_step"])
def test_a_zero_quantisation_step_is_refused(field):
    """gs_map_share/quantize.py:79 (dc_step's lower bound 1e-6 changed to 0.0): a lattice step of 0
    cannot quantise anything (value / step), so every step, the DC one too, must be refused at 0
    when the parameters are built, as EncodeError, not found later as a division by zero."""
    from gs_map_share.errors import EncodeError
    from gs_map_share.quantize import QuantParams

    with pytest.raises(EncodeError, match=field):
        QuantParams(**{field: 0.0})


def test_clip_to_region_keeps_the_gaussians_whose_centres_lie_inside():
    """gsmap_hd/infer.py:162 (the Gaussians' x and y swapped in the region test): clip_to_region keeps
    'the Gaussians whose centres lie in the region'; with the forward half x ≥ 0 of a ±30 m patch, a
    divider from (−10, 5) to (20, 5) keeps, by hand, the Gaussians at x = 2, 10, 20 (y = 5) and
    drops x = −10 (a swapped test would look at (5, −10)..(5, 20) and keep all four)."""
    pytest.importorskip("torch")
    from shapely.geometry import box

    from gsmap_hd.infer import Element, clip_to_region
    from gsmap_hd.region import Region

    xs = np.array([-10.0, 2.0, 10.0, 20.0])
    g = np.stack([xs, np.full(4, 5.0), np.ones(4), np.ones(4), np.zeros(4)], 1)
    e = Element(0, 0.9, np.stack([xs, np.full(4, 5.0)], 1), g)
    (out,) = clip_to_region([e], Region("forward_half", box(0, -30, 30, 30)))
    assert out.gaussians[:, 0].tolist() == [2.0, 10.0, 20.0]
    assert out.points[:, 0].min() == pytest.approx(0.0)


def test_a_short_piece_on_a_long_lane_merges_with_a_third_of_its_own_length():
    """lane_map.py:688 ``short = min(t.length(), other.length())`` → ``max``: the module's rule —
    two tracks merge when they overlap by ``min_overlap`` m, "or a third of its own length when
    shorter" (the shorter one's). A 30 m lane and a 2 m piece lying on its last 2 m (this frame's
    touch on the piece): their overlap is less than min_overlap (4 m) but at least a third of the
    piece, so they are one track, the older id; a third of the long lane (10 m) would keep them
    apart."""
    from gsmap_hd.lane_map import LaneMap, Track

    lm = LaneMap()
    assert lm.config.min_overlap == 4.0 and lm.config.spacing == 1.0
    x_long, x_short = np.arange(31.0), np.arange(28.0, 31.0)
    long = Track(1, 0, np.stack([x_long, np.zeros_like(x_long)], 1), np.ones(31), False)
    short = Track(2, 0, np.stack([x_short, np.zeros_like(x_short)], 1), np.ones(3), False)
    short.now = np.ones(3)
    lm.tracks, lm.next_id = {1: long, 2: short}, 3
    assert lm._merge_tracks(short) == 1
    assert list(lm.tracks) == [1]
