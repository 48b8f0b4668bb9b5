"""Zenoh runtime: rmw_zenoh's wire format, and nodes as real OS processes through a real router.

The format checks compare with rmw_zenoh's own ``docs/design.md`` (ros2/rmw_zenoh): its example
keys and tokens are rebuilt byte for byte from the same inputs, and the attachment is compared with
zenoh-ext's serializer (the one rmw_zenoh encodes it with). No rmw_zenoh_cpp process runs here
(no ROS 2 install): what an rmw_zenoh graph sees is checked by parsing the tokens with its rules.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from synthetic_maps import synthetic_map

from gs_mapping.errors import MessageError
from gs_mapping.nodes.context import LATCHED_QOS, RELIABLE_QOS, QoS
from gs_mapping.runtime import zenoh_wire as zw

zenoh = pytest.importorskip("zenoh")

STRING_HASH = "RIHS01_df668c740482bbd48fb39d76a70dfd4bd59db1288021743503259e948f6b1a18"  # design.md
STRING_DDS = "std_msgs::msg::dds_::String_"


def test_data_keys_are_the_documents_examples():
    from gs_mapping.runtime.type_hash import type_hash

    assert type_hash("std_msgs/msg/String") == STRING_HASH
    assert zw.topic_keyexpr(0, "/chatter", STRING_DDS, STRING_HASH) == f"0/chatter/{STRING_DDS}/{STRING_HASH}"
    assert (
        zw.topic_keyexpr(0, "/robot1/chatter", STRING_DDS, STRING_HASH)
        == f"0/robot1/chatter/{STRING_DDS}/{STRING_HASH}"
    )


def test_liveliness_tokens_are_the_documents_examples():
    node = zw.GraphEntity(2, "aac3178e146ba6f1fc6e6a4085e77f21", "0", "0", zw.NODE, "/", "/", "listener")
    assert node.keyexpr == "@ros2_lv/2/aac3178e146ba6f1fc6e6a4085e77f21/0/0/NN/%/%/listener"
    sub = zw.GraphEntity(
        2,
        "aac3178e146ba6f1fc6e6a4085e77f21",
        "0",
        "10",
        zw.SUBSCRIPTION,
        "/",
        "/",
        "listener",
        "/chatter",
        STRING_DDS,
        STRING_HASH,
        zw.RmwQos.from_qos(QoS(reliable=True, depth=10)),
    )
    expected_sub = (
        "@ros2_lv/2/aac3178e146ba6f1fc6e6a4085e77f21/0/10/MS/%/%/listener/%chatter/"
        f"{STRING_DDS}/{STRING_HASH}/::,10:,:,:,,"
    )
    assert sub.keyexpr == expected_sub
    talker = (
        "@ros2_lv/2/8b20917502ee955ac4476e0266340d5c/0/10/MP/%/%/talker/%chatter/"
        f"{STRING_DDS}/{STRING_HASH}/::,7:,:,:,,"
    )
    parsed = zw.parse_liveliness(talker)
    assert (parsed.kind, parsed.node_name, parsed.namespace, parsed.topic) == (
        "MP",
        "talker",
        "/",
        "/chatter",
    )
    assert parsed.qos == zw.RmwQos(depth=7)
    assert parsed.keyexpr == talker  # what we parse we write back identically
    assert zw.parse_liveliness(expected_sub) == sub


def test_qos_strings_cover_our_profiles():
    latched = zw.qos_keyexpr(zw.RmwQos.from_qos(LATCHED_QOS))
    assert latched == ":1:,1:,:,:,,"  # transient local (1), depth 1, the rest default
    sensor = zw.qos_keyexpr(zw.RmwQos.from_qos(QoS(reliable=False, depth=5)))
    assert sensor == "2::,5:,:,:,,"  # best effort (2)
    for text in (latched, sensor, "::,:,:,:,,", "2:1:2,100:1,500:3,0:2,10,0"):
        assert zw.qos_keyexpr(zw.parse_qos_keyexpr(text)) == text


@pytest.mark.parametrize(
    "bad",
    [
        "@ros2_lv/0/abc/0/0/NN/%/%",  # too few parts
        "@other/0/abc/0/0/NN/%/%/node",  # admin space
        "@ros2_lv/0/abc/0/0/XX/%/%/node",  # entity kind
        "@ros2_lv/0/abc/0//NN/%/%/node",  # empty part
        "@ros2_lv/0/abc/0/1/MP/%/%/node/%t/T_/RIHS01_0",  # publisher without QoS
        "@ros2_lv/0/abc/0/1/MP/%/%/node/%t/T_/RIHS01_0/::,x:,:,:,,",  # bad depth
    ],
)
def test_malformed_tokens_are_refused_like_rmw_zenoh(bad):
    with pytest.raises(MessageError):
        zw.parse_liveliness(bad)


def test_attachment_is_zenoh_ext_serialisation():
    from zenoh.ext import Int64, z_serialize

    gid = bytes(range(100, 116))
    ours = zw.encode_attachment(7, 1_700_000_000_123_456_789, gid)
    assert ours == z_serialize((Int64(7), Int64(1_700_000_000_123_456_789), gid)).to_bytes()
    assert len(ours) == 33
    back = zw.decode_attachment(ours)
    assert (back.sequence_number, back.source_timestamp_ns, back.gid) == (7, 1_700_000_000_123_456_789, gid)
    with pytest.raises(MessageError):
        zw.decode_attachment(ours[:-1])


def test_gid_is_xxh3_128_of_the_token():
    xxhash = pytest.importorskip("xxhash")
    key = "@ros2_lv/0/abc/0/0/NN/%/%/n"
    h = xxhash.xxh3_128(key.encode()).digest()  # canonical form: high 64 bits first, big endian
    assert zw.entity_gid(key) == h[8:][::-1] + h[:8][::-1]  # rmw_zenoh: low64 then high64, LE


def test_latched_state_reaches_a_late_subscriber_and_keep_last_drops_oldest():
    """Transient-local over zenoh-ext's advanced publisher/subscriber (rmw_zenoh >= 0.2.2): a
    subscriber that joins after the sample was published still gets it; a keep-last-2 queue that is
    not drained keeps the newest two, counts the rest as dropped (in the node's diagnostics too)."""
    from gs_mapping.nodes.diagnostics import NodeDiagnostics
    from gs_mapping.runtime.zenoh_runtime import ZenohContext, run_router

    endpoint = f"tcp/127.0.0.1:{_free_port()}"
    router = run_router([endpoint])
    pub_ctx = ZenohContext("state_pub", domain_id=DOMAIN + 2, connect=[endpoint])
    sub_ctx = None
    try:
        pub = pub_ctx.create_publisher("/gs_test/state", "std_msgs/msg/String", LATCHED_QOS)
        pub.publish(pub_ctx.factory.make("std_msgs/msg/String", data="the state"))
        time.sleep(0.5)  # the subscriber joins after the sample went out
        sub_ctx = ZenohContext("late_sub", domain_id=DOMAIN + 2, connect=[endpoint])
        got, burst = [], []
        sub_ctx.create_subscription(
            "/gs_test/state", "std_msgs/msg/String", LATCHED_QOS, lambda m: got.append(m.data)
        )
        sub_ctx.spin(until=lambda: got, timeout_s=15)
        assert got == ["the state"]

        diag = NodeDiagnostics("late_sub")
        sub_ctx.attach_diagnostics(diag)
        sub_ctx.create_subscription(
            "/gs_test/burst", "std_msgs/msg/String", QoS(depth=2), lambda m: burst.append(m.data)
        )
        fast = pub_ctx.create_publisher("/gs_test/burst", "std_msgs/msg/String", QoS(depth=2))
        pub_ctx.spin(until=lambda: fast.subscription_count() > 0, timeout_s=15)
        time.sleep(0.3)
        for i in range(6):
            fast.publish(pub_ctx.factory.make("std_msgs/msg/String", data=f"m{i}"))
        time.sleep(1.0)  # all six arrive before the node takes any
        sub_ctx.spin_once(0.1)
        assert burst == ["m4", "m5"]
        assert sub_ctx.dropped_samples["/gs_test/burst"] == 4
        assert diag.dropped == {"/gs_test/burst": 4}
    finally:
        for c in (sub_ctx, pub_ctx):
            if c is not None:
                c.close()
        router.close()


def test_a_deleted_key_is_no_message():
    """A DELETE sample on a topic's key (``z_delete``, a tool cleaning keys) carries no message:
    it is neither delivered nor counted as undecodable; the next message is delivered."""
    from gs_mapping.runtime.zenoh_runtime import ZenohContext, run_router

    endpoint = f"tcp/127.0.0.1:{_free_port()}"
    router = run_router([endpoint])
    sub_ctx = ZenohContext("sub", domain_id=DOMAIN + 3, connect=[endpoint])
    pub_ctx = ZenohContext("pub", domain_id=DOMAIN + 3, connect=[endpoint])
    try:
        got: list[str] = []
        sub_ctx.create_subscription(
            "/gs_test/t", "std_msgs/msg/String", RELIABLE_QOS, lambda m: got.append(m.data)
        )
        pub = pub_ctx.create_publisher("/gs_test/t", "std_msgs/msg/String", RELIABLE_QOS)
        pub_ctx.spin(until=lambda: pub.subscription_count() > 0, timeout_s=15)
        pub_ctx.session.delete(pub.key)
        pub.publish(pub_ctx.factory.make("std_msgs/msg/String", data="after"))
        sub_ctx.spin(until=lambda: got, timeout_s=15)
        assert got == ["after"] and not sub_ctx.bad_samples, (got, sub_ctx.bad_samples)
    finally:
        pub_ctx.close()
        sub_ctx.close()
        router.close()


def test_bad_endpoint_is_one_line_exit_2():
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "gs_mapping",
            "run",
            "map_receiver_node",
            "--transport",
            "zenoh",
            "--connect",
            "bogus",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "bogus" in proc.stderr and ".rs:" not in proc.stderr


def test_a_node_or_player_that_cannot_start_exits_2_and_does_not_hang_on_its_open_session(tmp_path):
    """The session is open before the node is built: a node refusing its configuration (here a
    store that is no database) must still exit 2 at once, as on DDS, not live on in Zenoh's
    threads (a supervisor would take it for a running server). No router is needed: the session
    listens on its own and the node's error comes first."""
    (tmp_path / "bad.sqlite3").write_bytes(b"garbage, not a database" * 10)
    cfg = tmp_path / "server.yaml"
    cfg.write_text(
        f"/**:\n  ros__parameters:\n    map_server_node:\n      store_path: {tmp_path / 'bad.sqlite3'}\n"
    )
    argv = [
        "run",
        "map_server_node",
        "--transport",
        "zenoh",
        "--listen",
        "tcp/127.0.0.1:0",
        "--config",
        str(cfg),
    ]
    _exits_2_saying(argv, "bad.sqlite3: not a usable SQLite database")
    (tmp_path / "bag").mkdir()  # and `play` given a bag it cannot open
    (tmp_path / "bag" / "metadata.yaml").write_text("not: [a, bag")
    argv = ["play", str(tmp_path / "bag"), "--transport", "zenoh", "--listen", "tcp/127.0.0.1:0"]
    _exits_2_saying(argv, "cannot open bag")


def _exits_2_saying(argv: list[str], what: str) -> None:
    """The command (with no router to reach) ends at once with exit 2 and ``what`` on its last line
    (a hang would be the 30 s timeout)."""
    proc = subprocess.run(
        [sys.executable, "-m", "gs_mapping", *argv, "--connect", "tcp/127.0.0.1:1"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2, proc.stderr
    assert what in proc.stderr.strip().splitlines()[-1] and "Traceback" not in proc.stderr


# ---- real processes --------------------------------------------------------------------------

DOMAIN = 41


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(*args):
    env = dict(os.environ, OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE")
    return subprocess.Popen(
        [sys.executable, "-m", "gs_mapping", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _stop(proc):
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    line = [ln for ln in out.splitlines() if ln.startswith("summary: ")]
    return (json.loads(line[-1][len("summary: ") :]) if line else None), err


def _real_snapshot() -> bytes:
    from gs_map_share.quantize import QuantParams, to_qmap
    from gs_map_share.snapshot import encode_snapshot

    p = QuantParams.from_quality(3)
    data, _ = encode_snapshot(to_qmap(synthetic_map(400, 1, seed=5), p), p, map_id=3, seq=4)
    return data


def test_receiver_process_over_a_router_process_sees_a_real_snapshot():
    """router process ← receiver process (gs-mapping run --transport zenoh) ← this process as the
    mapper: the receiver rebuilds the snapshot (its /diagnostics say so, read over Zenoh), survives
    garbage on its topic, and its graph tokens are what an rmw_zenoh graph cache would list."""
    from gs_map_share.receiver import MapStore
    from gs_mapping.runtime.type_hash import type_hash
    from gs_mapping.runtime.zenoh_runtime import ZenohContext

    port = _free_port()
    endpoint = f"tcp/127.0.0.1:{port}"
    router = _spawn("router", "--listen", endpoint)
    procs = [router]
    ctx = None
    try:
        assert "ready" in router.stdout.readline()
        rx = _spawn(
            "run",
            "map_receiver_node",
            "--transport",
            "zenoh",
            "--connect",
            endpoint,
            "--domain-id",
            str(DOMAIN),
            "--namespace",
            "robot1",
        )
        procs.append(rx)
        assert rx.stdout.readline().strip() == "map_receiver_node: ready"
        ctx = ZenohContext("mapper_node", "robot1", DOMAIN, connect=[endpoint])
        diag: dict[str, dict[str, str]] = {}
        attachments = []

        def on_diag(msg):
            for st in msg.status:
                diag[st.name] = {kv.key: kv.value for kv in st.values}

        ctx.create_subscription("/diagnostics", "diagnostic_msgs/msg/DiagnosticArray", RELIABLE_QOS, on_diag)
        ctx.subscribe_raw(
            ctx.topic_key("/diagnostics", "diagnostic_msgs/msg/DiagnosticArray"),
            lambda key, payload, att: attachments.append(zw.decode_attachment(att)),
        )
        snap_pub = ctx.create_publisher("~/map_snapshot", "std_msgs/msg/UInt8MultiArray", LATCHED_QOS)
        snapshot = _real_snapshot()
        expected = MapStore()
        expected.receive(snapshot)

        # the graph, as rmw_zenoh's graph cache reads it from the tokens
        def their_tokens():  # as rmw_zenoh does at start: a liveliness query over the domain
            keys = ctx.liveliness_get(f"@ros2_lv/{DOMAIN}/**")
            return [t for t in map(zw.parse_liveliness, keys) if t.zid != ctx.zid]

        ctx.spin(until=lambda: snap_pub.subscription_count() > 0, timeout_s=20)
        end = time.monotonic() + 20
        while len(theirs := their_tokens()) < 5 and time.monotonic() < end:  # node, 2 subs, 2 pubs
            ctx.spin_once(0.2)
        # the same entities reach the live graph view (liveliness subscriber, like the graph cache)
        assert {e.keyexpr for e in ctx.graph() if e.zid != ctx.zid} == {t.keyexpr for t in theirs}
        nodes = {(t.namespace, t.node_name) for t in theirs if t.kind == zw.NODE}
        assert nodes == {("/robot1", "map_receiver_node")}
        subs = {t.topic: t for t in theirs if t.kind == zw.SUBSCRIPTION}
        assert set(subs) == {"/robot1/mapper_node/map_delta", "/robot1/mapper_node/map_snapshot"}
        snap_sub = subs["/robot1/mapper_node/map_snapshot"]
        assert snap_sub.type_name == "std_msgs::msg::dds_::UInt8MultiArray_"
        assert snap_sub.type_hash == type_hash("std_msgs/msg/UInt8MultiArray")
        assert snap_sub.qos.durability == zw.TRANSIENT_LOCAL and snap_sub.qos.depth == 1
        pubs = {t.topic: t for t in theirs if t.kind == zw.PUBLISHER}
        assert {"/diagnostics", "/robot1/map_receiver_node/map_cloud"} <= set(pubs)
        assert pubs["/diagnostics"].qos.reliability == zw.RELIABLE

        # garbage first (must be counted and skipped, not kill the node), then the real snapshot; the
        # garbage goes to the delta topic (depth 100): on the keep-last-1 snapshot topic the snapshot
        # may rightly replace it before the node takes it
        delta_pub = ctx.create_publisher("~/map_delta", "std_msgs/msg/UInt8MultiArray", QoS(reliable=True))
        ctx.spin(until=lambda: delta_pub.subscription_count() > 0, timeout_s=20)
        for _ in range(2):
            delta_pub.publish_serialized(b"\x00\x01\x00\x00\xff\xff")
        snap_pub.publish(
            ctx.factory.make("std_msgs/msg/UInt8MultiArray", data=np.frombuffer(snapshot, np.uint8))
        )

        def done():
            d = diag.get("map_receiver_node", {})
            return d.get("seq") == str(expected.seq) and d.get("state_crc") == str(expected.header.state_crc)

        ctx.spin(until=done, timeout_s=60)
        assert done(), f"receiver did not rebuild the snapshot: {diag}"
        assert rx.poll() is None, "the receiver died"
        # rmw_zenoh's attachment on every sample: sequence numbers from 1, the GID of the token
        diag_token = next(
            e
            for e in ctx.graph()
            if e.zid != ctx.zid and e.kind == zw.PUBLISHER and e.topic == "/diagnostics"
        )
        diag_gid = diag_token.gid
        ctx.spin(until=lambda: sum(a.gid == diag_gid for a in attachments) >= 2, timeout_s=20)
        theirs_att = [a for a in attachments if a.gid == diag_gid]
        assert len(theirs_att) >= 2, f"no attachment carries the token's GID {diag_gid.hex()}: {attachments}"
        assert theirs_att and [a.sequence_number for a in theirs_att] == list(
            range(theirs_att[0].sequence_number, theirs_att[0].sequence_number + len(theirs_att))
        )
        assert abs(theirs_att[-1].source_timestamp_ns - time.time_ns()) < 60e9

        summary, err = _stop(rx)
        assert summary["seq"] == expected.seq
        # counted in the node's diagnostics (rejected), logged once for two
        assert summary["rejected"].get("/robot1/mapper_node/map_delta") == 2, summary["rejected"]
        assert "on /robot1/mapper_node/map_delta: undecodable sample" in err
        assert err.count("undecodable sample") == 1
        assert "no Zenoh router reachable" not in err

        # its tokens vanish with it
        def gone():
            return not any(
                zw.parse_liveliness(k).node_name == "map_receiver_node"
                for k in ctx.liveliness_get(f"@ros2_lv/{DOMAIN}/**")
            )

        ctx.spin(until=gone, timeout_s=10)
        assert gone()
    finally:
        if ctx is not None:
            ctx.close()
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.communicate(timeout=30)


@pytest.mark.slow
def test_mapper_and_receiver_processes_exchange_map_deltas_over_zenoh(kitchen_bag, fast_nodes_config):
    """router + mapper_node + map_receiver_node (both `gs-mapping run --transport zenoh`) fed by
    `gs-mapping play --transport zenoh`: the receiver rebuilds the mapper's map from the real
    deltas/snapshots it publishes (same sequence number and state CRC, read from /diagnostics)."""
    from gs_mapping.runtime.zenoh_runtime import ZenohContext

    cfg = str(fast_nodes_config)
    endpoint = f"tcp/127.0.0.1:{_free_port()}"
    domain = ["--transport", "zenoh", "--connect", endpoint, "--domain-id", str(DOMAIN + 1)]
    router = _spawn("router", "--listen", endpoint)
    procs = [router]
    ctx = None
    try:
        assert "ready" in router.stdout.readline()
        mapper = _spawn("run", "mapper_node", "--config", cfg, *domain)
        rx = _spawn("run", "map_receiver_node", "--config", cfg, *domain)
        procs += [mapper, rx]
        ctx = ZenohContext("test_observer", domain_id=DOMAIN + 1, connect=[endpoint])
        diag: dict[str, dict[str, str]] = {}

        def on_diag(msg):
            for st in msg.status:
                diag[st.name] = {kv.key: kv.value for kv in st.values}

        ctx.create_subscription("/diagnostics", "diagnostic_msgs/msg/DiagnosticArray", RELIABLE_QOS, on_diag)
        ctx.spin(until=lambda: {"mapper_node", "map_receiver_node"} <= set(diag), timeout_s=120)
        assert {"mapper_node", "map_receiver_node"} <= set(diag), f"nodes did not come up: {diag}"
        player = _spawn(
            "play", str(kitchen_bag), "--rate", "0.1", *domain[:-2], "--domain-id", str(DOMAIN + 1)
        )
        procs.append(player)

        def converged():
            m, r = diag.get("mapper_node", {}), diag.get("map_receiver_node", {})
            return (
                int(m.get("seq", -1)) >= 2
                and r.get("seq") == m.get("seq")
                and r.get("state_crc") == m.get("state_crc")
            )

        ctx.spin(until=lambda: player.poll() is not None and converged(), timeout_s=400)
        assert player.returncode == 0, player.stderr.read()
        # the mapper may still work through queued frames: agree, and still agree a moment later
        ctx.spin(timeout_s=3.0)
        ctx.spin(until=converged, timeout_s=120)
        assert converged(), f"receiver did not follow the mapper: {diag}"
        final = dict(diag["mapper_node"])
        rx_summary, _ = _stop(rx)
        mapper_summary, _ = _stop(mapper)
        assert mapper_summary["keyframes"] >= 2, mapper_summary
        assert str(rx_summary["seq"]) == final["seq"] and str(rx_summary["state_crc"]) == final["state_crc"]
        assert sum(rx_summary["rejected"].values()) == 0
    finally:
        if ctx is not None:
            ctx.close()
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.communicate(timeout=30)


def test_only_a_client_session_waits_long_for_room_for_a_fragmented_message(tmp_path):
    """docs/fleet.md: a client (one link, its uplink) waits up to 5 s for room for a message of many
    fragments; routers and peers send to every subscriber themselves and keep Zenoh's own wait, so
    one receiver that stopped reading does not hold the others (test_outside_fleet7); a file that
    names a mode is read for it."""
    from gs_mapping.runtime.zenoh_runtime import _FRAGMENT_WAIT, MAX_FRAGMENT_WAIT_US, session_config

    zenoh_default = zenoh.Config().get_json(_FRAGMENT_WAIT)
    assert session_config("client").get_json(_FRAGMENT_WAIT) == str(MAX_FRAGMENT_WAIT_US)
    assert session_config("peer").get_json(_FRAGMENT_WAIT) == zenoh_default
    assert session_config("router").get_json(_FRAGMENT_WAIT) == zenoh_default
    for mode, wait in (("client", str(MAX_FRAGMENT_WAIT_US)), ("peer", zenoh_default)):
        f = tmp_path / f"{mode}.json5"
        f.write_text(f'{{ mode: "{mode}" }}')
        assert session_config("peer", config_file=str(f)).get_json(_FRAGMENT_WAIT) == wait
