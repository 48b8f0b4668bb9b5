"""Standard 3DGS PLY files (the layout of the reference implementation that viewers read).

Binary little-endian, one ``vertex`` element with float properties ``x y z nx ny nz f_dc_0..2
f_rest_* opacity scale_0..2 rot_0..3``. Stored values are pre-activation, as viewers expect:
opacity is a logit, scales are logs, ``rot`` is (w, x, y, z). ``f_rest`` is channel-major (all
coefficients of red, then green, then blue). We add ``id`` (double: exact for ids < 2**53) and
``level`` (uchar); viewers skip properties they do not know.

Writes are atomic (temp file + rename); loads are validated (header, sizes, finite values).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import MapError
from .gaussians import GaussianMap
from .output_files import write_bytes

_PLY_TYPES = {
    "char": "i1",
    "int8": "i1",
    "uchar": "u1",
    "uint8": "u1",
    "short": "<i2",
    "int16": "<i2",
    "ushort": "<u2",
    "uint16": "<u2",
    "int": "<i4",
    "int32": "<i4",
    "uint": "<u4",
    "uint32": "<u4",
    "float": "<f4",
    "float32": "<f4",
    "double": "<f8",
    "float64": "<f8",
}
_MAX_EXACT_ID = 1 << 53
_MAX_HEADER = 64 * 1024


def _property_names(num_sh: int) -> list[str]:
    names = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    names += [f"f_rest_{i}" for i in range(3 * (num_sh - 1))]
    names += ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    return names


def to_structured(gmap: GaussianMap) -> np.ndarray:
    """The map as the structured array a PLY file holds."""
    k = gmap.num_sh
    dtype = [(n, "<f4") for n in _property_names(k)] + [("id", "<f8"), ("level", "u1")]
    out = np.zeros(len(gmap), dtype=dtype)
    for i, axis in enumerate("xyz"):
        out[axis] = gmap.means[:, i]
    for c in range(3):
        out[f"f_dc_{c}"] = gmap.sh[:, 0, c]
    rest = gmap.sh[:, 1:, :].transpose(0, 2, 1).reshape(len(gmap), 3 * (k - 1))  # explicit: empty maps
    for i in range(rest.shape[1]):
        out[f"f_rest_{i}"] = rest[:, i]
    out["opacity"] = gmap.opacity_logits
    for i in range(3):
        out[f"scale_{i}"] = gmap.log_scales[:, i]
    wxyz = gmap.quats[:, [3, 0, 1, 2]]
    for i in range(4):
        out[f"rot_{i}"] = wxyz[:, i]
    if len(gmap) and int(gmap.ids.max()) >= _MAX_EXACT_ID:
        raise MapError("Gaussian ids ≥ 2**53 cannot be stored exactly in a PLY 'id' property")
    out["id"] = gmap.ids.astype(np.float64)
    out["level"] = gmap.levels
    return out


def save_ply(gmap: GaussianMap, path: str | Path, *, overwrite: bool = True, inputs=()) -> None:
    """Write ``gmap`` as a 3DGS PLY, atomically (see :mod:`gs_mapping.output_files`)."""
    path = Path(path)
    data = to_structured(gmap)
    header = [
        "ply",
        "format binary_little_endian 1.0",
        f"comment gs_mapping sh_degree {gmap.sh_degree} tile_size {gmap.tile_size!r}",
        f"element vertex {len(data)}",
    ]
    for name in data.dtype.names:
        header.append(
            f"property {'double' if name == 'id' else 'uchar' if name == 'level' else 'float'} {name}"
        )
    header.append("end_header")
    blob = ("\n".join(header) + "\n").encode("ascii") + data.tobytes()
    atomic_write(path, blob, overwrite=overwrite, inputs=inputs)


def atomic_write(path: Path, blob: bytes, *, overwrite: bool = True, inputs=()) -> None:
    """Write bytes to ``path`` via a temp file in the same directory and a rename (never an input)."""
    write_bytes(path, blob, overwrite=overwrite, inputs=inputs)


def _parse_header(raw: bytes, path: Path) -> tuple[int, np.dtype, int, dict[str, str]]:
    end = raw.find(b"end_header\n", 0, _MAX_HEADER)
    if not raw.startswith(b"ply\n") or end < 0:
        raise MapError(f"{path}: not a PLY file (no 'ply' magic or no end_header)")
    lines = raw[:end].decode("ascii", errors="replace").splitlines()
    fmt, count, props, comments, in_vertex = None, None, [], {}, False
    for line in lines[1:]:
        words = line.split()
        if not words:
            continue
        if words[0] == "format":
            fmt = words[1] if len(words) > 1 else None
        elif words[0] == "comment" and len(words) >= 3 and words[1] == "gs_mapping":
            comments.update(zip(words[2::2], words[3::2], strict=False))
        elif words[0] == "element":
            if in_vertex or count is not None:
                raise MapError(f"{path}: only a single 'vertex' element is supported")
            if len(words) != 3 or words[1] != "vertex" or not words[2].isdigit():
                raise MapError(f"{path}: bad element line {line!r}")
            count, in_vertex = int(words[2]), True
        elif words[0] == "property":
            if len(words) != 3 or words[1] not in _PLY_TYPES:
                raise MapError(f"{path}: unsupported property line {line!r}")
            props.append((words[2], _PLY_TYPES[words[1]]))
    if fmt != "binary_little_endian":
        raise MapError(f"{path}: format {fmt!r} not supported (binary_little_endian only)")
    if count is None:
        raise MapError(f"{path}: no vertex element")
    return count, np.dtype(props), end + len(b"end_header\n"), comments


def load_ply(path: str | Path, tile_size: float | None = None) -> GaussianMap:
    """Read a 3DGS PLY (ours or any standard one); missing ids are assigned 1..N."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise MapError(f"{path}: cannot read: {exc.strerror}") from None
    count, dtype, offset, comments = _parse_header(raw, path)
    need = offset + count * dtype.itemsize
    if len(raw) < need:
        raise MapError(
            f"{path}: truncated: header declares {count} vertices ({need} bytes), file has {len(raw)} bytes"
        )
    data = np.frombuffer(raw, dtype=dtype, count=count, offset=offset)
    names = set(dtype.names or ())
    base = {
        "x",
        "y",
        "z",
        "f_dc_0",
        "f_dc_1",
        "f_dc_2",
        "opacity",
        "scale_0",
        "scale_1",
        "scale_2",
        "rot_0",
        "rot_1",
        "rot_2",
        "rot_3",
    }
    missing = sorted(base - names)
    if missing:
        raise MapError(f"{path}: missing 3DGS property {missing[0]!r}")
    n_rest = sum(1 for n in names if n.startswith("f_rest_"))
    if n_rest % 3 or (n_rest // 3 + 1) not in (1, 4, 9, 16):
        raise MapError(f"{path}: {n_rest} f_rest properties do not form SH degree 0..3")
    num_sh = n_rest // 3 + 1
    degree = int(round(num_sh**0.5)) - 1
    sh = np.zeros((count, num_sh, 3), np.float32)
    for c in range(3):
        sh[:, 0, c] = data[f"f_dc_{c}"]
    if n_rest:
        rest = np.stack([data[f"f_rest_{i}"] for i in range(n_rest)], axis=1).reshape(count, 3, num_sh - 1)
        sh[:, 1:, :] = rest.transpose(0, 2, 1)
    wxyz = np.stack([data[f"rot_{i}"] for i in range(4)], axis=1).astype(np.float64)
    norms = np.linalg.norm(wxyz, axis=1, keepdims=True)
    if count and (not np.all(np.isfinite(wxyz)) or norms.min() < 1e-12):
        raise MapError(f"{path}: a rotation is zero or non-finite")
    # Normalise only rotations that need it, so our own files round-trip bit for bit.
    off = np.abs(norms[:, 0] - 1.0) > 1e-6
    wxyz[off] /= norms[off]
    quats = wxyz[:, [1, 2, 3, 0]]
    if "id" in names:
        idf = data["id"].astype(np.float64)
        if count and (not np.all(np.isfinite(idf)) or idf.min() < 0 or np.any(idf != np.floor(idf))):
            raise MapError(f"{path}: 'id' property holds a non-integer value")
        ids = idf.astype(np.uint64)
        if count and np.any(ids[1:] <= ids[:-1]):
            order = np.argsort(ids, kind="stable")
            ids = ids[order]
            if np.any(ids[1:] == ids[:-1]):
                raise MapError(f"{path}: duplicate Gaussian id {int(ids[1:][ids[1:] == ids[:-1]][0])}")
            data, sh, quats = data[order], sh[order], quats[order]
    else:
        ids = np.arange(1, count + 1, dtype=np.uint64)
    tile = tile_size if tile_size is not None else float(comments.get("tile_size", 2.0))
    gmap = GaussianMap(
        sh_degree=degree,
        tile_size=tile,
        means=np.stack([data["x"], data["y"], data["z"]], axis=1),
        quats=quats.astype(np.float32),
        log_scales=np.stack([data[f"scale_{i}"] for i in range(3)], axis=1),
        opacity_logits=data["opacity"],
        sh=sh,
        ids=ids,
        levels=data["level"] if "level" in names else None,
    )
    try:
        gmap.validate()
    except MapError as exc:
        raise MapError(f"{path}: {exc}") from None
    gmap.take_changes()
    return gmap
