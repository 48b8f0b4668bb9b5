"""Guards for behaviours a mutation survey (session 33, mut33c) of today's changes found unguarded,
each compared with an independent real thing: topic choice for a depth named alone and a registered
depth of another camera (docs/inputs.md's namespace rule worked by hand on the real RealSense kitchen
bag's topics), 8UC3 / 8UC4 (a real frame; the encoding the warning names converts it alike), the files
of ``CYCLONEDDS_URI`` (the file the real Cyclone DDS library opens), checkpoint and run-directory
paths (the kernel's stat / mkdir answers, a link to the shipped checkpoint), the router's start line
(the port the kernel accepts a connect on) and ``run --network`` (Cyclone's SPDP multicast received
on the host's network). Runs in all three venvs (skips what a venv lacks)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

# ------------------------------------------------------------------------------------------------
# gs_mapping.topics: a depth named alone takes the colour of its own camera (docs/inputs.md)

I, INFO = "sensor_msgs/msg/Image", "sensor_msgs/msg/CameraInfo"


def _realsense_rig(shared_data, *cameras: str) -> dict[str, str]:
    """The real RealSense kitchen bag's topics ({name: type}), its camera (``/camera/camera``)
    recorded under each of ``cameras`` as namespace (TF kept)."""
    from gs_mapping.bag import BagReader

    with BagReader(shared_data / "realsense_kitchen_rgbd") as r:
        types = {t.name: t.type for t in r.topics}
    out = {n: t for n, t in types.items() if not n.startswith("/camera/camera/")}
    for cam in cameras:
        out |= {
            cam + n[len("/camera/camera") :]: t for n, t in types.items() if n.startswith("/camera/camera/")
        }
    return out


COLOR = "/color/image_raw/compressed"
DEPTH = "/aligned_depth_to_color/image_raw/compressedDepth"


def test_a_depth_named_alone_takes_the_colour_of_the_most_levels_not_of_a_camera_one_level_short(shared_data):
    """Two cameras of one rig, ``/rig/front`` and ``/rig/rear``: rear's aligned depth shares two
    namespace levels (rig, rear) with rear's colour and one (rig) with front's. The rule ("the colour
    sharing the most namespace levels with it") gives rear's colour, for each camera in turn; a
    camera one level short is not a candidate (both cameras alike would be 'ambiguous')."""
    from gs_mapping.topics import discover

    types = _realsense_rig(shared_data, "/rig/front", "/rig/rear")
    for cam in ("/rig/front", "/rig/rear"):
        got = discover(types, depth=cam + DEPTH)
        assert (got.color, got.camera_info, got.depth) == (
            cam + COLOR,
            cam + "/color/camera_info",
            cam + DEPTH,
        )


def test_a_depth_in_no_cameras_namespace_is_refused_even_where_one_colour_ranks_first(shared_data):
    """docs/inputs.md: "None sharing any [namespace level] ...: one line naming the colour topics, to
    choose with --color-topic". A depth at ``/depth/image_raw`` beside a RealSense colour camera
    (``/rig/front``) and a grey camera (``/rig/mono/image_raw``, no colour word: the colour camera
    ranks first) shares no level with either: refused, not given the first-ranked camera's colour."""
    from gs_mapping.errors import ConfigError
    from gs_mapping.topics import discover

    types = _realsense_rig(shared_data, "/rig/front")
    types |= {"/rig/mono/image_raw": I, "/rig/mono/camera_info": INFO, "/depth/image_raw": I}
    assert discover(types).color == "/rig/front" + COLOR  # (ranked first where nothing is named)
    with pytest.raises(ConfigError) as exc:
        discover(types, depth="/depth/image_raw")
    said = str(exc.value)
    assert "\n" not in said and "--color-topic" in said
    assert "/rig/front" + COLOR in said and "/rig/mono/image_raw" in said, said


def test_a_registered_depth_of_a_sibling_camera_one_level_apart_is_refused_naming_its_colour(shared_data):
    """``--color-topic /rig/front/…`` with ``--depth-topic /rig/rear/aligned_depth_to_color/…``: the
    depth (registered, no CameraInfo of its own taken) shares two levels with rear's colour and one
    with front's, so it is rear's: refused in one line naming rear's colour as the depth's camera
    (not every colour topic). Named with rear's colour it stands."""
    from gs_mapping.errors import ConfigError
    from gs_mapping.topics import discover

    types = _realsense_rig(shared_data, "/rig/front", "/rig/rear")
    with pytest.raises(ConfigError) as exc:
        discover(types, color="/rig/front" + COLOR, depth="/rig/rear" + DEPTH)
    said = str(exc.value)
    assert "\n" not in said and "another camera" in said
    assert f"(that of /rig/rear{COLOR})" in said, said
    got = discover(types, color="/rig/rear" + COLOR, depth="/rig/rear" + DEPTH)
    assert (got.color, got.depth, got.depth_camera_info) == ("/rig/rear" + COLOR, "/rig/rear" + DEPTH, "")


# ------------------------------------------------------------------------------------------------
# gs_mapping.messages.image: 8UC3 / 8UC4 read as bgr8 / bgra8, said once


@pytest.mark.parametrize("encoding,channels", [("8UC3", 3), ("8UC4", 4)])
def test_the_unordered_colour_warning_names_the_encoding_the_pixels_are_read_as(
    shared_data, caplog, encoding, channels
):
    """A real kitchen frame (decoded by the suite's reference decoder, RGB) laid out as an OpenCV
    node's Mat (BGR, BGRA) and sent as ``encoding``: it reads as the frame, and the one warning names
    the encoding whose conversion gives the same pixels (docs/inputs.md: 8UC3 / 8UC4 as bgr8 / bgra8)."""
    import numpy as np

    from gs_mapping.bag import BagReader
    from gs_mapping.messages import compressed_image_to_numpy, image_to_rgb, numpy_to_image

    with BagReader(shared_data / "realsense_kitchen_rgbd") as r:
        _, _, msg = next(iter(r.messages(["/camera/camera" + COLOR])))
    rgb = compressed_image_to_numpy(msg)
    mat = (
        rgb[..., ::-1]
        if channels == 3
        else np.dstack([rgb[..., ::-1], np.full(rgb.shape[:2], 255, np.uint8)])
    )
    with caplog.at_level("WARNING"):
        got = image_to_rgb(numpy_to_image(np.ascontiguousarray(mat), encoding))
    assert np.array_equal(got, rgb)
    said = [m for m in caplog.messages if encoding in m and "no colour order" in m]
    assert len(said) == 1, caplog.messages
    named = re.search(r"taken as (\w+),", said[0]).group(1)
    assert np.array_equal(image_to_rgb(numpy_to_image(np.ascontiguousarray(mat), named)), rgb), said[0]


# ------------------------------------------------------------------------------------------------
# gs_mapping.runtime.dds: the files CYCLONEDDS_URI names, as the real Cyclone DDS reads them

_BAD = "<CycloneDDS><Domain><General><NoSuchElement/></General></Domain></CycloneDDS>"


def _file_cyclone_reads(uri: str) -> str | None:
    """The configuration file the real Cyclone DDS library opened for ``CYCLONEDDS_URI=uri`` (each
    file named in these URIs is an invalid configuration, so Cyclone's error names the one it read
    first), None where it read none."""
    code = "from cyclonedds.domain import DomainParticipant\ntry:\n    DomainParticipant(0)\nexcept Exception:\n    pass\n"
    r = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "CYCLONEDDS_URI": uri},
        capture_output=True,
        text=True,
        timeout=60,
    )
    said = r.stdout + r.stderr
    m = re.search(r"\((\S+) line \d+\)", said) or re.search(r"can't open configuration file (.+)", said)
    return None if m is None or m.group(1).startswith("CYCLONEDDS_URI") else m.group(1).strip()


def test_the_files_of_cyclonedds_uri_are_those_cyclone_opens(tmp_path):
    """CYCLONEDDS_URI holds files (``file://PATH`` or a bare path) and inline XML, comma-separated;
    the project checks each file before Cyclone's C reader opens it (a pipe would block it for ever).
    Which file each URI names is what the real library reads: a bare path beside inline XML too."""
    pytest.importorskip("cyclonedds")
    from gs_mapping.runtime.dds import cyclonedds_uri_files

    bad = tmp_path / "bad.xml"
    bad.write_text(_BAD)
    uris = [
        f"{bad}",
        f"file://{bad}",
        f"<Discovery/>,{bad}",
        f"<Discovery/>, file://{bad}",
        f"<Tracing><Verbosity>finest</></>,{bad}",  # (Cyclone's anonymous close tag)
        f'<Discovery><Peers><Peer address="a,b"/></Peers></Discovery> ,, {bad}',  # (a comma in XML)
        f'<Discovery><Peers><Peer address="h>,{bad}"/></Peers></Discovery>,{bad}',  # (quoted ">")
        f"<Discovery><Peers>,{bad}",  # (XML left open runs to the end: no file)
    ]
    for uri in uris:
        ours = cyclonedds_uri_files(uri)
        assert _file_cyclone_reads(uri) == (ours[0] if ours else None), uri


def test_a_pipe_named_bare_beside_inline_xml_in_cyclonedds_uri_is_refused(tmp_path):
    """``<Discovery/>,/path/to/fifo``: Cyclone reads the bare path (see above) and would wait on the
    pipe for ever; the check refuses it in one line, as it does the ``file://`` spelling."""
    pytest.importorskip("cyclonedds")
    from gs_mapping.errors import ConfigError
    from gs_mapping.runtime.dds import check_cyclonedds_uri

    fifo = tmp_path / "cyclonedds.xml"
    os.mkfifo(fifo)
    good = tmp_path / "good.xml"
    good.write_text("<CycloneDDS/>")
    for uri in (f"<Discovery/>,{fifo}", f"<Tracing/> , {good},{fifo}", f"{good},file://{fifo}"):
        with pytest.raises(ConfigError) as exc:
            check_cyclonedds_uri(uri)
        assert str(exc.value) == f"CYCLONEDDS_URI: {fifo}: not a regular file (a directory, device or pipe)"
    check_cyclonedds_uri(f"<Discovery/>,{good},{tmp_path / 'missing.xml'}")  # (missing: Cyclone says it)


# ------------------------------------------------------------------------------------------------
# gsmap_hd.checkpoint.check_file: what the path is, as the kernel says


def test_a_checkpoint_named_through_a_symlink_loads_as_the_file_it_leads_to(tmp_path):
    """A link to the shipped checkpoint (how a 'latest.pt' is often kept) is that checkpoint: the
    check follows it as open() does, and the state loaded is the file's."""
    pytest.importorskip("torch")
    from gsmap_hd import checkpoint as ckpt
    from gsmap_hd.predict_bag import shipped_checkpoint

    real = shipped_checkpoint(1)
    link = tmp_path / "latest.pt"
    link.symlink_to(real)
    ckpt.check_file(link)
    assert sorted(ckpt.load_state(link)) == sorted(ckpt.load_state(real))


def test_a_device_or_a_path_under_a_file_is_named_for_what_it_is(tmp_path):
    """/dev/null (a character device: 0 bytes, never a file of its own) is 'not a regular file', not
    an 'empty file'; a path under a regular file (the kernel's ENOTDIR) is 'checkpoint not found'."""
    pytest.importorskip("torch")
    import stat

    from gsmap_hd.checkpoint import check_file
    from gsmap_hd.errors import CheckpointError

    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    with pytest.raises(CheckpointError) as exc:
        check_file("/dev/null")
    assert str(exc.value) == "/dev/null: not a regular file (a device, pipe or socket), not a checkpoint"
    notes = tmp_path / "notes.txt"
    notes.write_text("kept")
    with pytest.raises(OSError) as kernel:
        os.stat(notes / "model.pt")
    assert kernel.value.errno == __import__("errno").ENOTDIR
    with pytest.raises(CheckpointError) as exc:
        check_file(notes / "model.pt")
    assert str(exc.value) == f"{notes / 'model.pt'}: checkpoint not found"


# ------------------------------------------------------------------------------------------------
# gsmap_hd.train: a run directory that is no directory

TRAIN = [
    "--frames",
    "1",
    "--batch-size",
    "1",
    "--eval-every",
    "0",
    "--threads",
    "1",
    "--steps",
    "1",
    "--no-progress",
]


def test_hd_train_out_that_is_a_file_or_a_dangling_link_is_not_a_run_directory(tmp_path, capsys):
    """``--out`` naming a regular file (with ``--resume`` too) or a symlink that leads nowhere (the
    kernel's mkdir answers EEXIST for it): one line saying the path exists and is not a run
    directory, exit 2, the file and the link as they were."""
    pytest.importorskip("torch")
    import errno

    from gs_mapping.cli import main

    notes = tmp_path / "notes.txt"
    notes.write_text("kept")
    link = tmp_path / "run"
    link.symlink_to(tmp_path / "nowhere")
    with pytest.raises(OSError) as kernel:
        os.mkdir(link)
    assert kernel.value.errno == errno.EEXIST
    for argv in (["--out", str(notes)], ["--out", str(notes), "--resume"], ["--out", str(link)]):
        assert main(["hd-train", *argv, *TRAIN]) == 2
        err = capsys.readouterr().err.strip()
        assert err == f"gs-mapping hd-train: error: {argv[1]}: exists and is not a run directory", err
    assert notes.read_text() == "kept" and link.is_symlink() and not link.exists()


# ------------------------------------------------------------------------------------------------
# gs_mapping.cli.router: its start line where one of several endpoints asks for port 0


def test_the_router_line_says_port_0_is_the_systems_choice_beside_a_fixed_port(capsys):
    """``router --listen tcp/127.0.0.1:0 --listen tcp/127.0.0.1:P`` (admin space off, the built-in
    config): the system picks the first port, which Zenoh does not tell, so the start line says so
    for it; the fixed one is really listened on (the operating system accepts a connect there), and free again once the router
    has stopped (its session closed: the kernel lets it be bound)."""
    pytest.importorskip("zenoh")
    import socket
    import threading
    import time

    from gs_mapping.cli import main

    with socket.socket() as s:  # a port free now (the kernel's choice)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    accepted = []

    def probe() -> None:
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and not accepted:
            with socket.socket() as c:
                c.settimeout(0.5)
                if c.connect_ex(("127.0.0.1", port)) == 0:
                    accepted.append(port)
            time.sleep(0.1)

    t = threading.Thread(target=probe)
    t.start()
    rc = main(
        ["router", "--duration", "1.0", "--listen", "tcp/127.0.0.1:0", "--listen", f"tcp/127.0.0.1:{port}"]
    )
    t.join()
    line = capsys.readouterr().out.strip()
    assert rc == 0 and accepted, line
    assert f"listening on tcp/127.0.0.1:0, tcp/127.0.0.1:{port} (port 0: the system's choice" in line, line
    with socket.socket() as s:  # stopped, it closed its session: the kernel has the port free again
        s.bind(("127.0.0.1", port))


# ------------------------------------------------------------------------------------------------
# gs_mapping.cli.run_node: --network


def test_run_network_announces_the_node_by_multicast_on_the_network(tmp_path):
    """``run --network`` (README: discover peers on the network; the default is loopback only):
    Cyclone's default discovery, SPDP multicast to 239.255.0.1 on port 7400 + 250 · domain, is
    what a socket joined to that group on this host's network receives (an RTPS packet)."""
    pytest.importorskip("cyclonedds")
    import socket
    import struct
    import time

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:  # a route for multicast?
        try:
            probe.connect(("239.255.0.1", 9))
            here = probe.getsockname()[0]
        except OSError:
            here = "127.0.0.1"
    if here.startswith("127.") or here == "0.0.0.0":
        pytest.skip("no network interface with a multicast route")
    domain = 93
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("", 7400 + 250 * domain))
    group = struct.pack("4s4s", socket.inet_aton("239.255.0.1"), socket.inet_aton("0.0.0.0"))
    s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, group)
    s.settimeout(0.5)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as out:  # does this host hear its own multicast?
        out.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(here))
        out.sendto(b"probe", ("239.255.0.1", 7400 + 250 * domain))
        try:
            heard = s.recvfrom(64)[0] == b"probe"
        except TimeoutError:
            heard = False
    if not heard:
        s.close()
        pytest.skip("this host's network does not deliver multicast back to it")
    cmd = [sys.executable, "-m", "gs_mapping", "run", "map_receiver_node", "--domain-id", str(domain)]
    env = {k: v for k, v in os.environ.items() if k != "CYCLONEDDS_URI"}
    proc = subprocess.Popen(
        [*cmd, "--duration", "4", "--network"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    got = []
    end = time.monotonic() + 8
    try:
        while time.monotonic() < end and not got:
            try:
                data, _ = s.recvfrom(65536)
            except TimeoutError:
                continue
            got += [data] if data[:4] == b"RTPS" else []
    finally:
        proc.communicate(timeout=60)
        s.close()
    assert proc.returncode == 0 and got


def test_run_reads_the_parameters_of_the_node_by_the_name_given_with_name(tmp_path, capsys):
    """A ROS parameter file applies to a node by its fully qualified name (rcl's rule: ``/ns/name``,
    the name after ``--name``): the section under ``/robot1/rx_renamed`` is read for ``--name
    rx_renamed --namespace robot1`` (an unknown key there refused in one line, exit 2, before the node
    starts), and not for the node under its own name (which runs)."""
    from gs_mapping.cli import main

    cfg = tmp_path / "params.yaml"
    cfg.write_text("/robot1/rx_renamed:\n  ros__parameters:\n    map_receiver_node:\n      no_such_key: 1\n")
    argv = ["run", "map_receiver_node", "--config", str(cfg), "--namespace", "robot1", "--duration", "0.2"]
    assert main([*argv, "--name", "rx_renamed", "--domain-id", "94"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown key 'no_such_key'" in err, err
    assert main([*argv, "--domain-id", "94"]) == 0
    assert "map_receiver_node: ready" in capsys.readouterr().out


def test_a_depth_named_alone_in_a_bag_with_no_colour_camera_is_the_no_colour_line(shared_data):
    """The real RealSense kitchen bag less its colour camera (aligned depth, its CameraInfo, TF):
    ``--depth-topic`` named alone gets the line a bag without colour gets with nothing named (no
    colour image topic, the image topics, --color-topic), not 'no topic /camera_info' (a CameraInfo
    of an empty colour topic name nobody gave)."""
    from gs_mapping.errors import ConfigError
    from gs_mapping.topics import discover

    types = {n: t for n, t in _realsense_rig(shared_data, "/camera/camera").items() if "/color/" not in n}
    lines = []
    for depth in (None, "/camera/camera" + DEPTH):
        with pytest.raises(ConfigError) as exc:
            discover(types, depth=depth)
        lines.append(str(exc.value))
    assert lines[0] == lines[1], lines
    assert (
        "no colour image topic" in lines[1]
        and "/camera/camera" + DEPTH in lines[1]
        and "--color-topic" in lines[1]
    )
