"""Review of session 37's gsmap_hd guards from outside (needs torch): the pinhole check of a K
(check_intrinsics, also what hd-predict and hd_map_node apply to a CameraInfo) on the real kitchen
bag's calibration, and checkpoint.save's plain-data check of ``extra``."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("rosbags.rosbag2")

from conftest import SHARED_DATA  # noqa: E402

INFO = "/camera/camera/color/camera_info"


@pytest.fixture(scope="module")
def kitchen_K(shared_data):
    """The real RealSense-layout kitchen bag's colour K, as the mapper reads it."""
    from gs_mapping.bag import BagReader
    from gs_mapping.messages import camera_info_to_intrinsics

    with BagReader(SHARED_DATA / "realsense_kitchen_rgbd") as b:
        msg = next(m for _t, _s, m in b.messages([INFO]))
    return np.asarray(camera_info_to_intrinsics(msg).K, np.float64)


def _skewed(K):
    K = K.copy()
    K[0, 1] = 0.75  # (a skew: a pinhole K all the same)
    return K


def _long_lens(K):
    K = K.copy()
    K[0, 0] *= 1e4  # (a telescope's focal length in pixels)
    K[1, 1] *= 1e4
    return K


def _float32_round_off(K):
    # K through a float32 pipeline (cv2 / a float32 tensor) and a rescale for a smaller image:
    # the last row is (0, 0, 1) to float32's round-off, not exactly
    K = (K.astype(np.float32) * np.float32(1 / 3)).astype(np.float32)
    K[2, 2] = np.float32(1 / 3) * np.float32(3)
    return K.astype(np.float64) + np.array([[0, 0, 0], [3e-7 * K[1, 1], 0, 0], [3e-8, -3e-8, 0]])


@pytest.mark.parametrize("edit", [_skewed, _long_lens, _float32_round_off], ids=["skew", "long", "f32"])
def test_pinhole_ks_a_user_has_are_taken_as_they_are(edit, kitchen_K):
    from gsmap_hd.infer import check_intrinsics

    K = edit(kitchen_K)
    got = check_intrinsics(K, "camera 0")
    assert got.dtype == np.float64 and np.array_equal(got, np.asarray(K, np.float64))


@pytest.mark.parametrize("at", [(1, 0), (2, 0), (2, 2)], ids=["fy-row-x", "last-row-x", "last-row-z"])
def test_a_k_with_a_term_a_pinhole_k_lacks_is_refused(at, kitchen_K):
    """``[[fx, 0, cx], [s, fy, cy], [0, 0, 1]]``: the skew written in fy's row (a lower-triangular
    K, as a transposed upper block), or a last row off (0, 0, 1) by 1e-3, projects elsewhere (by
    0.3 pixel at the image's edge): one line naming the rows."""
    from gsmap_hd.errors import HDInputError
    from gsmap_hd.infer import check_intrinsics

    K = kitchen_K.copy()
    K[at] += 0.75 if at == (1, 0) else 1e-3
    with pytest.raises(HDInputError, match=r"^camera 0: intrinsics K must be \[\[fx, s, cx\], \[0, fy, cy\]"):
        check_intrinsics(K, "camera 0")


def test_extra_of_a_numpy_scalar_that_is_no_number_is_refused_before_writing(tmp_path):
    """``np.datetime64('now')`` in ``extra`` (a run's time): its item() is a datetime, which the
    weights-only loader refuses; it was saved as such, a checkpoint its own loader then refused
    ("it holds a pickled datetime.datetime object"). Refused before anything is written, as a
    datetime itself is; numpy numbers still saved as the Python ones."""
    from test_outside_hd37 import _tiny_checkpoint

    from gsmap_hd import checkpoint as ckpt
    from gsmap_hd.errors import CheckpointError

    with pytest.raises(CheckpointError, match=r"extra.when: a datetime is not plain data"):
        _tiny_checkpoint(tmp_path / "bad.pt", extra={"when": np.datetime64("2026-12-07T14:00:00")})
    assert not (tmp_path / "bad.pt").exists()
    path, _ = _tiny_checkpoint(tmp_path / "ok.pt", extra={"lr": np.float32(0.5), "ok": np.bool_(True)})
    assert ckpt.load_state(path)["extra"] == {"lr": 0.5, "ok": True}


def test_an_image_of_no_rows_is_one_line():
    """An image of 640 columns and no rows (a crop gone wrong): one line, as one of no pixels."""
    from test_outside_hd37 import _frame, _predictor

    from gsmap_hd.errors import HDInputError

    im, cam, T = _frame()
    with pytest.raises(HDInputError, match=r"^camera 0: image is empty \(64x0\)$"):
        _predictor().predict([im[:0]], [{**cam, "height": 0}], [T])


def test_max_elements_of_one_keeps_the_best_element():
    from test_outside_hd37 import _frame, _predictor

    from gsmap_hd.infer import Predictor

    im, cam, T = _frame()
    p = _predictor()
    every = p.predict([im], [cam], [T])
    one = Predictor(p.model, max_elements=1).predict([im], [cam], [T])
    assert len(one) == 1 and one[0].score == max(e.score for e in every)


def test_an_older_format_or_an_empty_dict_is_not_called_newer_or_a_state_dict(tmp_path):
    """A checkpoint of an earlier format is not "newer: update gs_mapping"; ``torch.save({})`` is
    no bare state_dict (it holds no weights)."""
    from test_outside_hd37 import _rewritten, _tiny_checkpoint

    from gsmap_hd import checkpoint as ckpt
    from gsmap_hd.errors import CheckpointError

    good, _ = _tiny_checkpoint(tmp_path / "model.pt")
    old = _rewritten(good, tmp_path / "v0.pt", lambda s: {**s, "format": "gsmap_hd/0"})
    with pytest.raises(CheckpointError) as err:
        ckpt.load_state(old)
    assert str(err.value) == (
        f"{old}: a gsmap_hd checkpoint of format 'gsmap_hd/0', not the {ckpt.FORMAT!r} this version reads"
    )
    torch.save({}, tmp_path / "empty.pt")
    with pytest.raises(CheckpointError) as err:
        ckpt.load_state(tmp_path / "empty.pt")
    assert str(err.value) == f"{tmp_path / 'empty.pt'}: not a gsmap_hd checkpoint (format None)"
