"""Core helpers that exist once (issue 15, "one place per concern"), each against an independent
reference: quaternion ⇄ matrix vs scipy's Rotation, the device check shared by the mapper and the HD
model, PSNR shared by the mapper, the demo and the benches."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from gs_mapping.device import resolve_device
from gs_mapping.errors import ConfigError
from gs_mapping.geometry import matrix_to_quat, quat_to_matrix


def _rotations(n: int, seed: int) -> Rotation:
    r = Rotation.random(n, random_state=seed)
    # and the hard cases: half turns about each axis (trace -1) and the identity
    extra = Rotation.from_rotvec(np.pi * np.eye(3)) * Rotation.identity()
    return Rotation.concatenate([r, extra, Rotation.identity(3)])


def test_quaternion_matrix_conversions_match_scipy():
    rot = _rotations(500, 0)
    q = rot.as_quat()  # scipy: (x, y, z, w), as ROS
    assert np.allclose(quat_to_matrix(q), rot.as_matrix(), atol=1e-12)
    ours = matrix_to_quat(rot.as_matrix())
    assert np.all(ours[:, 3] >= 0)
    dots = np.abs((ours * q).sum(1))
    assert np.allclose(dots, 1.0, atol=1e-9)  # the same rotation (q and -q alike)
    free = matrix_to_quat(rot.as_matrix(), positive_w=False)
    assert np.allclose(np.abs((free * q).sum(1)), 1.0, atol=1e-9)
    assert matrix_to_quat(rot.as_matrix()[7]).shape == (4,)  # one matrix in, one quaternion out


@pytest.mark.parametrize("bad", ["tpu", "gpu", "cuda:x", "CPU ", "cuda:-1", ""])
def test_device_names_are_checked(bad):
    with pytest.raises(ConfigError, match="device"):
        resolve_device(bad)


def test_device_auto_and_cpu():
    import torch

    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda:0")


def test_mapper_refuses_an_unknown_device():
    from gs_mapping.mapping import IncrementalMapper, MapperConfig

    cfg = MapperConfig()
    with pytest.raises(ConfigError, match="'tpu'"):
        IncrementalMapper(cfg, "tpu")


def test_one_psnr_for_mapper_demo_and_benches():
    from gs_mapping.demo.measure import psnr as demo_psnr
    from gs_mapping.mapping.metrics import PSNR_CAP_DB, psnr

    rng = np.random.default_rng(0)
    a = rng.random((8, 10, 3))
    b = np.clip(a + rng.normal(0, 0.05, a.shape), 0, 1)
    want = -10 * math.log10(np.mean((a - b) ** 2))
    assert psnr(a, b) == pytest.approx(want) == demo_psnr(a, b)
    mask = np.zeros((8, 10), bool)
    mask[2:5] = True
    assert psnr(a, b, mask) == pytest.approx(-10 * math.log10(np.mean((a[mask] - b[mask]) ** 2)))
    assert psnr(a, a) == math.inf
    assert psnr(a, a, cap_db=PSNR_CAP_DB) == demo_psnr(a, a) == PSNR_CAP_DB
    assert psnr(a + 5, b + 5) == math.inf  # colours are clipped to [0, 1] first


PACKAGES = (
    "gs_mapping",
    "gs_mapping.cli",
    "gs_mapping.demo",
    "gs_mapping.mapping",
    "gs_mapping.messages",
    "gs_mapping.nodes",
    "gs_mapping.render",
    "gs_mapping.runtime",
    "gs_mapping.world",
    "gs_map_share",
    "gsmap_hd",
    "gsmap_hd.metrics",
)


@pytest.mark.parametrize("package", PACKAGES)
def test_each_package_states_a_public_api_that_resolves(package):
    import importlib

    mod = importlib.import_module(package)
    assert mod.__all__, f"{package} states no public API"
    for name in mod.__all__:
        if name in ("rclpy", "RclpyContext", "run_node", "ZenohContext"):
            continue  # need rclpy / zenoh, absent in a plain venv (tested where they are)
        assert getattr(mod, name) is not None, f"{package}.{name}"


def test_importing_the_packages_loads_no_heavy_dependency():
    import subprocess
    import sys

    code = (
        "import sys, gs_mapping, gs_map_share, gsmap_hd, gs_mapping.nodes, gs_mapping.runtime; "
        "print(sorted(m for m in ('torch', 'constriction', 'numba', 'cyclonedds', 'rclpy', 'zenoh') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
