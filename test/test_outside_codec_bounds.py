"""Outside check of the codec's compiled kernels with numba's bounds checks on (``NUMBA_BOUNDSCHECK=1``:
every array access in every ``kernels.py`` loop checked, an out-of-bounds index raising IndexError
"index is out of bounds" instead of reading or writing past the array as the normal build does).
The decoder's net (``snapshot.guarded``) turns an IndexError into a DecodeError, so the fuzz tests
(test_share_fuzz.py, test_formats_hostile2.py) cannot tell a silent out-of-bounds access from an
honest refusal; here the DecodeError's text is read for numba's message.

One child process per mode, each with its own empty numba cache (numba's cache index does not
key on the bounds-check flag, so a warm cache would serve unchecked code):

- ``NUMBA_BOUNDSCHECK=1``, the compiled paths;
- ``GS_MAP_SHARE_NUMBA=0``, the plain numpy / constriction paths (the reference: jit.py promises
  the same values, the same encoder bytes and the same verdicts).

What each child does, all seeded (the same cases in both):

1. containers mutated behind their CRCs: the chunk bodies of valid snapshots, deltas and layered
   snapshots (synthetic SH3 maps as test_share_fuzz.py makes them, and the v12 golden files of
   test/data) bit-flipped, overwritten, truncated, cut and grown, some headers lying about the
   Gaussian count, level count and SH degree, then packed again with ``container.pack`` (valid CRCs,
   so every mutation reaches the streams); decoded as snapshot, preview (max_level 0 and 2) and
   delta;
2. valid containers whose decoded stream values are replaced, one stream per case, within what
   the stream itself enforces (sign, limit, int32): what a hostile encoder can write as valid ANS.
   This reaches the kernels behind the streams (octree descent, tails, Morton, parent predictions,
   neighbour phases, rotations), which random byte flips rarely do (the ANS data stops them);
3. encoders on edge inputs: 1 and 2 Gaussians, all-equal positions, equal everything, extreme
   log-scales (−40, 13, 30), SH degree 0–3, qualities 0, 2, 3 and 5 with 1 and 4 levels (by hand:
   every quality 0–5 with 1, 2, 3, 4 and 8 levels), layered maps (32 levels, one Gaussian each),
   SH palettes of 1 row and of rows = n (4,096 Gaussians),
   and a delta of each; the bytes' SHA-256 and the decode's checksum.

Run by hand with many more cases (scripts in /tmp/h25_bounds, 2026-12-05): 98,900 resealed
mutations over 45 seeds (the v9-v12 golden files, fuzz seeds, synthetic maps of every quality and
SH degree, the real guitar scene of ../shared/data at quality 2 with 4 levels), bench/codec.py's
fuzz (45,000 cases) and faulty link (1,300 steps), 5,180 hostile-value cases (guitar included),
1,052 encoder cases (empty map, Gaussians 5e4 m apart or 1e6 m from the origin, 5,000 at one
point), and the project's codec tests (test_share_*.py, test_guards_codec.py,
test_guards_format.py, test_formats_hostile2.py: 483 passed, no DecodeError made from an
IndexError): no out-of-bounds access anywhere; 3,000 mutated cases gave the same verdicts on the
compiled and plain paths (up to the byte offset and constriction's wording), and every encoder
case the same bytes.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import synthetic_maps

TEST_DIR = Path(synthetic_maps.__file__).resolve().parent

_CHILD = textwrap.dedent(
    r"""
    import dataclasses, hashlib, inspect, json, sys
    import numpy as np
    sys.path.insert(0, sys.argv[1])
    from synthetic_maps import fuzz_seeds, synthetic_map

    import gs_map_share.delta as m_delta
    import gs_map_share.entropy as m_entropy
    import gs_map_share.idorder as m_idorder
    import gs_map_share.phases as m_phases
    import gs_map_share.section as m_section
    import gs_map_share.tails as m_tails
    from gs_map_share.container import Chunk, pack, unpack
    from gs_map_share.delta import decode_delta, encode_delta
    from gs_map_share.errors import DecodeError, EncodeError
    from gs_map_share.quantize import QuantParams, to_qmap
    from gs_map_share.snapshot import decode_map, decode_snapshot, encode_map
    from gs_mapping.gaussians import GaussianMap

    data_dir = sys.argv[2]
    n_mut, n_deep = int(sys.argv[3]), int(sys.argv[4])
    SNAP, Q0, DELTA, LAYERED = fuzz_seeds(120, seed=5)
    seeds = {"snap": (SNAP, Q0), "delta": (DELTA, Q0), "layered": (LAYERED, None)}
    for f in ("v12_q0_snapshot", "v12_q3_snapshot", "v12_q3_sheen_palette"):
        seeds[f] = (open(f"{data_dir}/codec_golden_{f}.bin", "rb").read(), None)
    for q in ("q0", "q3"):
        base = decode_snapshot(seeds[f"v12_{q}_snapshot"][0])[1]
        seeds[f"v12_{q}_delta"] = (open(f"{data_dir}/codec_golden_v12_{q}_delta.bin", "rb").read(), base)

    def verdicts(b, base):
        out = []
        calls = [lambda: decode_snapshot(b), lambda: decode_map(b, max_level=0), lambda: decode_map(b, max_level=2)]
        if base is not None:
            calls.append(lambda: decode_delta(base, b))
        for fn in calls:
            try:
                r = fn()
                q = r[1] if isinstance(r, tuple) else None
                out.append("ok" if q is None or not hasattr(q, "checksum") else f"ok {len(q)} {q.checksum()}")
            except DecodeError as e:
                out.append("DecodeError: " + str(e))
            except Exception as e:
                out.append(f"{type(e).__name__}: {e}")
        return out

    def mutate(rng, h, chunks):
        chunks = [Chunk(c.type, c.level, bytearray(c.data)) for c in chunks]
        if rng.integers(0, 10) == 9:
            f = str(rng.choice(["gaussians", "n_levels", "sh_degree"]))
            v = int(rng.integers(0, 5)) if f != "gaussians" else int(max(0, h.gaussians + rng.integers(-3, 4)))
            h = dataclasses.replace(h, **{f: v})
        for _ in range(int(rng.integers(1, 4))):
            lv = [i for i, c in enumerate(chunks) if c.type in (2, 3, 4)]
            ci = int(rng.choice(lv)) if lv and rng.random() < 0.85 else int(rng.integers(0, len(chunks)))
            d = chunks[ci].data
            if not d:
                continue
            op = int(rng.integers(0, 7))
            pos = int(rng.integers(0, min(len(d), 64))) if rng.random() < 0.2 else int(rng.integers(0, len(d)))
            if op == 0:
                d[pos] ^= 1 << int(rng.integers(0, 8))
            elif op == 1:
                d[pos] = int(rng.integers(0, 256))
            elif op == 2:
                d[pos] = int(rng.choice([0, 1, 2, 0x7F, 0x80, 0xFF]))
            elif op == 3:
                del d[pos:]
            elif op == 4:
                del d[pos : pos + int(rng.integers(1, 5))]
            elif op == 5:
                d[pos:pos] = bytes(rng.integers(0, 256, int(rng.integers(1, 5)), dtype=np.uint8))
            else:
                k = int(rng.integers(1, 5))
                d[pos : pos + k] = bytes(rng.integers(0, 256, k, dtype=np.uint8))[: len(d) - pos]
        return pack(h, [Chunk(c.type, c.level, bytes(c.data)) for c in chunks])

    result = {"mutated": [], "hostile": [], "encoder": []}
    for name, (data, base) in seeds.items():
        h, chunks = unpack(data)
        rng = np.random.default_rng(1)
        for i in range(n_mut):
            result["mutated"].append([name, i] + verdicts(mutate(rng, h, chunks), base))

    # 2. one decoded stream's values replaced, within the stream's own checks
    orig = m_entropy.decode_stream
    st = {"k": -1, "target": -1, "rng": None}

    sig = inspect.signature(orig)

    def hostile(*a, **kw):
        v = orig(*a, **kw)
        b = sig.bind(*a, **kw)
        b.apply_defaults()
        signed, int32, out, limit = (b.arguments[k] for k in ("signed", "int32", "out", "limit"))
        st["k"] += 1
        if st["k"] != st["target"] or len(v) == 0:
            return v
        rng = st["rng"]
        hi = (2**31 - 1) if int32 else (2**63 - 1)
        hi = hi if limit is None else min(hi, limit)
        lo = (-(2**31) if int32 and limit is None else -hi) if signed else 0
        v = np.array(v, copy=True) if out is None else v
        for _ in range(int(rng.integers(1, 4))):
            i = int(rng.integers(0, len(v)))
            cur = int(v[i])
            c = int(rng.integers(0, 8))
            nv = [hi, lo, cur + 1, cur - 1, 0, int(rng.integers(max(lo, -(2**62)), min(hi, 2**62) + 1)),
                  int(v[int(rng.integers(0, len(v)))]), 2 * cur + 1][c]
            v[i] = max(lo, min(hi, nv))
        return v

    for mod in (m_delta, m_idorder, m_phases, m_section, m_tails):
        mod.decode_stream = hostile
    # the section's one-call readers (the octree depths in one compiled call, a channel's coded
    # stream straight to its compiled reader) read streams without decode_stream: off here, so
    # that every stream passes the hook and the plain and compiled runs count the same streams
    # (decode_stream still takes the compiled readers behind it)
    one_call = m_section._descend_compiled, m_section._coded_compiled
    m_section._descend_compiled = lambda kernels, r, code, tile_count, n, parents, d0, d1: (d0, code, None, tile_count)
    m_section._coded_compiled = lambda *a: None
    for name in ("snap", "delta", "layered", "v12_q3_sheen_palette", "v12_q0_delta"):
        data, base = seeds[name]
        rng = np.random.default_rng(2)
        st["rng"], st["k"], st["target"] = rng, -1, -1
        verdicts(data, base)
        streams = st["k"] + 1
        for i in range(n_deep):
            st["k"], st["target"] = -1, int(rng.integers(0, streams))
            result["hostile"].append([name, i, st["target"]] + verdicts(data, base))
    for mod in (m_delta, m_idorder, m_phases, m_section, m_tails):
        mod.decode_stream = orig
    m_section._descend_compiled, m_section._coded_compiled = one_call

    # 3. encoders on edge inputs
    def gm(n, sh, means=None, scales=None, quats=None, rest=None, levels=None, seed=0):
        rng = np.random.default_rng(seed)
        m = rng.uniform(-3, 3, (n, 3)) if means is None else np.tile(np.asarray(means, float), (n, 1))
        q = rng.normal(size=(n, 4)) if quats is None else np.tile(np.asarray(quats, float), (n, 1))
        s = rng.uniform(-5, -1, (n, 3)) if scales is None else np.tile(np.asarray(scales, float), (n, 1))
        shc = rng.normal(0, 0.5, (n, (sh + 1) ** 2, 3))
        if rest is not None:
            shc[:, 1:, :] = rest(n, (sh + 1) ** 2)
        g = GaussianMap(sh_degree=sh, means=m, quats=q / np.linalg.norm(q, axis=1, keepdims=True),
                        log_scales=s, opacity_logits=rng.normal(0, 2, n), sh=shc)
        if levels is not None:
            g.levels = levels(n).astype(np.uint8)
        return g

    cases = {}
    for sh in range(4):
        cases[f"one_sh{sh}"] = gm(1, sh)
        cases[f"two_sh{sh}"] = gm(2, sh)
        cases[f"equal_pos_sh{sh}"] = gm(40, sh, means=[1.0, 2.0, 3.0])
    cases["equal_all"] = gm(30, 3, means=[0.0, 0, 0], scales=[-3, -3, -3], quats=[1, 0, 0, 0])
    cases["scales_13_-40"] = gm(30, 1, scales=[13.0, -40, 0])
    cases["scales_30"] = gm(30, 0, scales=[30.0, 30, -30])
    cases["layers_32_one_each"] = gm(32, 2, levels=lambda n: np.arange(n))
    cases["palette_1_row"] = gm(4096, 1, rest=lambda n, k: np.full((n, k - 1, 3), 0.25))
    cases["palette_rows_n"] = gm(4096, 1, seed=7)
    for name, g in cases.items():
        small = len(g.means) < 1000
        for q in (0, 2, 3, 5) if small else (3,):
            for L in (1, 4) if small else (1,):
                try:
                    b, _ = encode_map(g, QuantParams.from_quality(q), n_levels=L)
                    _, qm = decode_snapshot(b)
                    res = f"{hashlib.sha256(b).hexdigest()} {len(qm)} {qm.checksum()}"
                except (EncodeError, DecodeError) as e:
                    res = f"{type(e).__name__}: {e}"
                except Exception as e:
                    res = f"{type(e).__name__}: {e}"
                result["encoder"].append([name, q, L, res])
        try:
            p = QuantParams.from_quality(2)
            q0 = to_qmap(g, p)
            g2 = g.copy()
            k = max(1, len(g.means) // 2)
            g2.update(g2.ids[:k], means=g2.means[:k] + 0.01)
            if len(g.means) > 2:
                g2.remove(g2.ids[-1:])
            d, _ = encode_delta(q0, to_qmap(g2, p), p, map_id=1, seq=2, base_seq=1)
            _, q1 = decode_delta(q0, d)
            res = f"{hashlib.sha256(d).hexdigest()} {len(q1)} {q1.checksum()}"
        except Exception as e:
            res = f"{type(e).__name__}: {e}"
        result["encoder"].append([name, "delta", 0, res])
    json.dump(result, sys.stdout)
    """
)

N_MUT, N_HOSTILE = 30, 16  # per seed (8 seeds; 5 for the hostile values)
_OOB = "index is out of bounds"  # numba's message for a checked access


def _run(tmp_path: Path, mode: str, env_extra: dict) -> dict:
    script = tmp_path / "bounds_child.py"
    script.write_text(_CHILD)
    env = dict(os.environ)
    for k in ("NUMBA_BOUNDSCHECK", "GS_MAP_SHARE_NUMBA", "NUMBA_DISABLE_JIT"):
        env.pop(k, None)
    env.update(env_extra)
    env["NUMBA_CACHE_DIR"] = str(tmp_path / f"numba_cache_{mode}")  # empty: nothing unchecked served
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    p = subprocess.run(
        [sys.executable, str(script), str(TEST_DIR), str(TEST_DIR / "data"), str(N_MUT), str(N_HOSTILE)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=900,  # (a cold compile of every loop with bounds checks: minutes on a loaded 2-core machine)
    )
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bounds")
    checked = _run(tmp, "checked", {"NUMBA_BOUNDSCHECK": "1"})
    plain = _run(tmp, "plain", {"GS_MAP_SHARE_NUMBA": "0"})
    return checked, plain


def _norm(v: str) -> str:
    """A verdict without its byte offset and constriction's wording of the same ANS faults (the
    compiled decoder names the fault as constriction does, but stops at another byte)."""
    v = re.sub(r" \(at byte \d+\)", "", v)
    return v.replace("entropy decoding failed: Invalid compressed data: ", "").rstrip(".")


def test_mutated_containers_no_out_of_bounds_access_under_bounds_checks(runs):
    checked, _ = runs
    assert len(checked["mutated"]) == N_MUT * 8
    bad = [row for row in checked["mutated"] if any(_OOB in v for v in row[2:])]
    assert not bad, bad[:5]
    wrong = [
        row for row in checked["mutated"] if any(not v.startswith(("ok", "DecodeError")) for v in row[2:])
    ]
    assert not wrong, wrong[:5]


def test_mutated_containers_same_verdicts_as_the_plain_paths(runs):
    checked, plain = runs
    a = [[_norm(v) if isinstance(v, str) else v for v in row] for row in checked["mutated"]]
    b = [[_norm(v) if isinstance(v, str) else v for v in row] for row in plain["mutated"]]
    diff = [(x, y) for x, y in zip(a, b, strict=True) if x != y]
    assert not diff, diff[:3]


def test_hostile_stream_values_no_out_of_bounds_access_under_bounds_checks(runs):
    checked, plain = runs
    assert len(checked["hostile"]) == N_HOSTILE * 5
    bad = [
        row
        for row in checked["hostile"]
        if any(_OOB in v or not v.startswith(("ok", "DecodeError")) for v in row[3:])
    ]
    assert not bad, bad[:5]
    # and the plain paths come to the same verdicts
    a = [[_norm(v) if isinstance(v, str) else v for v in row] for row in checked["hostile"]]
    b = [[_norm(v) if isinstance(v, str) else v for v in row] for row in plain["hostile"]]
    diff = [(x, y) for x, y in zip(a, b, strict=True) if x != y]
    assert not diff, diff[:3]


def test_encoders_on_edge_inputs_under_bounds_checks_give_the_plain_paths_bytes(runs):
    checked, plain = runs
    bad = [row for row in checked["encoder"] if _OOB in row[3] or "Error" in row[3]]
    assert not bad, bad[:5]
    assert checked["encoder"] == plain["encoder"]
