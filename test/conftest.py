"""Shared fixtures. Real data lives in ../shared/data beside the checkout (as in CI).

Tests that need it take the ``shared_data`` fixture (directly or through ``kitchen_bag`` /
``spz_reference``); the collection hook below marks them ``shared_data`` so that
``-m "not shared_data"`` selects the rest. Where the data is missing they skip with the path in the
reason, except in CI (``CI=true``), where a missing copy fails the run with one line: a CI run that
silently skipped every real-data test would pass without testing them.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("GS_MAPPING_SHARED_DATA", REPO.parent / "shared" / "data"))
KITCHEN_BAG = SHARED_DATA / "7scenes_kitchen_rgbd"
# The kitchen bag's camera topics: a RealSense as realsense-ros 4.54 and before named them, not as
# today's default launch does (/camera/camera/...: the mapper's defaults); node tests that replay it
# name them (KITCHEN_TOPICS_YAML: a line of a parameter file's ``mapper:`` section).
KITCHEN_TOPICS = {
    "color": "/camera/color/image_raw",
    "depth": "/camera/depth/image_rect_raw",
    "camera_info": "/camera/color/camera_info",
}
KITCHEN_TOPIC_FIELDS = ", ".join(f"{k}: {v}" for k, v in KITCHEN_TOPICS.items())
KITCHEN_TOPICS_YAML = f"topics: {{{KITCHEN_TOPIC_FIELDS}}}"


def use_kitchen_topics(topics) -> None:
    """Set a mapper's TopicsConfig (``MapperNode.load_config(...)["mapper"].topics``) to KITCHEN_TOPICS."""
    for name, topic in KITCHEN_TOPICS.items():
        setattr(topics, name, topic)


SPZ_REFERENCE = SHARED_DATA / "splats" / "spz_reference"


def map_args(**named):
    """``gs-mapping map``'s arguments as the real command line parses them (for
    ``cli.map.choose_topics``): each keyword a Namespace field (``color_topic="/x"`` is
    ``--color-topic /x``, ``True`` a flag given), every other option at its default, so a new option
    of ``map`` needs no edit at the tests that call this."""
    from gs_mapping.cli import build_parser

    argv = []
    for name, value in named.items():
        flag = "--" + name.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif value not in (None, False):
            argv += [flag, str(value)]
    return build_parser().parse_args(["map", "BAG", "--out", "OUT", *argv])


# Child processes run as users' do: a program's stdout off a terminal is block-buffered, and a
# "ready" line it forgets to flush never reaches the reader. Boxes that set PYTHONUNBUFFERED (this
# one does) would hide that in every test that reads a child's lines, so the suite drops it.
os.environ.pop("PYTHONUNBUFFERED", None)


def rewrite_camera_messages(source: Path, out: Path, edit, log_shift_ns: int = 0) -> Path:
    """The real bag ``source`` copied to ``out`` with ``edit(topic, i, msg)`` applied to each /camera/
    message (the i-th of its topic, deserialised); one it returns true for is written as edited,
    logged ``log_shift_ns`` later (a recorder's latency); everything else as recorded."""
    from rosbags.rosbag2 import Reader, Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_HUMBLE)
    seen: dict[str, int] = {}
    with Reader(source) as r, Writer(out, version=8) as w:
        cs = {c.topic: w.add_connection(c.topic, c.msgtype, typestore=ts) for c in r.connections}
        for c, t, data in r.messages():
            i = seen[c.topic] = seen.get(c.topic, -1) + 1
            if c.topic.startswith("/camera/"):
                m = ts.deserialize_cdr(data, c.msgtype)
                if edit(c.topic, i, m):
                    data = ts.serialize_cdr(m, c.msgtype)
                    t += log_shift_ns
            w.write(cs[c.topic], t, data)
    return out


def zero_stamp(msg) -> bool:
    """``msg``'s header stamp set to zero (a driver that does not stamp); true, for
    :func:`rewrite_camera_messages`."""
    msg.header.stamp.sec, msg.header.stamp.nanosec = 0, 0
    return True


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def spin_until(contexts, until, timeout_s: float) -> bool:
    """Spin each of several middleware contexts (Zenoh, DDS: ``spin_once``) 10 ms in turn until
    ``until()`` holds (True) or ``timeout_s`` passes (False). A test with several sessions needs
    all their callbacks run; one context's own ``spin(until=…)`` runs only its own. ``contexts`` is
    read afresh each round (a list the test edits between calls, a dict's ``values()``)."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        for c in list(contexts):
            c.spin_once(0.01)
        if until():
            return True
    return False


def _missing(path: Path) -> str:
    return f"real data not found at {path} (../shared/data beside the checkout, or GS_MAPPING_SHARED_DATA)"


def pytest_collection_modifyitems(config, items) -> None:
    # A test that reaches the data through any fixture carries the marker (the fixture closure is
    # the truth, not a decorator someone may forget).
    for item in items:
        if "shared_data" in getattr(item, "fixturenames", ()) and not item.get_closest_marker("shared_data"):
            item.add_marker(pytest.mark.shared_data)


def pytest_collection_finish(session) -> None:
    """In CI, selected tests needing ../shared/data and no data: stop with one line, nothing run."""
    if not in_ci() or SHARED_DATA.is_dir():
        return
    needing = [i for i in session.items if i.get_closest_marker("shared_data")]
    if needing:
        pytest.exit(f"CI: {_missing(SHARED_DATA)}; {len(needing)} selected tests need it", returncode=3)


@pytest.fixture(autouse=True)
def _shared_data_marker_guard(request) -> None:
    """A test marked ``shared_data`` by hand (without the fixture) still skips where data is absent."""
    if request.node.get_closest_marker("shared_data") and not SHARED_DATA.is_dir():
        pytest.skip(_missing(SHARED_DATA))


@pytest.fixture(autouse=True)
def _warnings_said_afresh() -> None:
    """Each test starts with no warning said yet (``say_once``): a test that checks a warning is
    given does not depend on which tests ran before it in the process."""
    from gs_mapping import say_once

    say_once.forget()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data. Skipped where absent (outside CI; CI stops at collection, see above)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(_missing(SHARED_DATA))
    return SHARED_DATA


def _need(path: Path) -> Path:
    if not path.exists():
        if in_ci():
            pytest.fail(f"CI: {_missing(path)}", pytrace=False)
        pytest.skip(_missing(path))
    return path


@pytest.fixture(scope="session")
def kitchen_bag(shared_data) -> Path:
    """The real 7-Scenes kitchen RGB-D rosbag2 (MCAP)."""
    _need(KITCHEN_BAG / "metadata.yaml")
    return KITCHEN_BAG


@pytest.fixture(scope="session")
def spz_reference(shared_data) -> Path:
    """Niantic SPZ v2-v4 files written (and PLYs decoded) by Niantic's own library."""
    return _need(SPZ_REFERENCE)


# Mapper settings for node tests: the real pipeline, with a few optimiser steps per keyframe, on the
# kitchen bag's topics.
FAST_NODES_YAML = f"""
/**:
  ros__parameters:
    mapper:
      {KITCHEN_TOPICS_YAML}
      device: cpu
      max_gaussians: 20000
      seeding: {{stride: 4}}
      optim: {{iterations: 2, first_iterations: 4}}
      keyframe: {{max_gap: 4}}
    mapper_node:
      snapshot_period_s: 0.5
      diagnostics_period_s: 0.5
    map_receiver_node:
      publish_rate_hz: 5.0
      diagnostics_period_s: 0.5
"""


@pytest.fixture(scope="session")
def fast_nodes_config(tmp_path_factory) -> Path:
    """A parameter file (config/full.yaml layout) with fast mapper settings for node tests."""
    path = tmp_path_factory.mktemp("config") / "fast_nodes.yaml"
    path.write_text(FAST_NODES_YAML)
    return path
