"""One rule for a recording's TF topics (``topics.tf_topics``), as `map`, `info`, `replay` and
`hd-predict` read them: the global ``/tf`` while it holds a message, else one robot's namespaced
``/robot1/tf`` (an empty topic recorded by ``ros2 bag record -a`` hides nothing); and a bad transform
refused as tf2 refuses it (``tf.RecordedTF``), an error under hd-predict's ``--strict``."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from gs_mapping.errors import ConfigError
from gs_mapping.topics import TF_MESSAGE, tf_topics


def _bag(named):
    """A bag-like object holding these TFMessage topics: [(name, message count)]."""
    return SimpleNamespace(
        path="b", topics=[SimpleNamespace(name=n, type=TF_MESSAGE, count=c) for n, c in named]
    )


def test_tf_topics_global_while_it_has_messages():
    bag = _bag([("/tf", 3), ("/tf_static", 1), ("/robot1/tf", 5), ("/robot1/tf_static", 1)])
    assert tf_topics(bag) == [("/tf_static", True), ("/tf", False)]


@pytest.mark.parametrize("global_tf", [None, 0])
def test_tf_topics_one_robots_namespaced_tf_where_tf_has_none(global_tf):
    named = [("/tf_static", 1), ("/robot1/tf", 5), ("/robot1/tf_static", 1), ("/robot2/tf", 0)]
    if global_tf is not None:
        named.append(("/tf", global_tf))
    bag = _bag(named)
    got = tf_topics(bag)  # (static first, then the moving one, of each pair)
    assert ("/robot1/tf", False) in got and ("/robot1/tf_static", True) in got and ("/tf_static", True) in got
    assert all(n != "/robot2/tf" for n, _ in got)  # (an empty robot's TF is not a second robot)


def test_tf_topics_several_robots_name_them():
    """Where the command can choose one robot (``how``: map's mapper.topics.tf), refused naming them;
    where it cannot (info, replay, hd-predict), the global pair read and the robots named once."""
    named = [("/tf", 0), ("/tf_static", 1), ("/robot1/tf", 5), ("/robot2/tf", 5), ("/robot2/tf_static", 1)]
    bag = _bag(named)
    with pytest.raises(ConfigError, match=r"\(/robot1/tf, /robot2/tf\): .* with mapper\.topics\.tf"):
        tf_topics(bag, how=" with mapper.topics.tf")
    said: list[str] = []
    assert tf_topics(bag, warn=said.append) == [("/tf_static", True), ("/tf", False)]
    assert len(said) == 1 and "(/robot1/tf, /robot2/tf): only /tf and /tf_static read" in said[0], said


def test_tf_topics_a_robot_is_a_namespace_with_moving_tf():
    """A parked robot's latched /robot2/tf_static alone is no second robot; where no namespace's tf
    holds a message, the one robot whose tf_static does is read."""
    moving = _bag([("/tf_static", 1), ("/robot1/tf", 5), ("/robot1/tf_static", 1), ("/robot2/tf_static", 1)])
    assert tf_topics(moving, how=" (choose)") == [("/tf_static", True), ("/robot1/tf_static", True), ("/robot1/tf", False)]  # fmt: skip
    parked = _bag([("/tf", 0), ("/robot1/tf_static", 1), ("/robot1/tf", 0)])
    assert tf_topics(parked, how=" (choose)") == [("/tf", False), ("/robot1/tf_static", True), ("/robot1/tf", False)]  # fmt: skip
    with pytest.raises(ConfigError, match="/robot1/tf_static, /robot2/tf_static"):
        tf_topics(_bag([("/robot1/tf_static", 1), ("/robot2/tf_static", 1)]), how=" (choose)")


def test_replay_plays_a_robots_namespaced_tf_where_the_nodes_listen(tmp_path, capsys):
    """The namespaced recording with an empty global /tf: mapper_node (listening on /tf and
    /tf_static) hears the robot's TF as ``ros2 bag play --remap /robot1/tf:=/tf`` plays it and maps
    all 4 frames, instead of waiting for TF on /tf."""
    pytest.importorskip("rosbags.rosbag2")
    pytest.importorskip("cv2")
    pytest.importorskip("torch")  # (the mapper and the GSMap model)
    import json

    import test_hostile_robot_inputs as rb
    import test_outside_recordings7 as r7

    from gs_mapping.cli import main

    bag = r7._namespaced_bag(tmp_path / "b", empty_global_tf=True)
    cfg = tmp_path / "fast.yaml"
    cfg.write_text(rb.FAST)
    rc = main(["replay", str(bag), "--out", str(tmp_path / "o"), "--nodes", "mapper_node", "--config", str(cfg), "--json"])  # fmt: skip
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    d = report["diagnostics"]["mapper_node"]
    assert rc == 0 and d["frames_used"] == 4 and not d.get("waiting_for"), d


def test_hd_predict_strict_refuses_a_bad_transform(tmp_path, capsys):
    """hd-predict skips a bad transform of another frame (test_outside_recordings7); ``--strict``
    makes it the one error line, naming the topic."""
    pytest.importorskip("rosbags.rosbag2")
    pytest.importorskip("cv2")
    pytest.importorskip("torch")  # (the mapper and the GSMap model)
    import test_hostile_robot_inputs as rb
    import test_outside_recordings7 as r7

    bad = rb.T[rb.TFM](transforms=[rb._tf(rb.T0, "base_link", "imu_link", q=(0.0, 0.0, 0.0, 0.0))])
    bag = rb.robot_bag(tmp_path / "b", n=4, extra_msgs=[(rb.T0 + 5, "/tf", bad)])
    rc, _, last = r7._hd_predict(capsys, bag, tmp_path / "hd.json", "--strict")
    assert rc == 2 and "/tf: " in last and "imu_link" in last, last
