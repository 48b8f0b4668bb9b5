"""Hostile-input harness, part 2: every file type we read, mutated (hypothesis, seeded, bounded).

PLY (byte mutations and header lies), snapshot and delta containers (raw and resealed so the damage
reaches the decoders behind the CRCs), rosbag2 MCAP and sqlite3, SPZ, parameter YAML and hd-eval
JSON. Each mutated file goes through the commands that read it; the outcome rule of
``hostile_cases.run_cli`` must hold for every one.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import yaml
from hostile_cases import PLY_HEADER_LIES, make_assets, mutate, run_cli, storage_file
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gs_map_share.container import reseal

FUZZ = settings(
    max_examples=12,
    deadline=None,
    derandomize=True,  # seeded: the same cases every run
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def A(tmp_path_factory):
    return make_assets(tmp_path_factory.mktemp("assets"))


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("work")


def _ok(o):
    assert not o.violation, f"{o.argv}: {o.violation}\n{o.extra.get('traceback', '')}"
    return o


def _fresh(work, name):
    out = work / name
    if out.exists():
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    return out


@FUZZ
@given(st.integers(0, 2**32 - 1))
def test_mutated_ply_through_every_reader(A, work, seed):
    f = work / "m.ply"
    f.write_bytes(mutate(A["ply"].read_bytes(), np.random.default_rng(seed)))
    for argv in (
        ["convert", f, _fresh(work, "o.ply")],
        ["encode", f, _fresh(work, "o.gsd")],
        ["export", f, _fresh(work, "o.spz")],
        ["diff", A["ply"], f, _fresh(work, "o2.gsd")],
    ):
        _ok(run_cli(argv, "ply", inputs=[f, A["ply"]], must_name=["m.ply"]))


@pytest.mark.parametrize("lie", PLY_HEADER_LIES, ids=[b for _, b in PLY_HEADER_LIES])
def test_ply_header_lies(A, work, lie):
    raw = A["ply"].read_bytes()
    end = raw.index(b"end_header\n")
    head = raw[:end].decode().replace(*lie, 1)
    f = work / "lie.ply"
    f.write_bytes(head.encode() + raw[end:])
    o = _ok(
        run_cli(["convert", f, _fresh(work, "lie_out.ply")], "ply-header", inputs=[f], must_name=["lie.ply"])
    )
    if o.result == "ok":  # accepted: the output must be a readable map of what the file says
        from gs_mapping.ply import load_ply

        assert len(load_ply(work / "lie_out.ply")) >= 0


def test_ply_with_one_nan_or_inf_and_empty_map(A, work):
    from gs_mapping.ply import load_ply, save_ply

    g = load_ply(A["ply"])
    for field_name, value in (("means", np.nan), ("sh", np.inf), ("log_scales", np.nan)):
        h = g.copy()
        getattr(h, field_name).reshape(len(h), -1)[7, 0] = value
        f = work / f"bad_{field_name}.ply"
        raw = A["ply"].read_bytes()  # write the value behind the container's checks, as a file would
        from gs_mapping.ply import to_structured

        data = to_structured(g)
        name = {"means": "x", "sh": "f_dc_0", "log_scales": "scale_0"}[field_name]
        data[name][7] = value
        end = raw.index(b"end_header\n") + len(b"end_header\n")
        f.write_bytes(raw[:end] + data.tobytes())
        o = _ok(
            run_cli(["encode", f, _fresh(work, "nan.gsd")], "ply-nonfinite", inputs=[f], must_name=[f.name])
        )
        assert o.result in ("ok", "error")
    empty = g.subset(np.zeros(len(g), bool))
    save_ply(empty, work / "empty.ply")
    for argv in (
        ["convert", work / "empty.ply", _fresh(work, "e.ply")],
        ["encode", work / "empty.ply", _fresh(work, "e.gsd")],
        ["export", work / "empty.ply", _fresh(work, "e.spz")],
    ):
        _ok(run_cli(argv, "empty-map", inputs=[work / "empty.ply"]))
    if (work / "e.gsd").exists():
        o = _ok(
            run_cli(["decode", work / "e.gsd", _fresh(work, "e2.ply")], "empty-map", inputs=[work / "e.gsd"])
        )
        if o.result == "ok":
            assert len(load_ply(work / "e2.ply")) == 0


def test_delta_that_removes_everything(work):
    from hostile_cases import small_map

    from gs_map_share.delta import MapSender
    from gs_map_share.quantize import QuantParams
    from gs_mapping.ply import load_ply

    g = small_map(40, 0, seed=3)
    sender = MapSender.from_map(g, QuantParams.from_quality(2), map_id=1)
    (work / "s.gsd").write_bytes(sender.snapshot())
    g.remove(g.ids.copy())
    (work / "d.gsd").write_bytes(sender.update(g, g.take_changes())[0])
    o = _ok(run_cli(["apply", work / "s.gsd", work / "d.gsd", _fresh(work, "none.ply")], "empty-map"))
    assert o.result == "ok" and len(load_ply(work / "none.ply")) == 0


@FUZZ
@given(st.integers(0, 2**32 - 1), st.booleans())
def test_mutated_containers(A, work, seed, resealed):
    rng = np.random.default_rng(seed)
    for kind in ("snapshot", "delta"):
        data = mutate(A[kind].read_bytes(), rng)
        if resealed:
            data = reseal(data)
        f = work / f"m_{kind}.gsd"
        f.write_bytes(data)
        if kind == "snapshot":
            argv = ["decode", f, _fresh(work, "c.ply")]
            inputs = [f]
        else:
            argv = ["apply", A["snapshot"], f, _fresh(work, "c.ply")]
            inputs = [f, A["snapshot"]]
        _ok(
            run_cli(
                argv, "container-resealed" if resealed else "container", inputs=inputs, must_name=[f.name]
            )
        )


@FUZZ
@given(st.integers(0, 2**32 - 1), st.sampled_from(["mcap", "sqlite3"]))
def test_mutated_bags(A, work, seed, storage):
    bag = _fresh(work, f"bag_{storage}")
    shutil.copytree(A[storage], bag)
    f = storage_file(bag)
    protect = 0 if storage == "mcap" else 100  # sqlite: damage pages, not only the header
    f.write_bytes(mutate(f.read_bytes(), np.random.default_rng(seed), protect))
    _ok(run_cli(["info", bag], f"bag-{storage}", inputs=[bag], must_name=[str(bag)]))
    _ok(
        run_cli(
            ["replay", bag, "--out", _fresh(work, "replayed"), "--nodes", "map_receiver_node"],
            f"bag-{storage}",
            inputs=[bag],
            must_name=[str(bag)],
        )
    )


@FUZZ
@given(st.integers(0, 2**32 - 1))
def test_lying_bag_metadata(A, work, seed):
    """metadata.yaml that contradicts the storage (counts, times, topics, types, garbage)."""
    bag = _fresh(work, "bag_meta")
    shutil.copytree(A["mcap"], bag)
    meta = yaml.safe_load((bag / "metadata.yaml").read_text())
    info = meta["rosbag2_bagfile_information"]
    rng = np.random.default_rng(seed)
    choice = int(rng.integers(0, 6))
    if choice == 0:
        info["message_count"] = int(rng.integers(0, 2**63))
    elif choice == 1:
        info["duration"]["nanoseconds"] = -int(rng.integers(1, 2**62))
    elif choice == 2:
        info["topics_with_message_count"][0]["message_count"] = 10**12
    elif choice == 3:
        info["topics_with_message_count"][0]["topic_metadata"]["type"] = "nonexistent_msgs/msg/Nope"
    elif choice == 4:
        info["relative_file_paths"] = ["../../../etc/passwd"]
    else:
        info["version"] = int(rng.integers(-5, 100))
    (bag / "metadata.yaml").write_text(yaml.safe_dump(meta))
    o = _ok(run_cli(["info", "--json", bag], "bag-metadata", inputs=[bag], must_name=[str(bag)]))
    if choice in (0, 1, 2):  # counts and times: what the storage holds, not what the metadata claims
        truth = _ok(run_cli(["info", "--json", A["mcap"]], "bag-metadata"))
        assert o.stdout.replace(str(bag), "B") == truth.stdout.replace(str(A["mcap"]), "B")


@FUZZ
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=12), c, max_size=3),
        max_leaves=8,
    ),
    st.sampled_from(["mapper", "codec", "mapper_node", "map_receiver_node", "hd_map_node", "hd_map"]),
    st.sampled_from(["", "seeding", "optim", "topics", "levels", "keyframe"]),
)
def test_hostile_parameter_yaml(work, value, section, sub):
    """Every node's parameter loading (the path launch files and --config take)."""
    from gs_mapping.errors import GsMappingError
    from gs_mapping.nodes.registry import NODES, node_class

    body = {sub: value} if sub else value
    doc = {"/**": {"ros__parameters": {section: body}}}
    f = work / "params.yaml"
    try:
        f.write_text(yaml.safe_dump(doc))
    except Exception:  # noqa: BLE001 - not representable in YAML: nothing to test
        return
    for name in NODES:
        try:
            node_class(name).load_config(str(f))
        except GsMappingError as exc:
            assert "\n" not in str(exc) and str(f) in str(exc), str(exc)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "::: not yaml",
        "/**: [1, 2]",
        "/**:\n  ros__parameters: 5",
        "/**:\n  ros__parameters:\n    mapper:\n      min_depth_m: 5.0\n      max_depth_m: 1.0",
        "/**:\n  ros__parameters:\n    mapper:\n      seeding: {min_depth_m: 9, max_depth_m: 1}",
        "/**:\n  ros__parameters:\n    mapper:\n      max_gaussians: 1e30",
        "/**:\n  ros__parameters:\n    mapper:\n      tile_size: .nan",
        "/**:\n  ros__parameters:\n    mapper_node:\n      map_id: 99999999999999999999",
        "a: &a [*a]",
        "x" * 2_000_000,
    ],
)
def test_hostile_config_through_the_cli(A, work, text):
    f = work / "c.yaml"
    f.write_text(text)
    o = _ok(
        run_cli(
            ["replay", A["mcap"], "--out", _fresh(work, "rc"), "--config", f, "--nodes", "mapper_node"],
            "yaml",
            inputs=[f, A["mcap"]],
        )
    )
    if "min_depth" in text:
        assert o.result == "error" and "min_depth_m" in o.stderr


@FUZZ
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=6),
        lambda c: st.lists(c, max_size=4)
        | st.dictionaries(
            st.sampled_from(["results", "GTs", "vectors", "pts", "type", "confidence_level", "region"]),
            c,
            max_size=4,
        ),
        max_leaves=20,
    )
)
def test_hostile_hd_eval_json(work, doc):
    f = work / "hd.json"
    try:
        f.write_text(json.dumps(doc))
    except ValueError:
        return
    _ok(run_cli(["hd-eval", f], "hd-eval-json", inputs=[f], must_name=["hd.json"]))


def test_hd_eval_structural_mutations(A, work):
    from hostile_cases import hd_doc

    huge = hd_doc()
    huge["results"][0]["vectors"][0]["pts"] = [[0, 0]] * 200_000
    cases = [
        huge,
        {"results": [], "GTs": []},
        {"results": [{"vectors": [{"pts": [], "type": 0, "confidence_level": 1}]}], "GTs": [{"vectors": []}]},
    ]
    for i, doc in enumerate(cases):
        f = work / f"hd{i}.json"
        f.write_text(json.dumps(doc))
        _ok(run_cli(["hd-eval", f], "hd-eval-json", inputs=[f], timeout_s=60))


@pytest.mark.shared_data
@FUZZ
@given(st.integers(0, 2**32 - 1))
def test_mutated_spz_reference_files(work, seed):
    from conftest import SHARED_DATA

    refs = sorted((SHARED_DATA / "splats" / "spz_reference").glob("*.spz"))
    if not refs:
        pytest.skip("no SPZ reference vectors")
    rng = np.random.default_rng(seed)
    src = refs[int(rng.integers(0, len(refs)))]
    f = work / "m.spz"
    f.write_bytes(mutate(src.read_bytes(), rng))
    _ok(run_cli(["convert", f, _fresh(work, "spz.ply")], "spz", inputs=[f], must_name=["m.spz"]))


@pytest.mark.parametrize(
    "field_name, value",
    [
        ("id", 2.0**64),
        ("id", 2.0**63),
        ("id", 2.0**53 + 2),
        ("level", 300.0),
        ("level", -1.0),
        ("level", 2.5),
    ],
)
def test_values_beyond_the_format_are_refused_not_wrapped(A, work, field_name, value):
    """ids ≥ 2**53 in a double (not exact) or beyond 2**63, levels outside a uchar: one line, never a
    different number (2**64 used to become an arbitrary id, 300 the level 44)."""
    from gs_mapping.ply import load_ply, to_structured

    g = load_ply(A["ply"])
    vertex = to_structured(g)
    # in the vertex rows, as this suite wrote them before (read still; the checks are shared with
    # the gs_mapping element): the id a double, the level a float
    dt = vertex.dtype.descr + [("id", "<f8"), ("level", "<f4")]
    data = np.zeros(len(vertex), dtype=dt)
    for n in vertex.dtype.names:
        data[n] = vertex[n]
    data["id"] = g.ids.astype(np.float64)
    head = "ply\nformat binary_little_endian 1.0\n" + f"element vertex {len(data)}\n"
    head += "".join(f"property {'double' if n == 'id' else 'float'} {n}\n" for n in data.dtype.names)
    data[field_name][len(data) - 1] = value  # the last row: no reordering by id first
    f = work / "range.ply"
    f.write_bytes(head.encode() + b"end_header\n" + data.tobytes())
    o = _ok(
        run_cli(["encode", f, _fresh(work, "range.gsd")], "value-range", inputs=[f], must_name=["range.ply"])
    )
    assert o.result == "error" and field_name in o.stderr


SOG_LIES = [
    ("count", 10**12),
    ("count", -1),
    ("count", 7),
    ("version", 99),
    ("means", {"mins": [0, 0], "maxs": [1], "files": ["means_l.webp"]}),
    ("means", {"mins": [0, 0, 0], "maxs": [1, 1, 1], "files": ["../../etc/passwd", "x.webp"]}),
    ("scales", {"codebook": [], "files": ["scales.webp"]}),
    ("scales", {"codebook": [float("nan")] * 256, "files": ["scales.webp"]}),
    ("shN", {"count": 2**40, "bands": 9, "codebook": [0.0], "files": ["nope.webp"]}),
]


@pytest.mark.shared_data
@pytest.mark.parametrize("key, value", SOG_LIES, ids=[f"{k}={str(v)[:20]}" for k, v in SOG_LIES])
def test_sog_meta_that_lies(work, key, value):
    """PlayCanvas SOG (meta.json + WebP images): a meta.json whose counts, shapes, codebooks or file
    names lie, through ``convert``: one line or a correct result, never a traceback or a huge allocation."""
    from conftest import SHARED_DATA

    src = SHARED_DATA / "splats" / "playbot_sog"
    if not (src / "meta.json").exists():
        pytest.skip("no SOG scene")
    d = _fresh(work, "sog")
    shutil.copytree(src, d)
    for f in d.iterdir():
        f.chmod(0o644)
    meta = json.loads((d / "meta.json").read_text())
    meta[key] = value
    (d / "meta.json").write_text(json.dumps(meta))
    _ok(run_cli(["convert", d / "meta.json", _fresh(work, "sog.ply")], "SOG", inputs=[d], timeout_s=120))


@pytest.mark.shared_data
def test_sog_with_a_damaged_image(work):
    from conftest import SHARED_DATA

    src = SHARED_DATA / "splats" / "playbot_sog"
    if not (src / "meta.json").exists():
        pytest.skip("no SOG scene")
    rng = np.random.default_rng(5)
    for name in ("means_l.webp", "quats.webp"):
        d = _fresh(work, "sog2")
        shutil.copytree(src, d)
        for f in d.iterdir():
            f.chmod(0o644)
        (d / name).write_bytes(mutate((d / name).read_bytes(), rng, protect=0))
        _ok(run_cli(["convert", d / "meta.json", _fresh(work, "sog2.ply")], "SOG", inputs=[d], timeout_s=120))
