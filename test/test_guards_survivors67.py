"""Guards for the survivors the sixty-sixth mutation round (uniform over src/, seed 35) left open.
Each compares with the real component's other path."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")


def test_integer_means_render_as_the_same_positions_in_float():
    """``rasterize`` takes integer means (a grid of points given as ints) as float32 positions: the
    image equals the one from the same means given as float32 (render/api.py converts them before
    anything reads their dtype)."""
    from gs_mapping.render import rasterize

    means = torch.tensor([[0, 0, 4], [1, 0, 5], [-1, 1, 6]])  # int64
    n = len(means)
    quats = torch.tensor([[0.0, 0.0, 0.0, 1.0]] * n)
    scales = torch.full((n, 3), 0.4)
    opac = torch.full((n,), 0.8)
    sh = torch.rand(n, 1, 3, generator=torch.Generator().manual_seed(0))
    K = torch.tensor([[40.0, 0, 31.5], [0, 40.0, 23.5], [0, 0, 1]])
    args = (quats, scales, opac, sh, torch.eye(4), K, 64, 48)
    ref = rasterize(means.to(torch.float32), *args, backend="cpu").color
    got = rasterize(means, *args, backend="cpu").color
    assert got.dtype == torch.float32 and float(ref.max()) > 0.1
    np.testing.assert_allclose(got.numpy(), ref.numpy(), atol=1e-6)


def test_a_mapper_node_that_has_made_no_frame_says_which_inputs_it_waits_for(caplog):
    """mapper_node before its first frame: the diagnostics timer reports the inputs that have not
    arrived (colour, depth, camera_info by their topic names) in /diagnostics' ``waiting_for`` and
    one console warning; ``frames == 0`` is what picks that report over the 'stopped' one."""
    import logging

    from gs_mapping.nodes.mapper_node import MapperNode
    from gs_mapping.runtime.replay import ReplayBus

    bus = ReplayBus()
    cfg = MapperNode.load_config(None)
    cfg["mapper"].device = "cpu"
    node = MapperNode(bus.context("mapper_node"), cfg)
    t = cfg["mapper"].topics
    with caplog.at_level(logging.WARNING):
        node.on_diagnostics_timer()
    waiting = node.diag.values.get("waiting_for", "")
    for topic in (t.color, t.depth, t.camera_info):
        assert topic in waiting, waiting
    assert sum("waiting for" in r.getMessage() and t.color in r.getMessage() for r in caplog.records) == 1
    node.close()


@pytest.mark.parametrize(
    "node, section, field, value, named",
    [
        ("hd_map_node", "hd_map_node", "backend", "tensorrt", "hd_map_node.backend"),
        ("mapper_node", "mapper_node", "cloud_type", "velodyne", "mapper_node.cloud_type"),
        ("map_server_node", "map_server_node", "frame_id", "/map", "map_server_node.frame_id"),
    ],
)
def test_a_field_set_after_the_config_was_built_is_checked_as_the_node_starts(
    tmp_path, node, section, field, value, named
):
    """The rules a config checks as it is built (a file, -p, launch) hold for Python code that sets a
    field afterwards too (dataclasses do not check assignments): the node refuses at its start,
    naming the parameter, and no store is created."""
    from gs_mapping.errors import ConfigError
    from gs_mapping.nodes.registry import node_class
    from gs_mapping.runtime.replay import ReplayBus

    cls = node_class(node)
    cfg = cls.load_config(None)
    if node == "map_server_node":
        cfg[section].store_path = str(tmp_path / "fleet.sqlite3")
    setattr(cfg[section], field, value)
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        cls(ReplayBus().context(node), cfg)
    assert not (tmp_path / "fleet.sqlite3").exists()
