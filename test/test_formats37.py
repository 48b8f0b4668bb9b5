"""SOG padding from writers other than splat-transform: opaque (alpha 255 over zero RGB) where
splat-transform leaves 0. Its alpha is a Gaussian's (252..255), so the reader once counted the
padding as Gaussians: a false "is the count short?" warning on a valid file, and a ``count`` past
the Gaussians read padding as Gaussians instead of being refused. The real playbot SOG (500 000
Gaussians in 708×708 pixels) with its quats padding made opaque by Pillow."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from test_outside_formats36 import PLAYBOT, _hostile_sog, _refused_sog, needs_playbot

pytestmark = needs_playbot


def _opaque_padding(path):
    from PIL import Image

    q = np.asarray(Image.open(path).convert("RGBA")).copy()
    flat = q.reshape(-1, 4)
    assert (flat[500_000:] == 0).all() and len(flat) == 708 * 708  # (splat-transform's padding)
    flat[500_000:] = (0, 0, 0, 255)
    Image.fromarray(q).save(path, "WEBP", lossless=True)


@pytest.fixture(scope="module")
def opaque(tmp_path_factory):
    return _hostile_sog(tmp_path_factory.mktemp("opaque"), "sog", images={"quats.webp": _opaque_padding})


def _read(d, caplog):
    from gs_mapping.splat_formats import load_splats

    caplog.clear()
    with caplog.at_level(logging.WARNING):
        g = load_splats(d)
    return g, [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_opaque_padding_is_read_as_the_real_sog_without_a_warning(opaque, caplog):
    g, said = _read(opaque, caplog)
    assert said == []
    want, _ = _read(PLAYBOT, caplog)
    assert len(g) == len(want) == 500_000
    assert np.array_equal(g.means, want.means) and np.array_equal(g.quats, want.quats)


def test_a_count_short_of_the_gaussians_is_still_said(tmp_path, caplog):
    d = _hostile_sog(tmp_path, "short", lambda m: m.update(count=499_999), {"quats.webp": _opaque_padding})
    g, said = _read(d, caplog)
    assert len(g) == 499_999
    assert len(said) == 1 and "SOG count 499999 (meta.json), but quats.webp holds 500000" in said[0], said


@pytest.mark.parametrize("count", [500_001, 708 * 708])
def test_a_count_into_opaque_padding_is_refused(count, tmp_path, capsys):
    d = _hostile_sog(tmp_path, f"c{count}", lambda m: m.update(count=count), {"quats.webp": _opaque_padding})
    _refused_sog(d, capsys, f"SOG count {count} (meta.json), but quats.webp holds 500000 Gaussians")
