"""Standard 3DGS PLY files (the layout of the reference implementation that viewers read).

We write binary little-endian, one ``vertex`` element with float properties ``x y z nx ny nz
f_dc_0..2 f_rest_* opacity scale_0..2 rot_0..3``, exactly the reference layout: Inria's SIBR viewer
reads fixed-size rows and Niantic's PLY reader takes float properties only, so anything more in a
row breaks them. Stored values are pre-activation, as viewers expect: opacity is a logit, scales
are logs, ``rot`` is (w, x, y, z). ``f_rest`` is channel-major (all coefficients of red, then
green, then blue). That is all a PLY holds by default: a map's ids and levels are not written.
With ``keep_ids`` (where the suite reads them back: a mapper's own saves, which it resumes from;
``--keep-ids`` on the commands) they go in a second element after it, ``gs_mapping`` (one row per
Gaussian): ``id`` (double: exact for ids < 2**53), or ``id_hi`` and ``id_lo`` (uint, the id's
upper and lower 32 bits) for an id of 2**53 or more (a fleet's global map: ``map_id << 32 | local
id``; PLY has no 64-bit integer type), and ``level`` (uchar) where a level is set. Not every viewer
skips an element it does not know: antimatter15's ``main.js`` (and the web viewers that copied its
``processPlyBuffer``) adds every property line of the header to the vertex row and reads every
Gaussian after the first from the wrong bytes; gsplat.js refuses the file. The ``.gsd`` container
is the format that carries ids. No ids where they are implicit (a scene read without them and not
edited since): read back, they would be taken for real ones.

We read what trainers and tools write: binary little- or big-endian or ASCII, the properties in
any order and any scalar type (float, double, half, integers), with or without normals, ``id``,
``level`` (in the vertex element, as this suite wrote them before, or in ``gs_mapping``), SH
degree 0–3 (degree 4, 72 ``f_rest``, with its fifth band dropped and a warning, as for SPZ);
other elements are skipped, a mesh's faces (list properties) too (in a binary file their rows, of
varying size, are walked to find the next element, as plyfile reads them). A point cloud (x, y, z,
colours) is refused as one; a scene whose colour is ``red green blue`` in place of ``f_dc_*``
(nerfstudio's ``--ply-color-mode rgb``) is read as viewers read it, DC = (c - 0.5) / SH_C0 with c
in 0..1 (an integer type over its maximum: uchar / 255).
A 2D Gaussian splatting scene (no ``scale_2``: flat discs) gets the thinnest third scale. Without
``id`` the map's ids are implicit (1..N in file order, :attr:`GaussianMap.ids_implicit`).
Non-finite values follow :func:`gs_mapping.gaussians.clamp_nonfinite` (a double beyond float32's
range counts as ±inf).
:func:`read_elements` is the generic parser the other PLY-based formats (PlayCanvas compressed PLY)
use.

Writes are atomic (temp file + rename); loads are validated (header, sizes, finite values).
"""

from __future__ import annotations

import io
import logging
import re
import struct
from pathlib import Path

import numpy as np

from .errors import MapError
from .gaussians import OPACITY_LOGIT_LIMIT, SH_C0, GaussianMap, clamp_nonfinite
from .input_files import read_bytes
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
    "half": "<f2",
    "float16": "<f2",
}
log = logging.getLogger(__name__)
_LIST = "list"  # a list property's type is (_LIST, count type, value type); its element is skipped
_RUN_ROWS = 1 << 16  # the most rows of one size a list element's walk checks at a time
# the elements the splat formats read (PLY, compressed PLY): a list property in one of them is
# refused, not skipped with its element (a compressed PLY's SH would be lost without a word)
SPLAT_ELEMENTS = ("vertex", "chunk", "sh", "gs_mapping")
ID_ELEMENT = "gs_mapping"  # the ids and levels of a map's Gaussians, after ``vertex``
MAX_ELEMENT_COUNT = 1 << 31
_MAX_EXACT_ID = 1 << 53
_WRITTEN_TYPES = {"<f4": "float", "<f8": "double", "|u1": "uchar", "<u4": "uint"}  # numpy → PLY
# (headers of long comments, provenance or obj_info, reach past 64 kB; plyfile has no bound)
_MAX_HEADER = 1 << 20
_MAGIC = re.compile(rb"ply[ \t]*(?:\r?\n|\r)")


def starts_as_ply(head: bytes) -> bool:
    """Whether ``head`` opens as a PLY header does for this reader (any of its line ends)."""
    return _MAGIC.match(head) is not None


# header lines end in \n, \r\n (Windows tools) or a bare \r (old Mac files, ASCII); trailing blanks:
# some writers leave them
_HEADER_END = re.compile(rb"(?:\r?\n|\r)end_header[ \t]*(?:\r?\n|\r)")


def _property_names(num_sh: int) -> list[str]:
    names = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    names += [f"f_rest_{i}" for i in range(3 * (num_sh - 1))]
    names += ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    return names


def to_structured(gmap: GaussianMap) -> np.ndarray:
    """The map's ``vertex`` element as a PLY file holds it (the reference layout)."""
    k = gmap.num_sh
    out = np.zeros(len(gmap), dtype=[(n, "<f4") for n in _property_names(k)])
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
    return out


def id_columns(gmap: GaussianMap) -> np.ndarray | None:
    """The map's ``gs_mapping`` element (ids, levels; see the module docstring), or None where it
    holds nothing (implicit ids, no level set)."""
    n = len(gmap)
    ids_given = not gmap.ids_implicit
    wide = ids_given and n > 0 and int(gmap.ids.max()) >= _MAX_EXACT_ID
    cols = [("id_hi", "<u4"), ("id_lo", "<u4")] if wide else [("id", "<f8")] if ids_given else []
    cols += [("level", "u1")] if n and bool(np.any(gmap.levels)) else []
    if not cols:
        return None
    out = np.zeros(n, dtype=cols)
    if wide:
        out["id_hi"] = gmap.ids >> np.uint64(32)
        out["id_lo"] = gmap.ids & np.uint64(0xFFFFFFFF)
    elif ids_given:
        out["id"] = gmap.ids.astype(np.float64)
    if "level" in out.dtype.names:
        out["level"] = gmap.levels
    return out


def save_ply(
    gmap: GaussianMap, path: str | Path, *, overwrite: bool = True, inputs=(), keep_ids: bool = False
) -> None:
    """Write ``gmap`` as a 3DGS PLY, atomically (see :mod:`gs_mapping.output_files`): the reference
    layout every viewer reads, or with ``keep_ids`` the map's ids and levels in a ``gs_mapping``
    element after it, which some web viewers misread (see the module docstring)."""
    path = Path(path)
    data, extra = to_structured(gmap), id_columns(gmap) if keep_ids else None
    # the count on the third line, the comment last: viewers that parse the header by line number
    # (Inria's SIBR) read files laid out as the reference trainer writes them
    header = ["ply", "format binary_little_endian 1.0"]
    blobs = []
    for name, rows in (("vertex", data), (ID_ELEMENT, extra)):
        if rows is None:
            continue
        header.append(f"element {name} {len(rows)}")
        header += [f"property {_WRITTEN_TYPES[rows.dtype[p].str]} {p}" for p in rows.dtype.names]
        blobs.append(rows.tobytes())
    header.append(f"comment gs_mapping sh_degree {gmap.sh_degree} tile_size {gmap.tile_size!r}")
    header.append("end_header")
    blob = ("\n".join(header) + "\n").encode("ascii") + b"".join(blobs)
    atomic_write(path, blob, overwrite=overwrite, inputs=inputs)


def atomic_write(path: Path, blob: bytes, *, overwrite: bool = True, inputs=()) -> None:
    """Write bytes to ``path`` via a temp file in the same directory and a rename (never an input)."""
    write_bytes(path, blob, overwrite=overwrite, inputs=inputs)


def read_elements(raw: bytes, path) -> tuple[dict[str, np.ndarray], list[str]]:
    """Parse a PLY: ``{element name: structured array (a view of raw when binary)}`` and the
    comment lines. Every size is checked against the bytes present before any view is made."""
    m = _HEADER_END.search(raw, 0, _MAX_HEADER)
    if not _MAGIC.match(raw) or m is None:
        raise MapError(f"{path}: not a PLY file (no 'ply' magic or no end_header in the first MiB)")
    end = m.start()
    lines = raw[:end].decode("ascii", errors="replace").splitlines()
    fmt, elements, comments = None, [], []
    for line in lines[1:]:
        words = line.split()
        if not words:
            continue
        if words[0] == "format":
            fmt = words[1] if len(words) > 1 else None
        elif words[0] == "comment":
            comments.append(line[len("comment") :].strip())
        elif words[0] == "element":
            if len(words) != 3 or not (words[2].isascii() and words[2].isdigit()):
                raise MapError(f"{path}: bad element line {line[:80]!r}")
            # (the length first: int() refuses a string of over 4300 digits with its own error)
            digits = words[2].lstrip("0") or "0"
            if len(digits) > len(str(MAX_ELEMENT_COUNT)) or int(digits) > MAX_ELEMENT_COUNT:
                raise MapError(
                    f"{path}: element {words[1]!r} of {words[2][:30]} rows (at most {MAX_ELEMENT_COUNT})"
                )
            if any(e[0] == words[1] for e in elements):
                raise MapError(f"{path}: element {words[1]!r} declared twice")
            elements.append((words[1], int(digits), []))
        elif words[0] == "property":
            if not elements:
                raise MapError(f"{path}: property before any element")
            if len(words) >= 2 and words[1] == "list":  # a mesh's faces: the element is skipped
                if (
                    elements[-1][0] in SPLAT_ELEMENTS
                    or len(words) != 5
                    or not set(words[2:4]) <= set(_PLY_TYPES)
                    or _PLY_TYPES[words[2]][-2] not in "iu"  # (a count is an integer)
                ):
                    raise MapError(f"{path}: list property {line[:80]!r} not supported here")
                kind: object = (_LIST, _PLY_TYPES[words[2]], _PLY_TYPES[words[3]])
                words = [words[0], _LIST, words[4]]
            elif len(words) != 3 or words[1] not in _PLY_TYPES:
                raise MapError(f"{path}: unsupported property line {line[:80]!r}")
            else:
                kind = _PLY_TYPES[words[1]]
            props = elements[-1][2]
            if any(n == words[2] for n, _ in props):
                raise MapError(f"{path}: property {words[2]!r} declared twice")
            props.append((words[2], kind))
        elif words[0] not in ("obj_info",):
            raise MapError(f"{path}: unknown header line {line[:80]!r}")
    offset = m.end()
    if fmt == "ascii":
        return _ascii_elements(raw[offset:], elements, path), comments
    if fmt not in ("binary_little_endian", "binary_big_endian"):
        raise MapError(f"{path}: format {fmt!r} not supported (ascii, binary little- or big-endian)")
    order = "<" if fmt == "binary_little_endian" else ">"
    out = {}
    for name, count, props in elements:
        if _has_list(props):  # rows of varying size: walked to the next element, not kept
            offset = _after_list_rows(raw, offset, count, props, order, name, path)
            continue
        dtype = np.dtype([(n, order + t.lstrip("<")) for n, t in props])
        need = count * dtype.itemsize
        if offset + need > len(raw):
            raise MapError(
                f"{path}: truncated: element {name!r} declares {count} rows ({need} bytes) "
                f"but only {max(len(raw) - offset, 0)} bytes remain"
            )
        if dtype.itemsize:
            out[name] = np.frombuffer(raw, dtype=dtype, count=count, offset=offset)
        offset += need
    if elements and not _has_list(elements[-1][2]) and dtype.itemsize:  # (rows of no bytes: none past)
        _warn_rows_past_header(path, elements[-1][0], (len(raw) - offset) // dtype.itemsize)
    return out, comments


def _warn_rows_past_header(path, name: str, rows: int) -> None:
    """A file holding whole rows past what its header declares for its last element: they are not
    read (the header rules, as in every PLY reader), but a header whose count came out short would
    lose them without a word."""
    if rows > 0:
        log.warning(
            f"{path}: {rows} more row(s) of element {name!r} follow the {name!r} rows the header "
            "declares; they are not read (is the header's count short?)"
        )


def _has_list(props: list) -> bool:
    return any(isinstance(t, tuple) for _, t in props)


def _after_list_rows(raw: bytes, offset: int, count: int, props: list, order: str, name: str, path) -> int:
    """The offset after ``count`` binary rows with list properties (a mesh's faces) from ``offset``.
    Rows are walked by their list counts (struct, a row at a time); after some rows of one size
    the next ones are checked for the same counts on strided numpy views, a run at a time, so a
    mesh of triangles takes a few numpy steps. Every step passes at least one row, a row at least
    a byte: a lying count ends at the end of the file, never in an allocation of its size."""
    fields = []  # per property: (count's dtype and struct, or None for a scalar; value bytes)
    for _, t in props:
        if isinstance(t, tuple):
            code = {"i1": "b", "u1": "B", "i2": "h", "u2": "H", "i4": "i", "u4": "I"}[t[1].lstrip("<")]
            value = np.dtype(t[2]).itemsize
            fields.append((np.dtype(order + t[1].lstrip("<")), struct.Struct(order + code), value))
        else:
            fields.append((None, None, np.dtype(t).itemsize))
    done, last, streak, run, need = 0, -1, 0, 16, 8  # need: rows of one size before numpy is tried
    truncated = lambda: MapError(  # noqa: E731
        f"{path}: truncated: element {name!r} declares {count} rows but the file ends in row {done}"
    )
    while done < count:
        size, counts = 0, []  # this row's size; (offset in the row, dtype, value) of its counts
        for dtype, fmt, width in fields:
            if fmt is None:
                size += width
                continue
            if offset + size + fmt.size > len(raw):
                raise truncated()
            (n,) = fmt.unpack_from(raw, offset + size)
            if n < 0:
                raise MapError(f"{path}: element {name!r}: row {done} has a list of {n} values")
            counts.append((size, dtype, n))
            size += fmt.size + n * width
        if offset + size > len(raw):
            raise truncated()
        streak, last, k = (streak + 1 if size == last else 0), size, 1
        fit = min(count - done, run, (len(raw) - offset) // size)  # rows of this size that fit
        if streak >= need and fit > 1:
            same = np.ones(fit, bool)
            for at, dtype, n in counts:
                same &= np.ndarray((fit,), dtype, raw, offset + at, (size,)) == n
            k = fit if same.all() else int(np.argmin(same))
            # a run that held: try longer ones; one that broke: numpy again only after longer streaks
            run, need = (min(run * 2, _RUN_ROWS), 8) if k == fit else (16, min(need * 2, 128))
        done, offset = done + k, offset + k * size
    return offset


def _sized(elements: list) -> list:
    """For an ASCII body (a row is a line): the elements, one with a list property (a mesh's faces,
    which no splat format needs) given no properties, so its rows are skipped."""
    return [(name, count, [] if _has_list(props) else props) for name, count, props in elements]


def _ascii_elements(body: bytes, elements: list, path) -> dict[str, np.ndarray]:
    """The elements of an ASCII PLY (what some exporters write): one row per line, its values
    separated by white space, parsed by numpy into the declared types. A row with too few or too
    many values, or a value its type cannot hold, is refused with the element named.

    Rows are found by counting line ends a megabyte at a time, and each element's text is parsed
    alone: splitting the whole file into Python strings took ~26 × the file's size (a 60 MB file of
    20M short rows peaked at 1.75 GB)."""
    sep = b"\n" if b"\n" in body or b"\r" not in body else b"\r"  # \n or \r\n; old Mac files: \r alone
    out, pos = {}, 0
    for name, count, props in _sized(elements):
        end, got = _after_lines(body, pos, count, sep)
        if got < count:
            raise MapError(
                f"{path}: truncated: element {name!r} declares {count} rows but only {got} lines remain"
            )
        text, pos = body[pos:end], end
        if not props:
            continue
        if sep == b"\r":  # (numpy's parser and the row check split rows at \n only)
            text = text.replace(b"\r", b"\n")
        dtype = np.dtype([(n, t.lstrip("<")) for n, t in props])
        if not count:  # np.loadtxt would warn that its input holds no data
            out[name] = np.empty(0, dtype)
            continue
        if not text.isascii():
            raise MapError(f"{path}: ASCII PLY with non-ASCII bytes in element {name!r}")
        if not _STRICT_LOADTXT:
            _check_row_lengths(text, len(props), name, path)
        # integers read as float64 (exact to 2**53, every PLY integer type) and checked here: numpy
        # before 2.0 wraps 300 into a uchar's 44 and truncates 3.5, without a word
        wide = np.dtype([(n, "f8" if dtype[n].kind in "iu" else dtype[n]) for n in dtype.names])
        try:  # (from bytes: a str of the rows would be 4 bytes a character in StringIO)
            data = np.loadtxt(io.BytesIO(text), dtype=wide, ndmin=1, comments=None, encoding="ascii")
        except (ValueError, OverflowError, TypeError, IndexError) as exc:
            why = str(exc).split(";")[0]  # (numpy's advice on its own arguments after a ';')
            raise MapError(f"{path}: element {name!r}: a row does not match its properties ({why})") from None
        if len(data) != count:  # numpy skips blank lines
            raise MapError(f"{path}: element {name!r}: {count - len(data)} of its {count} rows are blank")
        out[name] = _to_declared(data, dtype, name, path)
    if elements:
        _warn_rows_past_header(path, elements[-1][0], _lines_left(body[pos:], sep))
    return out


def _lines_left(rest: bytes, sep: bytes) -> int:
    """Non-blank lines in ``rest`` (an ASCII PLY's text after its declared rows)."""
    return sum(1 for line in rest.split(sep) if line.strip())


# numpy's C loadtxt (1.23+) refuses a row with too few or too many values; the Python one before it
# (Humble's numpy 1.21) took the first row's length and dropped what was beyond
_STRICT_LOADTXT = np.lib.NumpyVersion(np.__version__) >= "1.23.0"


def _check_row_lengths(text: bytes, n: int, name: str, path) -> None:
    for i, line in enumerate(io.BytesIO(text)):
        got = len(line.split())
        if got not in (0, n):  # (a blank row is counted by the caller)
            raise MapError(
                f"{path}: element {name!r}: a row does not match its properties "
                f"(row {i} has {got} values, the header declares {n})"
            )


def _to_declared(data: np.ndarray, dtype: np.dtype, name: str, path) -> np.ndarray:
    """Rows read with integers as float64 → the declared types; MapError naming the property for a
    value its integer type cannot hold (not whole, or out of its range)."""
    out = np.empty(len(data), dtype)
    for n in dtype.names:
        v = data[n]
        if dtype[n].kind in "iu":
            info = np.iinfo(dtype[n])
            bad = ~np.isfinite(v) | (v != np.round(v)) | (v < info.min) | (v > info.max)
            if bad.any():
                raise MapError(
                    f"{path}: element {name!r}: property {n!r} ({dtype[n]}) cannot hold "
                    f"{v[np.argmax(bad)]!r} (row {int(np.argmax(bad))})"
                )
        out[n] = v
    return out


def _after_lines(body: bytes, pos: int, count: int, sep: bytes, chunk: int = 1 << 20) -> tuple[int, int]:
    """(offset just after ``count`` lines from ``pos``, lines found): fewer found when the body ends
    first; a last line without its line end counts. ``bytes.count`` a chunk at a time, numpy only
    in the chunk that holds the last one."""
    found, start = 0, pos
    while found < count and pos < len(body):
        end = min(pos + chunk, len(body))
        k = body.count(sep, pos, end)
        if found + k >= count:
            ends = np.flatnonzero(np.frombuffer(body, np.uint8, end - pos, pos) == sep[0])
            return pos + int(ends[count - found - 1]) + 1, count
        found, pos = found + k, end
    if found < count and start < len(body) and body[-1:] != sep:
        found += 1  # the last line, without its line end (which no element before took)
    return pos, found


def _antialiased(comments: list[str]) -> bool:
    """Whether the header tags a mip-splatting scene: Brush's ``SplatRenderMode: mip`` or
    Postshot's ``antialiased 1`` (the last such comment decides)."""
    aa = False
    for c in comments:
        words = c.lower().replace(":", " ").split()
        if words[:1] == ["splatrendermode"] and len(words) == 2:
            aa = words[1] == "mip"
        elif words[:1] == ["antialiased"] and len(words) == 2 and words[1] in ("0", "1"):
            aa = words[1] == "1"
    return aa


def read_file(path) -> bytes:
    """The bytes of a scene file (a regular file: :func:`.input_files.read_bytes`)."""
    try:
        return read_bytes(path)
    except OSError as exc:
        raise MapError(f"{path}: cannot read: {exc.strerror}") from None


_BASE = (
    ["x", "y", "z", "opacity"]
    + [f"f_dc_{c}" for c in range(3)]
    + [f"scale_{i}" for i in range(3)]
    + [f"rot_{i}" for i in range(4)]
)


def _col(data: np.ndarray, name: str) -> np.ndarray:
    return data[name].astype(np.float32)


FLOAT32_LOSS_WARN_M = 1e-3  # positions rounded by more than this to float32 are said


def warn_float32_positions(data: np.ndarray, source) -> None:
    """Log when a double-precision file's positions lose more than a millimetre (in its units) in
    float32, the map's type: coordinates far from the origin (UTM eastings, 4.5e6 m, fall on 0.5 m
    steps). The scene is read; shifting its origin before saving keeps its detail."""
    wide = [a for a in "xyz" if data.dtype[a].itemsize > 4]
    if not wide:
        return
    loss, far = 0.0, 0.0
    with np.errstate(over="ignore", invalid="ignore"):
        for a in wide:
            v = data[a].astype(np.float64)
            kept = v[np.isfinite(v.astype(np.float32))]  # (beyond float32: clamp_nonfinite's to say)
            loss = max(loss, float(np.max(np.abs(kept.astype(np.float32) - kept), initial=0.0)))
            far = max(far, float(np.max(np.abs(kept), initial=0.0)))
    if loss > FLOAT32_LOSS_WARN_M:
        log.warning(
            f"{source}: double-precision positions up to {far:.3g} from the origin lose up to "
            f"{loss:.3g} in float32 (the map's precision); shift the scene's origin to keep its detail"
        )


def load_ply(path: str | Path, tile_size: float | None = None) -> GaussianMap:
    """Read a standard 3DGS PLY (ours or any trainer's); see the module docstring."""
    path = Path(path)
    elements, comments = read_elements(read_file(path), path)
    return from_ply_elements(elements, comments, path, tile_size)


def warn_antialiased(source) -> None:
    """Log that a scene is tagged antialiased (mip-splatting): every reader reads its values and
    keeps no tag (a GaussianMap has none)."""
    log.warning(f"{source}: an antialiased (mip-splatting) scene: values read, the tag is not kept")


def warn_if_antialiased(comments: list[str], path) -> None:
    """:func:`warn_antialiased` when a PLY header's comments tag the scene so."""
    if _antialiased(comments):
        warn_antialiased(path)


def fold_3d_filter(log_scales: np.ndarray, opacity_logits: np.ndarray, filt: np.ndarray, path):
    """Mip-Splatting's 3D smoothing filter (its PLYs' ``filter_3D``, a standard deviation per
    Gaussian), folded into the Gaussian as its renderer draws it: each axis' variance grows by
    filter², and the opacity shrinks by √(det Σ / det(Σ + filter² I)) so the Gaussian's mass stays.
    Read without it, such a scene renders sharper and more opaque than it was trained. A negative or
    non-finite filter is one :class:`MapError`."""
    f = np.asarray(filt, np.float64)
    bad = ~np.isfinite(f) | (f < 0)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise MapError(
            f"{path}: 'filter_3D' of Gaussian {row} (row in file) is {f[row]:.6g}, not a finite value >= 0"
        )
    log_scales, opacity_logits = log_scales.copy(), opacity_logits.copy()
    on = f > 0  # (a row without filter keeps its values exactly)
    var = np.exp(2.0 * log_scales[on].astype(np.float64))
    wide = var + (f[on] ** 2)[:, None]
    p = np.sqrt(np.prod(var / wide, axis=1)) / (1.0 + np.exp(-opacity_logits[on].astype(np.float64)))
    with np.errstate(divide="ignore"):
        logits = np.log(p) - np.log1p(-p)
    log_scales[on] = 0.5 * np.log(wide)
    # p may round to 0 or 1 (logit ±inf): held at the suite's limit, which renders the same
    opacity_logits[on] = np.clip(logits, -OPACITY_LOGIT_LIMIT, OPACITY_LOGIT_LIMIT)
    log.info(f"{path}: Mip-Splatting's 3D filter folded into the scales and opacities")
    return log_scales, opacity_logits


_RGB = ("red", "green", "blue")


def _rgb_dc(data: np.ndarray) -> np.ndarray | None:
    """The SH DC term of a scene that stores its colour as ``red green blue`` in place of
    ``f_dc_*`` (nerfstudio's ``ns-export gaussian-splat --ply-color-mode rgb``), as the viewers
    that read such files take it (mkkellogg's GaussianSplats3D, antimatter15's and gsplat.js'):
    ``(c - 0.5) / SH_C0`` with c the colour in 0..1 (an integer type over its maximum, uchar /
    255; a float type as it is). None where the rows have no such colour."""
    if not set(_RGB) <= set(data.dtype.names or ()):
        return None
    c = np.stack(
        [
            data[n].astype(np.float64) / (np.iinfo(data.dtype[n]).max if data.dtype[n].kind in "iu" else 1.0)
            for n in _RGB
        ],
        axis=1,
    )
    return ((c - 0.5) / SH_C0).astype(np.float32)


def _without_scalar_prefix(data: np.ndarray) -> np.ndarray:
    """A scene saved by CloudCompare, which names every property but x, y, z (and normals)
    ``scalar_<name>`` (``scalar_f_dc_0``, ``scalar_opacity``): the names as a trainer wrote them."""
    names = list(data.dtype.names or ())
    if any(n in names for n in ("opacity", "f_dc_0")) or "scalar_opacity" not in names:
        return data
    renamed = [
        n[len("scalar_") :] if n.startswith("scalar_") and n[len("scalar_") :] not in names else n
        for n in names
    ]
    fields = [data.dtype.fields[n] for n in names]
    return data.view(
        np.dtype(
            {
                "names": renamed,
                "formats": [f[0] for f in fields],
                "offsets": [f[1] for f in fields],
                "itemsize": data.dtype.itemsize,
            }
        )
    )


# A double beyond float32's range becomes ±inf (and a NaN stays NaN) in the float32 map, then
# follows the ±inf rule of clamp_nonfinite like an infinity in the file: no numpy warning lines.
@np.errstate(over="ignore", invalid="ignore")
def from_ply_elements(
    elements: dict, comments: list[str], path, tile_size: float | None = None
) -> GaussianMap:
    """A standard 3DGS PLY's parsed elements (:func:`read_elements`) → GaussianMap."""
    if "vertex" not in elements:
        if "chunk" in elements:
            raise MapError(f"{path}: a PlayCanvas compressed PLY: read it with gs_mapping.splat_formats")
        raise MapError(f"{path}: no vertex element (or one without properties)")
    data = _without_scalar_prefix(elements["vertex"])
    names = set(data.dtype.names or ())
    rgb = None if names & {f"f_dc_{c}" for c in range(3)} else _rgb_dc(data)
    dc_names = {f"f_dc_{c}" for c in range(3)} if rgb is not None else set()
    if "packed_position" in names:
        raise MapError(f"{path}: a PlayCanvas compressed PLY: read it with gs_mapping.splat_formats")
    # a 2D Gaussian splatting scene has no third scale (a flat disc): log-scale −inf, clamped below
    flat = "scale_2" not in names and {"scale_0", "scale_1"} <= names
    missing = [n for n in _BASE if n not in names | dc_names and not (flat and n == "scale_2")]
    if missing and {"x", "y", "z"} <= names and not names & {"opacity", "f_dc_0", "scale_0", "rot_0"}:
        raise MapError(
            f"{path}: a point cloud (x, y, z and {len(names) - 3} other properties), not a 3DGS scene: "
            "no opacity, scale_*, rot_* or f_dc_* properties"
        )
    if missing:
        raise MapError(f"{path}: missing 3DGS property {missing[0]!r}")
    count = len(data)
    n_rest = sum(1 for n in names if n.startswith("f_rest_"))
    if n_rest % 3 or (n_rest // 3 + 1) not in (1, 4, 9, 16, 25):
        raise MapError(f"{path}: {n_rest} f_rest properties do not form SH degree 0..4")
    absent = [f"f_rest_{i}" for i in range(n_rest) if f"f_rest_{i}" not in names]
    if absent:
        raise MapError(f"{path}: f_rest properties are not numbered 0..{n_rest - 1} ({absent[0]!r} missing)")
    per_channel = n_rest // 3
    if per_channel == 24:  # degree 4, as Niantic's writer stores such a scene: as SPZ does, drop it
        log.warning(f"{path}: SH degree 4: its fifth band is dropped (degrees 0-3 are kept)")
    num_sh = min(per_channel, 15) + 1
    degree = int(round(num_sh**0.5)) - 1
    sh = np.zeros((count, num_sh, 3), np.float32)
    for c in range(3):
        sh[:, 0, c] = data[f"f_dc_{c}"] if rgb is None else rgb[:, c]
    if n_rest:  # channel-major: channel c's coefficient k is f_rest_{c · per_channel + k − 1}
        keep = [c * per_channel + k for c in range(3) for k in range(num_sh - 1)]
        rest = np.stack([data[f"f_rest_{i}"] for i in keep], axis=1).astype(np.float32)
        sh[:, 1:, :] = rest.reshape(count, 3, num_sh - 1).transpose(0, 2, 1)
    wxyz = np.stack([_col(data, f"rot_{i}") for i in range(4)], axis=1)
    warn_float32_positions(data, path)
    means, xyzw, log_scales, opacity, sh = clamp_nonfinite(
        np.stack([_col(data, a) for a in "xyz"], axis=1),
        wxyz[:, [1, 2, 3, 0]],
        np.stack(
            [
                np.full(count, -np.inf, np.float32) if flat and i == 2 else _col(data, f"scale_{i}")
                for i in range(3)
            ],
            axis=1,
        ),
        _col(data, "opacity"),
        sh,
        str(path),
    )
    quats = unit_rotations(xyzw, str(path))
    if "filter_3D" in names:
        log_scales, opacity = fold_3d_filter(log_scales, opacity, _col(data, "filter_3D"), path)
    # ids and levels: in our own element (a row per Gaussian), else in the vertex rows
    extra = elements.get(ID_ELEMENT)
    if extra is not None and len(extra) != count:
        raise MapError(f"{path}: element {ID_ELEMENT!r} has {len(extra)} rows for {count} Gaussians")
    if extra is not None and any(n in names for n in ("id", "id_hi", "id_lo", "level")):
        raise MapError(f"{path}: ids or levels both in 'vertex' and in {ID_ELEMENT!r}")
    src = data if extra is None else extra
    src_names = set(src.dtype.names or ())
    levels = None
    if "level" in src_names:  # refused, never wrapped: a level is an integer 0..255 (uchar)
        lv = src["level"].astype(np.float64)
        bad = ~np.isfinite(lv) | (lv < 0) | (lv > 255) | (lv != np.floor(lv))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise MapError(
                f"{path}: 'level' of Gaussian {row} (row in file) is {lv[row]}, not an integer 0..255"
            )
        levels = lv.astype(np.uint8)
    ids = _read_ids(src, src_names, count, path)
    if ids is not None:
        if count and np.any(ids[1:] <= ids[:-1]):
            order = np.argsort(ids, kind="stable")
            ids = ids[order]
            if np.any(ids[1:] == ids[:-1]):
                raise MapError(f"{path}: duplicate Gaussian id {int(ids[1:][ids[1:] == ids[:-1]][0])}")
            means, quats, log_scales, opacity, sh = (
                a[order] for a in (means, quats, log_scales, opacity, sh)
            )
            levels = None if levels is None else levels[order]
    warn_if_antialiased(comments, path)
    tile = tile_size if tile_size is not None else _tile_size(comments)
    gmap = GaussianMap(
        sh_degree=degree,
        tile_size=tile,
        means=means,
        quats=quats,
        log_scales=log_scales,
        opacity_logits=opacity,
        sh=sh,
        ids=ids,
        levels=levels,
    )
    try:
        gmap.validate()
    except MapError as exc:
        raise MapError(f"{path}: {exc}") from None
    gmap.take_changes()
    return gmap


def _read_ids(data: np.ndarray, names, count: int, path) -> np.ndarray | None:
    """The rows' uint64 ids from ``id``, or from ``id_hi`` and ``id_lo`` (our wide form); None
    without either. A value that is not an exact non-negative integer is refused, never wrapped."""
    if "id" in names:
        parts = [("id", _MAX_EXACT_ID if data.dtype["id"].kind == "f" else 1 << 63)]
    elif "id_hi" in names and "id_lo" in names:
        parts = [("id_hi", 1 << 31), ("id_lo", 1 << 32)]  # (2**63 at most in all, as for ``id``)
    else:
        return None
    ids = np.zeros(count, np.uint64)
    for name, limit in parts:
        v = data[name].astype(np.float64)
        bad = ~np.isfinite(v) | (v < 0) | (v != np.floor(v)) | (v >= limit)
        if count and bad.any():  # uint64 casts of 2**64 or of negatives are undefined
            row = int(np.flatnonzero(bad)[0])
            what = (
                "not an integer"
                if not np.isfinite(v[row]) or v[row] != np.floor(v[row])
                else ("negative" if v[row] < 0 else f"{v[row]:.0f}, beyond {limit}")
            )
            raise MapError(f"{path}: {name!r} of Gaussian {row} (row in file) is {what}")
        ids = (ids << np.uint64(32)) | v.astype(np.uint64)
    return ids


def _tile_size(comments: list[str]) -> float:
    for c in comments:
        words = c.split()
        if words[:1] == ["gs_mapping"]:
            kv = dict(zip(words[1::2], words[2::2], strict=False))
            try:
                t = float(kv.get("tile_size", 2.0))
            except ValueError:
                return 2.0
            return t if np.isfinite(t) and t > 0 else 2.0
    return 2.0


def unit_rotations(xyzw: np.ndarray, source: str) -> np.ndarray:
    """Float32 unit quaternions (x, y, z, w) from a file's rotations; only rotations that need it
    are normalised, so our own files round-trip bit for bit (a tiny one, 1e-20, is a direction,
    normalised in float64). An all-zero rotation is read as no rotation, which is how the 3DGS CUDA
    rasterizer draws it (its rotation matrix of q = 0 is the identity); one warning says how many.
    Other tools disagree among themselves (splat-transform writes it as a 180° turn or a non-unit
    quaternion depending on the format), so a file is not refused for it."""
    q = np.asarray(xyzw, np.float64)
    norms = np.linalg.norm(q, axis=1, keepdims=True)
    zero = norms[:, 0] == 0
    if zero.any():
        q[zero], norms[zero] = (0.0, 0.0, 0.0, 1.0), 1.0
        log.warning(
            f"{source}: {int(zero.sum())} zero rotation(s) (first: Gaussian {int(np.argmax(zero))}, row in "
            "file) read as no rotation, as the 3DGS rasterizer draws them"
        )
    off = np.abs(norms[:, 0] - 1.0) > 1e-6
    q[off] /= norms[off]
    return q.astype(np.float32)
