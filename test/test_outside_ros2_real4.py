"""Outside review (fourth pass) of issue 20 (ROS 2 for real): what rcl and rmw do where
test/rclpy_standin.py's in-process C layer says nothing, and what the suite's nodes do then.

New angles, not in test_rclpy_runtime.py / test_outside_ros2_nodes.py / test_outside_ros2_qos.py /
test_outside_ros2_real3.py / test_messages_rclpy_factory.py:

- a shut-down context (Ctrl-C, SIGTERM from ``docker stop`` / ``systemctl stop`` / ``ros2 launch``).
  rclpy's signal handling (ros2/rclpy humble and jazzy, ``src/rclpy/signal_handler.cpp``): its
  deferred handler thread calls ``trigger_guard_conditions()`` then ``rclpy::shutdown_contexts()``
  (``context.cpp``: ``rcl_shutdown`` on every context); after SIGINT Python's own handler is also
  called (KeyboardInterrupt), after SIGTERM it is not (its previous handler is SIG_DFL, which
  ``call_signal_handler`` skips). rcl (ros2/rcl humble): ``rcl_publish`` begins with
  ``rcl_publisher_is_valid``, false once the context is shut down ("publisher's context is
  invalid", ``publisher.c``), and rclpy's ``Publisher::publish`` throws ``RCLError("Failed to
  publish")``; ``rcl_publisher_init`` / ``rcl_subscription_init`` need ``rcl_node_is_valid``
  (``node.c``: false on a shut-down context) and rclpy throws ``RCLError("Failed to create
  publisher")``; ``rcl_timer_init``'s guard condition refuses the context (``guard_condition.c``).
  The stand-in publishes and creates entities on a shut-down context without a word; here it is
  given exactly these rules (:func:`rcl_context_rules`);
- names: ``rcl_node_resolve_name`` validates every expanded topic name with rmw's
  ``rmw_validate_full_topic_name`` (ros2/rmw humble, ``validate_full_topic_name.c``: only
  alphanumerics, '_' and '/', no '//', no token starting with a digit) and rclpy raises
  ``InvalidTopicNameException``; the stand-in's validators accept every name; here they follow rmw
  (:func:`rmw_name_rules`);
- the published ``~/map_cloud`` as sensor_msgs_py's ``read_points`` (ros2/common_interfaces humble)
  and RViz's RGB8 transformer read it.

rclpy is Humble's pure-Python package with test/rclpy_standin.py under it, as in
test_rclpy_runtime.py (``RCLPY_SOURCE=<jazzy checkout>/rclpy/rclpy RCLPY_DISTRO=jazzy`` runs the
same on Jazzy's; done by hand: same results). The promises checked are run_node's own
(rclpy_runtime.py): "spin until shutdown (Ctrl-C or the context shut down), then close it", "A bad
parameter is one line and exit status 2", and its comment "Ctrl-C while the node was being built
(a model load can take a while)" -> close, return 0. Known bugs are ``xfail(strict=True)``.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time

import pytest

# ------------------------------------------------------------------------------------------------
# rclpy (real Python layer, stand-in C extension) + rcl's rules for a shut-down context


@pytest.fixture(scope="module")
def ros():
    import rclpy_standin
    from rosbags.typesys import Stores, get_typestore

    from gs_mapping.messages import RclpyFactory

    distro = os.environ.get("RCLPY_DISTRO", "humble")  # as test_rclpy_runtime.py: Jazzy's by hand
    store = get_typestore(Stores.ROS2_JAZZY if distro == "jazzy" else Stores.ROS2_HUMBLE)
    RclpyFactory._class.cache_clear()
    rclpy, standin, interfaces = rclpy_standin.install(store, os.environ.get("RCLPY_SOURCE"))
    yield rclpy, standin
    RclpyFactory._class.cache_clear()
    rclpy_standin.uninstall(interfaces)


@pytest.fixture
def rcl_context_rules(ros, monkeypatch):
    """The stand-in's Publisher / Subscription / Timer with rcl's checks of the context: creating
    one, or publishing, on a context that ``rcl_shutdown`` has shut down raises rclpy's RCLError
    with the text rclpy's C++ gives (publisher.cpp, subscription.cpp, timer.cpp)."""
    _, standin = ros
    P, S, T = standin.Publisher, standin.Subscription, standin.Timer
    p_init, p_publish, s_init, t_init = P.__init__, P.publish, S.__init__, T.__init__

    def publisher_init(self, node, *a):
        if not node.context.ok():  # rcl_publisher_init -> rcl_node_is_valid
            raise standin.RCLError("Failed to create publisher")
        p_init(self, node, *a)

    def publish(self, msg):
        if not self.node.context.ok():  # rcl_publish -> rcl_publisher_is_valid
            raise standin.RCLError("Failed to publish")
        p_publish(self, msg)

    def subscription_init(self, node, *a):
        if not node.context.ok():  # rcl_subscription_init -> rcl_node_is_valid
            raise standin.RCLError("Failed to create subscription")
        s_init(self, node, *a)

    def timer_init(self, clock, context, *a, **k):
        if not context.ok():  # rcl_timer_init -> rcl_guard_condition_init
            raise standin.RCLError("Failed to create timer")
        t_init(self, clock, context, *a, **k)

    monkeypatch.setattr(P, "__init__", publisher_init)
    monkeypatch.setattr(P, "publish", publish)
    monkeypatch.setattr(S, "__init__", subscription_init)
    monkeypatch.setattr(T, "__init__", timer_init)
    return standin


def _signal(context) -> None:
    """What rclpy's deferred signal thread does on SIGINT/SIGTERM: ``rcl_shutdown`` of the C
    context (not rclpy's Python ``Context.shutdown``, which the signal path never calls). After
    SIGINT Python's own handler also raises KeyboardInterrupt in the main thread; after SIGTERM
    nothing else happens."""
    context.handle.shutdown()


def test_the_rcl_rules_as_written(ros, rcl_context_rules):
    """The port above on a plain rclpy node: a publisher works until the context is shut down,
    then publishing and creating a publisher raise RCLError (the rcl behaviour users meet as
    'Failed to publish: publisher's context is invalid' after Ctrl-C)."""
    rclpy, standin = ros
    from std_msgs.msg import String

    context = rclpy.Context()
    rclpy.init(args=["t"], context=context)
    node = rclpy.create_node("rules", context=context)
    try:
        pub = node.create_publisher(String, "/x", 10)
        pub.publish(String(data="a"))
        _signal(context)
        with pytest.raises(standin.RCLError, match="Failed to publish"):
            pub.publish(String(data="b"))
        with pytest.raises(standin.RCLError, match="Failed to create publisher"):
            node.create_publisher(String, "/y", 10)
    finally:
        node.destroy_node()
        context.try_shutdown()


# ------------------------------------------------------------------------------------------------
# SIGTERM while a node is being built


def _hooks(monkeypatch, context):
    """{node: (extra ros args, install)}: each node's slow start-up step (what a user waits for and
    interrupts), with the signal arriving at its end."""

    def after(cls, attr):
        real = getattr(cls, attr)

        def wrapped(*a, **k):
            out = real(*a, **k)
            _signal(context)
            return out

        monkeypatch.setattr(cls, attr, wrapped)

    def hd():  # the model load: torch checkpoint or onnxruntime session (seconds)
        from gs_mapping.nodes.hd_map_node import HDMapNode

        after(HDMapNode, "_load_predictor")

    def mapper():  # the mapper and its device (a CUDA context takes seconds)
        from gs_mapping.mapping.mapper import IncrementalMapper

        after(IncrementalMapper, "__init__")

    def server():  # restoring a fleet store (every vehicle's log replayed)
        from gs_mapping.nodes.map_server_node import MapServerNode

        after(MapServerNode, "_restore")

    return {"hd_map_node": hd, "mapper_node": mapper, "map_server_node": server}


@pytest.mark.parametrize("name", ["hd_map_node", "mapper_node", "map_server_node"])
def test_sigterm_while_a_node_is_being_built_ends_quietly(
    ros, rcl_context_rules, monkeypatch, tmp_path, name
):
    """``docker stop``, ``systemctl stop``, ``kill PID`` and ``ros2 launch`` (SIGTERM after its
    SIGINT timeout) while a node starts. rclpy's SIGTERM handler only shuts the context down (the
    previous handler, SIG_DFL, is not called: signal_handler.cpp ``call_signal_handler``), so no
    KeyboardInterrupt comes to end the start-up as after SIGINT. run_node: ``if not
    context_ok(context): # Ctrl-C while the node was being built (a model load can take a
    while)`` -> close, return 0. Under rcl that line is never reached: every
    ``create_publisher`` / ``create_subscription`` / ``create_timer`` and the snapshot published at
    the end of mapper_node's and map_server_node's constructors raise RCLError once the signal has
    shut the context down, and run_node catches only GsMappingError and ParameterException."""
    rclpy, _ = ros
    from gs_mapping.nodes.registry import node_class
    from gs_mapping.runtime.rclpy_runtime import run_node

    context = rclpy.Context()
    _hooks(monkeypatch, context)[name]()
    args = [name, "--ros-args"]
    args += {
        "hd_map_node": ["-p", "hd_map_node.device:=cpu"],
        "mapper_node": ["-p", "mapper.device:=cpu"],
        "map_server_node": ["-p", f"map_server_node.store_path:={tmp_path / 'fleet.sqlite3'}"],
    }[name]
    try:
        rc = run_node(node_class(name), args, context)
    except Exception as exc:  # noqa: BLE001 - what ros2 run would print as a traceback
        pytest.fail(f"run_node raised {type(exc).__name__}: {exc}")
    assert rc == 0


# ------------------------------------------------------------------------------------------------
# a clean stop: close() after the signal


def _run_in_thread(run_node, cls, args, context):
    out: dict = {}

    def target():
        try:
            out["rc"] = run_node(cls, args, context)
        except BaseException as exc:  # noqa: BLE001
            out["exc"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    return t, out


def _live(standin_mod, topic, before):
    return [
        s
        for s in standin_mod.BUS.subscriptions
        if s.topic == topic and not s.destroyed and id(s) not in before
    ]


def test_map_server_stopped_with_containers_not_yet_flushed_exits_0_and_frees_its_store(
    ros, rcl_context_rules, tmp_path
):
    """A fleet server stopped by Ctrl-C / ``ros2 launch`` (SIGINT, then SIGTERM) while vehicle
    containers wait for the next global flush (global_period_s; with many vehicles there always are
    some). close() runs flush_global, which commits and then publishes on the shut-down context.
    Expected as run_node promises for a stop: status 0, and the store closed (its exclusive flock
    released: another server can open it)."""
    import rclpy_standin
    from fleet_drives import fleet_recordings
    from rclpy.qos import DurabilityPolicy, QoSProfile
    from std_msgs.msg import UInt8MultiArray

    from gs_mapping.messages import RclpyFactory, bytes_to_uint8_multiarray
    from gs_mapping.nodes.map_server_node import MapServerNode
    from gs_mapping.runtime.rclpy_runtime import run_node

    rclpy, _ = ros
    rec = fleet_recordings(vehicles=1, frames=3)[0]
    store = tmp_path / "fleet.sqlite3"
    args = [
        "map_server_node",
        "--ros-args",
        "-p",
        f"map_server_node.store_path:={store}",
        "-p",
        "map_server_node.global_period_s:=30.0",  # the flush is still to come when the signal comes
    ]
    context = rclpy.Context()
    topic = "/vehicle1/mapper_node/map_snapshot"
    before = {id(s) for s in rclpy_standin.BUS.subscriptions}
    t, out = _run_in_thread(run_node, MapServerNode, args, context)
    end = time.monotonic() + 30
    while not _live(rclpy_standin, topic, before):
        assert time.monotonic() < end and t.is_alive(), out
        time.sleep(0.01)
    vehicle = rclpy.create_node("vehicle1_mapper", context=context)
    try:
        qos = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        pub = vehicle.create_publisher(UInt8MultiArray, topic, qos)
        pub.publish(bytes_to_uint8_multiarray(rec.containers[0], RclpyFactory()))
        sub = _live(rclpy_standin, topic, before)[0]
        while sub.queue:  # taken by the executor: the container is ingested, not yet flushed
            assert time.monotonic() < end
            time.sleep(0.001)
        time.sleep(0.3)
    finally:
        _signal(context)
        t.join(30)
        vehicle.destroy_node()
    assert not t.is_alive()
    assert "exc" not in out, f"run_node raised {type(out['exc']).__name__}: {out['exc']}"
    assert out["rc"] == 0
    fd = os.open(store, os.O_RDONLY)  # the store's flock is free again (fleet_store.py: _hold)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------------------------
# the receiver's cloud as ROS 2's own readers take it


_PC2_DATATYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 8: "f8"}


def _sensor_msgs_py_read_points(cloud, field_names):
    """sensor_msgs_py.point_cloud2.read_points (ros2/common_interfaces humble), its steps line for
    line: a dtype from the PointFields (``dtype_from_fields``: each field's datatype at its offset,
    itemsize = point_step), the data buffer viewed as width * height such points, the fields kept,
    byte-swapped when is_bigendian differs from the host."""
    import sys

    import numpy as np

    names, formats, offsets = [], [], []
    for i, f in enumerate(cloud.fields):
        dt = np.dtype(_PC2_DATATYPES[f.datatype])
        assert f.count > 0, "Can't process fields with count = 0."
        for a in range(f.count):
            name = (f.name or f"unnamed_field_{i}") + (f"_{a}" if f.count > 1 else "")
            assert name not in names, "Duplicate field names are not allowed!"
            names.append(name)
            offsets.append(f.offset + a * dt.itemsize)
            formats.append(dt.str)
    dtype = np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": cloud.point_step})
    points = np.ndarray(shape=(cloud.width * cloud.height,), dtype=dtype, buffer=cloud.data)
    points = points[list(field_names)]
    if bool(sys.byteorder != "little") != bool(cloud.is_bigendian):
        points = points.byteswap(inplace=True)
    return points


def test_map_cloud_reads_in_sensor_msgs_py_and_rvizs_rgb8_as_the_map_sent(ros):
    """What `ros2 topic echo`-side Python tools (sensor_msgs_py.read_points) and RViz's PointCloud2
    RGB8 transformer (the 'rgb' field's four bytes as a uint32 0x00RRGGBB) read from the
    rclpy-published ~/map_cloud, taken through a real rclpy subscription: the positions, opacities
    and colours of the map the mapper sent (its snapshot decoded), at min_opacity's cut."""
    import numpy as np
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import DurabilityPolicy, QoSProfile
    from sensor_msgs.msg import PointCloud2
    from synthetic_maps import synthetic_map

    from gs_map_share.snapshot import decode_map, encode_map
    from gs_mapping.messages import RclpyFactory, bytes_to_uint8_multiarray
    from gs_mapping.nodes.map_receiver_node import MapReceiverNode
    from gs_mapping.runtime.rclpy_runtime import close_node, create_node

    rclpy, _ = ros
    context = rclpy.Context()
    rclpy.init(
        args=["map_receiver_node", "--ros-args", "-p", "map_receiver_node.publish_rate_hz:=50.0"],
        context=context,
    )
    node, obj = create_node(MapReceiverNode, context)
    viewer = rclpy.create_node("viewer", context=context)
    clouds = []
    qos = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    viewer.create_subscription(PointCloud2, "/map_receiver_node/map_cloud", clouds.append, qos)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    executor.add_node(viewer)
    data, _ = encode_map(synthetic_map(200, 0, seed=11))
    try:
        obj.on_container(bytes_to_uint8_multiarray(data, RclpyFactory()))
        end = time.monotonic() + 10
        while not clouds and time.monotonic() < end:
            executor.spin_once(timeout_sec=0.05)
    finally:
        executor.shutdown()
        viewer.destroy_node()
        context.try_shutdown()
        close_node(node, obj)
    assert clouds, "no cloud"
    sent = decode_map(data)
    keep = np.asarray(sent.opacities()) >= 0.05
    pts = _sensor_msgs_py_read_points(clouds[-1], ("x", "y", "z", "opacity", "rgb"))
    assert len(pts) == keep.sum() > 0
    xyz = np.stack([pts["x"], pts["y"], pts["z"]], 1).astype(np.float64)
    order = lambda a: np.lexsort(np.round(a, 4).T)  # noqa: E731 - the same points, any order
    np.testing.assert_allclose(
        xyz[order(xyz)], np.asarray(sent.means)[keep][order(np.asarray(sent.means)[keep])], atol=1e-5
    )
    packed = np.ascontiguousarray(pts["rgb"]).view(np.uint32)
    rgb = np.stack([(packed >> 16) & 255, (packed >> 8) & 255, packed & 255], 1)
    want = np.clip(np.round(np.asarray(sent.colors())[keep] * 255), 0, 255)
    np.testing.assert_array_equal(rgb[order(xyz)], want[order(np.asarray(sent.means)[keep])])
    np.testing.assert_allclose(
        np.sort(pts["opacity"]), np.sort(np.asarray(sent.opacities())[keep]), atol=1e-6
    )


# ------------------------------------------------------------------------------------------------
# names rmw refuses


def _rmw_full_topic_name_error(name: str):
    """rmw ``rmw_validate_full_topic_name`` (ros2/rmw humble, src/validate_full_topic_name.c), its
    checks in its order: (message, index) of the first fault, None for a valid name."""
    if not name:
        return "topic name must not be empty", 0
    if name[0] != "/":
        return "topic name must be absolute, it must lead with a '/'", 0
    if name[-1] == "/":
        return "topic name must not end with a forward slash", len(name) - 1
    for i, c in enumerate(name):
        if not ((c.isascii() and c.isalnum()) or c in "_/"):
            return "topic name must not contain characters other than alphanumerics, '_', or '/'", i
    for i in range(len(name) - 1):
        if name[i] == "/" and name[i + 1] == "/":
            return "topic name must not contain repeated '/'", i + 1
        if name[i] == "/" and name[i + 1].isdigit():
            return "topic name must not have a token that starts with a number", i + 1
    if len(name) > 255:  # RMW_TOPIC_MAX_NAME_LENGTH
        return "topic name should not exceed 255", 254
    return None


@pytest.fixture
def rmw_name_rules(ros, monkeypatch):
    """The stand-in's name resolution with rcl's check: ``rcl_node_resolve_name`` expands, remaps and
    then validates with ``rmw_validate_full_topic_name`` (rcl/src/rcl/node_resolve_name.c), and
    rclpy's C++ throws (a RuntimeError); rclpy's Node.create_subscription / create_publisher then
    call ``validate_full_topic_name``, which raises InvalidTopicNameException from the same rule."""
    _, standin = ros
    resolve = standin.rclpy_resolve_name

    def resolve_name(node, topic, only_expand, is_service):
        out = resolve(node, topic, only_expand, is_service)
        if _rmw_full_topic_name_error(out) is not None:
            raise standin.RCLError(f"failed to resolve name '{topic}'")
        return out

    monkeypatch.setattr(standin, "rclpy_resolve_name", resolve_name)
    monkeypatch.setattr(standin, "rclpy_get_validation_error_for_full_topic_name", _rmw_full_topic_name_error)
    return standin


def test_the_rmw_name_rule_as_written():
    """The port above on names ROS 2's docs give as valid and invalid (design article 'Topic and
    Service name mapping to DDS' / rmw's test_validate_full_topic_name.cpp)."""
    for ok in ("/foo", "/abc123", "/_foo", "/Foo", "/foo/bar", "/foo_bar/baz_qux"):
        assert _rmw_full_topic_name_error(ok) is None, ok
    for bad in ("", "foo", "/foo/", "/foo-bar", "/foo//bar", "/1foo", "/foo/1bar", "/foo bar", "/~foo"):
        assert _rmw_full_topic_name_error(bad) is not None, bad


NAMES_RMW_REFUSES = [
    pytest.param(
        "map_server_node",
        ["-p", "map_server_node.vehicles:=[truck-7, truck-8]"],
        id="vehicle-namespace-with-a-dash",
    ),
    pytest.param(
        "map_receiver_node",
        ["-p", "map_receiver_node.delta_topic:=/robot1//mapper_node/map_delta"],
        id="topic-with-a-double-slash",
    ),
    pytest.param(
        "mapper_node",
        ["-p", "mapper.device:=cpu", "-p", "mapper.topics.color:=/camera/0/image_raw"],
        id="topic-token-starting-with-a-digit",
    ),
]


@pytest.mark.parametrize("name, args", NAMES_RMW_REFUSES)
def test_a_topic_name_rmw_refuses_is_one_line_and_exit_2(ros, rmw_name_rules, tmp_path, capsys, name, args):
    """run_node's docstring: 'A bad parameter is one line and exit status 2' (as a wrong type or a
    value out of range already is). Hostname-style vehicle namespaces (``truck-7``), a doubled '/'
    and ROS 1-era topic names are values users write; rcl refuses them when the node subscribes."""
    rclpy, _ = ros
    from gs_mapping.nodes.registry import node_class
    from gs_mapping.runtime.rclpy_runtime import run_node

    argv = [name, "--ros-args", *args]
    if name == "map_server_node":
        argv += ["-p", f"map_server_node.store_path:={tmp_path / 'fleet.sqlite3'}"]
    try:
        rc = run_node(node_class(name), argv, rclpy.Context())
    except Exception as exc:  # noqa: BLE001 - what ros2 run would print as a traceback
        pytest.fail(f"run_node raised {type(exc).__name__}: {exc}")
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, (rc, err)


def test_cli_refuses_vehicle_namespaces_that_are_no_ros2_names(tmp_path):
    """rcl refuses a node namespace and a topic with a '-' (rmw validate_namespace /
    validate_full_topic_name), so no mapper_node can run in ``truck-7`` and publish
    ``/truck-7/mapper_node/map_delta``. The CLI reads the same file (README) and should say so in
    one line naming the file, as it does for values rcl types differently."""
    from gs_mapping.errors import GsMappingError
    from gs_mapping.nodes.map_server_node import MapServerNode

    f = tmp_path / "fleet.yaml"
    f.write_text("/**:\n  ros__parameters:\n    map_server_node: {vehicles: [truck-7, truck-8]}\n")
    with pytest.raises(GsMappingError, match="truck-7"):
        MapServerNode.load_config(str(f))
