"""PlayCanvas SOG ("spatially ordered Gaussians"): read, from a directory holding ``meta.json`` and
its WebP images, or a ``.sog`` zip of the same files. Images are decoded by Pillow. The meta file
may have any name ending in ``meta.json``, as splat-transform reads and writes it (``splat-transform
scene.ply out/scene.meta.json``); a directory is read by its one such file, or, holding none, from
its one sub-folder that holds one (an unpacked zip of the SOG's folder, read as the zip is). ``lod-meta.json``
(splat-transform 3's streamed level-of-detail SOG, many SOGs by level) is refused by name.

Version 2 (``meta.version`` = 2, ``count`` Gaussians; pixel i of every image is Gaussian i):

- ``means``: ``means_l`` / ``means_u`` hold the low / high byte of a 16-bit fraction per axis (RGB)
  between ``mins`` and ``maxs`` of the log-transformed position ``sign(x)·ln(1+|x|)``;
- ``quats``: smallest three — RGB three components ``(v/255·2 − 1)/sqrt(2)``, alpha 252 + the index
  of the largest of (w, x, y, z), which is rebuilt positive (another alpha: identity);
- ``scales``: RGB index the ``codebook`` (256 entries, or fewer) of log-scales;
- ``sh0``: RGB index the ``codebook`` of DC coefficients, alpha = opacity · 255;
- ``shN`` (optional): ``labels`` (R + 256·G) pick one of ``count`` palette entries of
  ``centroids`` (64 entries per row, each 3/8/15 pixels wide for ``bands`` 1/2/3, RGB index the
  ``codebook``).

Version 1 (no ``version``; ``means.shape``): scales, colours/opacity (logit) and SH are 8-bit
fractions between per-channel ``mins`` / ``maxs`` instead of codebooks. Formulas follow PlayCanvas'
reader (splat-transform ``read-sog``), which reads ``count`` pixels whatever the images hold: here a
``count`` past the Gaussians the quats image holds is refused and one short of them warned
(:func:`_check_count`); animated images and an SH palette shorter than ``shN.count`` are refused.
Image sizes are checked against the Gaussian count and the file sizes before anything is decoded: an
image holds at least one pixel per Gaussian and at most ``_pixel_bound`` of them (losslessly
compressed images of uniform content, as a scene whose higher SH is all zero, shrink far below any
ratio to their pixel count, so the bound is the pixels, not the bytes), and a member is inflated
only up to the bytes such an image can take. So a 2 kB file of constant images may name 67M
Gaussians, a valid scene that takes ~50 GB to decode: the count is checked against the memory
available first (:func:`gs_mapping.input_files.check_room`).
"""

from __future__ import annotations

import io
import json
import logging
import os
import warnings
import zipfile
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import MapError
from ..gaussians import GaussianMap, clamp_nonfinite
from ..input_files import NotRegularFile, check_room, open_regular, read_bytes
from ..ply import unit_rotations, warn_antialiased

log = logging.getLogger(__name__)
MAX_POINTS = 1 << 26
MAX_META = 16 << 20
_EIGHT_BIT_MODES = ("RGBA", "RGB", "LA", "L", "P", "PA", "RGBX")
BYTES_PER_PIXEL = 16  # a WebP's most bytes per pixel we read (lossless RGBA needs at most ~4.1)
MAX_PALETTE_ROWS = 1024  # shN centroids: 64 entries a row, at most 65536 entries
_SQRT2 = np.sqrt(2.0)
# what zipfile raises on a damaged zip (RuntimeError: NotImplementedError for a "version needed to
# extract" beyond its own, or an encrypted member; zlib.error: corrupt deflate data)
_ZIP_ERRORS = (
    OSError,
    zipfile.BadZipFile,
    RuntimeError,
    EOFError,
    UnicodeDecodeError,
    ValueError,
    zlib.error,
)
_SH_COEFFS = (0, 3, 8, 15)
LOD_META = "lod-meta.json"


def is_meta_name(name: str) -> bool:
    """Whether a file of this name is a SOG's meta file: any name ending in ``meta.json``, as
    splat-transform decides (``lowerFilename.endsWith('meta.json')``), LOD_META included."""
    return name.lower().endswith("meta.json")


def _meta_names(folder: Path) -> list[str]:
    """The folder's SOG meta file names, sorted. Names starting with '.' are left out: macOS writes
    an AppleDouble ``._meta.json`` beside ``meta.json`` on FAT/exFAT and network shares."""
    try:
        with os.scandir(folder) as entries:
            return sorted(e.name for e in entries if is_meta_name(e.name) and not e.name.startswith("."))
    except OSError as exc:
        raise MapError(f"{folder}: cannot read: {exc.strerror}") from None


def _meta_in(folder: Path) -> tuple[Path, str]:
    """The folder holding the SOG and its meta file's name: meta.json where there is one
    (splat-transform's name, so a lod-meta.json or other *meta.json beside it is no matter), else
    its one other *meta.json. A folder with none but one sub-folder holding a SOG (an unpacked zip
    of the SOG's folder) is read from that sub-folder, as such a zip is; with none at all,
    "meta.json" is reported missing."""
    names = _meta_names(folder)
    if not names:
        try:
            subs = sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))
        except OSError:
            subs = []
        with_sog = [d for d in subs if _meta_names(folder / d)]
        if len(with_sog) == 1:
            return _meta_in(folder / with_sog[0])
        if with_sog:
            listed = ", ".join(with_sog[:3]) + (", ..." if len(with_sog) > 3 else "")
            raise MapError(
                f"{folder}: no meta.json; {len(with_sog)} folders in it hold a SOG ({listed}): name one"
            )
    if "meta.json" in names:
        return folder, "meta.json"
    if len(names) > 1:
        listed = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        raise MapError(f"{folder}: {len(names)} SOG meta files ({listed}): name the one to read")
    return folder, names[0] if names else "meta.json"


class _Files:
    """The SOG's files by name, from a directory or a zip, sizes bounded before reading."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.zip = None
        self.meta = "meta.json"
        self.prefix = ""  # a zip of the SOG's folder: its files sit under "<folder>/"
        self.twice: set[str] = set()  # a zip's member names that appear more than once
        self._file = None  # the zip's file (ZipFile leaves a file object it was given open)
        if path.is_dir():
            self.dir, self.meta = _meta_in(path)
        elif is_meta_name(path.name):  # its name as given (META.JSON on a case-sensitive disk)
            self.dir, self.meta = path.parent, path.name
        else:
            try:
                self._file = open_regular(path)
                self.zip = zipfile.ZipFile(self._file)
            except NotRegularFile as exc:  # (before the zip errors, which hold OSError)
                raise MapError(f"{path}: cannot read: {exc.strerror}") from None
            except _ZIP_ERRORS as exc:
                self.close()
                raise MapError(f"{path}: {_not_a_zip(path, exc)}") from None
            names = self.zip.namelist()
            self.twice = {n for n, c in Counter(names).items() if c > 1}
            nested = [n for n in names if n.count("/") == 1 and n.endswith("/meta.json")]
            if "meta.json" not in names and len(nested) == 1:
                self.prefix = nested[0][: -len("meta.json")]
        if self.meta.lower() == LOD_META:
            raise MapError(
                f"{path}: a streamed LOD SOG ({LOD_META}, splat-transform's level-of-detail output) is "
                f"not supported (convert its source scene, or one SOG: a .sog or meta.json)"
            )

    def close(self) -> None:
        if self.zip is not None:
            self.zip.close()
        if self._file is not None:
            self._file.close()

    def read(self, name: str, limit: int) -> bytes:
        if not isinstance(name, str) or "/" in name or "\\" in name or name.startswith("."):
            raise MapError(f"{self.path}: SOG names an invalid file {str(name)[:60]!r}")
        try:
            if self.zip is not None:
                info = self.zip.getinfo(self.prefix + name)
                if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                    # zipfile inflates bzip2 and LZMA whole, whatever read() asks for: a few kB
                    # of bzip2 under a false size would make gigabytes before the limit could
                    # tell. splat-transform, and zip tools by default, store or deflate.
                    raise MapError(
                        f"{self.path}: SOG member {name} is compressed with zip method "
                        f"{info.compress_type} (only stored or deflated members are read)"
                    )
                if info.filename in self.twice:
                    raise MapError(f"{self.path}: SOG member {name} is in the zip twice")
                if info.file_size > limit:
                    raise MapError(
                        f"{self.path}: SOG member {name} is {info.file_size} bytes (limit {limit})"
                    )
                with self.zip.open(info) as f:  # inflated up to the limit, not to what it claims
                    data = f.read(limit + 1)
                if len(data) > limit:
                    raise MapError(f"{self.path}: SOG member {name} inflates beyond {limit} bytes")
                return data
            try:
                return read_bytes(self.dir / name, limit)
            except MapError as exc:
                raise MapError(f"{self.path}: SOG file {exc}") from None
        except FileNotFoundError:
            raise MapError(f"{self.path}: SOG file {name} missing") from None
        except NotRegularFile as exc:  # (before the zip errors, which hold OSError)
            raise MapError(f"{self.path}: cannot read SOG file {name}: {exc.strerror}") from None
        except KeyError:
            where = " (at the top of the zip or in its one folder)" if self.zip is not None else ""
            raise MapError(f"{self.path}: SOG file {name} missing{where}") from None
        except _ZIP_ERRORS as exc:
            # a damaged zip: bad member names, corrupt deflate data, CRC mismatches
            raise MapError(f"{self.path}: cannot read SOG file {name}: {exc}") from None


def _pixels(files: _Files, name: str, count: int) -> np.ndarray:
    """The first ``count`` RGBA pixels of a WebP, row by row: (count, 4) uint8."""
    return _image(files, name, count, _pixel_bound(count)).reshape(-1, 4)[:count]


def _pixel_bound(count: int) -> int:
    """The most pixels we accept in an image of ``count`` Gaussians: twice them and a megapixel
    (splat-transform lays them out in a near-square of rows that are multiples of 4 wide; other
    writers may pad to a fixed width)."""
    return 2 * count + (1 << 20)


def _image(
    files: _Files, name: str, count: int, max_pixels: int, width: int | None = None, widths=None
) -> np.ndarray:
    """RGBA uint8 (h, w, 4) of a WebP (or PNG), checked: at least ``count`` and at most ``max_pixels``
    pixels, read from at most ``BYTES_PER_PIXEL`` bytes a pixel (a lying size cannot make us
    allocate more than that)."""
    raw = files.read(name, BYTES_PER_PIXEL * max_pixels + (1 << 16))
    try:
        # WebP by default; the spec lets meta.json name any 8-bit RGBA format, of which only the
        # lossless keep the quantised values: PNG too, not JPEG
        with warnings.catch_warnings():  # (Pillow's bomb warning: our own pixel bound is checked below)
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(raw), formats=["WEBP", "PNG", "JPEG"])
        # (Pillow opens a 16-bit RGB(A) PNG as 8-bit RGB(A), keeping the high bytes: its IHDR says)
        sixteen = img.format == "PNG" and len(raw) > 24 and raw[24] == 16
        frames = getattr(img, "n_frames", 1)
        if frames > 1 or _animated_webp(raw):  # (Pillow gives frame 0; a frame's VP8 is not seen as lossy)
            raise MapError(
                f"{files.path}: SOG image {name} is an animated {img.format} ({frames} frame"
                f"{'s' if frames > 1 else ''}): a SOG's images are still images"
            )
        lossy = img.format == "JPEG" or (img.format == "WEBP" and _lossy_webp(raw))
        if lossy or img.mode not in _EIGHT_BIT_MODES or sixteen:
            raise MapError(
                f"{files.path}: SOG image {name} is {'lossy ' if lossy else ''}{img.format} "
                f"{'16-bit ' if sixteen else ''}{img.mode}: a SOG's images must be 8-bit lossless (WebP or PNG)"
            )
        w, h = img.size
        if widths is not None:  # SOG version 1 names the SH band count by the image width only
            width = w if w in widths else -1
        if width is not None and w != width:
            want = " or ".join(str(v) for v in widths) if widths is not None else str(width)
            raise MapError(f"{files.path}: SOG image {name} is {w}×{h}: its width must be {want}")
        if count == 0 and w * h > max_pixels:  # (the SH palette: its rows are bounded, not its Gaussians)
            raise MapError(
                f"{files.path}: SOG image {name} is {w}×{h}: a palette of more than {MAX_PALETTE_ROWS * 64} entries"
            )
        if w * h < count or w * h > max_pixels:
            raise MapError(f"{files.path}: SOG image {name} is {w}×{h} for {count} Gaussians")
        return np.asarray(img.convert("RGBA"), np.uint8)  # (h, w, 4)
    except MapError:
        raise
    except Exception as exc:  # Pillow raises many types on corrupt images  # noqa: BLE001
        said = (str(exc).splitlines() or [""])[0][:120]  # (one line)
        why = _cut_short(raw) or f" ({type(exc).__name__}{': ' + said if said else ''})"
        raise MapError(f"{files.path}: SOG image {name} cannot be decoded{why}") from None


def _not_a_zip(path: Path, exc: Exception) -> str:
    """Why a ``.sog`` did not open as a zip: one that starts as a zip (a local file header) but whose
    directory, at its end, is missing or broken was cut short or damaged (a download stopped early);
    anything else is no SOG at all."""
    try:
        with open_regular(path) as f:
            starts_as_zip = f.read(4) == b"PK\x03\x04"
    except OSError:
        starts_as_zip = False
    if starts_as_zip:
        return (
            f"a zip cut short or damaged: its directory, at the end of the file, is missing or broken ({exc})"
        )
    return f"not a SOG (neither meta.json, a directory nor a zip: {exc})"


def _cut_short(raw: bytes) -> str:
    """``' (cut short: n of m bytes)'`` for a RIFF (WebP) image shorter than its header's size, else ''."""
    if len(raw) >= 12 and raw[:4] == b"RIFF" and raw[8:12] == b"WEBP":
        whole = 8 + int.from_bytes(raw[4:8], "little")
        if len(raw) < whole:
            return f" (cut short: {len(raw)} of {whole} bytes)"
    return ""


def _animated_webp(raw: bytes) -> bool:
    """A WebP whose extended header (VP8X) sets the animation flag (bit 1 of its flags byte)."""
    return raw[:4] == b"RIFF" and raw[12:16] == b"VP8X" and len(raw) > 20 and bool(raw[20] & 0x02)


def _lossy_webp(raw: bytes) -> bool:
    """A WebP whose image is VP8 (lossy), not VP8L: its first chunk, or inside a VP8X container a
    'VP8 ' chunk (RIFF layout: 12-byte header, then id, little-endian size, payload padded to even)."""
    if raw[12:16] != b"VP8X":
        return raw[12:16] == b"VP8 "
    pos = 12
    while pos + 8 <= len(raw):
        if raw[pos : pos + 4] == b"VP8 ":
            return True
        pos += (8 + int.from_bytes(raw[pos + 4 : pos + 8], "little") + 1) & ~1  # (payloads pad to even)
    return False


def _section(meta: dict, key: str, path, n_files: int = 1) -> dict:
    v = meta.get(key)
    if not isinstance(v, dict) or not isinstance(v.get("files"), list) or len(v["files"]) < n_files:
        raise MapError(f"{path}: SOG meta.json lacks a valid {key!r} entry")
    return v


def _int(v) -> bool:
    """A JSON integer: JSON's true and false load as bools, which Python counts as ints."""
    return isinstance(v, int) and not isinstance(v, bool)


def _floats(v, n: int, what: str, path, fewer: bool = False) -> np.ndarray:
    """``n`` finite JSON numbers (a list, or a bare number for n = 1) as float64; ``fewer``: 1..n."""
    items = v if isinstance(v, list) else [v]
    size = f"1 to {n}" if fewer else f"{n}"
    sized = 0 < len(items) <= n if fewer else len(items) == n
    if not sized or not all(_int(x) or isinstance(x, float) for x in items):
        raise MapError(f"{path}: SOG {what} must be {size} finite numbers")
    try:
        a = np.array([float(x) for x in items])
    except OverflowError:  # an integer literal beyond float64 (10**400)
        a = np.array([np.inf])
    if not np.all(np.isfinite(a)):
        raise MapError(f"{path}: SOG {what} must be {size} finite numbers")
    return a


def _codebook(v, what: str, path) -> np.ndarray:
    """A version-2 codebook: up to 256 entries. splat-transform's k-means keeps one entry per
    distinct value when there are fewer than 256 (0.16: a one-Gaussian scene's scales codebook holds
    3), and indexes only those."""
    return _floats(v, 256, what, path, fewer=True)


def _look_up(book: np.ndarray, index: np.ndarray, what: str, path) -> np.ndarray:
    """``book[index]``; an index past a short codebook is refused (PlayCanvas' reader gives NaN)."""
    if index.size and int(index.max()) >= len(book):
        raise MapError(f"{path}: SOG {what} index {int(index.max())} is beyond its {len(book)} entries")
    return book[index]


# Values beyond float32 (a huge codebook entry or range) become ±inf and NaN on the way, which
# clamp_nonfinite then clamps or refuses in one line: numpy's overflow warnings would be extra lines.
@np.errstate(over="ignore", invalid="ignore")
def load_sog(path) -> GaussianMap:
    path = Path(path)
    files = _Files(path)
    try:
        return _load(path, files)
    finally:
        files.close()


def _load(path: Path, files: _Files) -> GaussianMap:
    try:
        meta = json.loads(files.read(files.meta, MAX_META))
    except ValueError as exc:  # not UTF-8, not JSON, or a number beyond int()'s 4300 digits
        raise MapError(f"{path}: SOG meta.json is not JSON ({exc})") from None
    except RecursionError:  # json's parser recurses per nesting level
        raise MapError(f"{path}: SOG meta.json nests too deeply to be a SOG's") from None
    if not isinstance(meta, dict):
        raise MapError(f"{path}: SOG meta.json is not an object")
    version = meta.get("version", 1)
    # v2 names it `antialias: true`; some writers `model: "antialiased"`
    if meta.get("model") == "antialiased" or meta.get("antialias") is True:
        warn_antialiased(path)
    if not _int(version) or version not in (1, 2):
        raise MapError(f"{path}: SOG version {version!r} not supported (1 or 2)")
    if version == 2:
        count = meta.get("count")
    else:
        shape = _section(meta, "means", path).get("shape")
        count = shape[0] if isinstance(shape, list) and shape else None
        if count is None:
            raise MapError(f"{path}: SOG version 1 gives its Gaussian count in means.shape, which it lacks")
    if not _int(count) or not 0 < count <= MAX_POINTS:
        raise MapError(f"{path}: SOG Gaussian count {count!r} out of range (1..{MAX_POINTS})")
    n = count
    check_room(n, 3 if meta.get("shN") is not None else 0, path)
    means_m = _section(meta, "means", path, 2)
    lo = _pixels(files, means_m["files"][0], n)[:, :3].astype(np.int64)
    hi = _pixels(files, means_m["files"][1], n)[:, :3].astype(np.int64)
    mins = _floats(means_m.get("mins"), 3, "means.mins", path)
    maxs = _floats(means_m.get("maxs"), 3, "means.maxs", path)
    span = np.where(maxs - mins == 0, 1.0, maxs - mins)
    v = mins + span * ((lo | (hi << 8)) / 65535.0)
    with np.errstate(over="ignore"):  # a huge range: inf positions, refused by the finite check
        means = np.sign(v) * np.expm1(np.abs(v))

    quats_name = _section(meta, "quats", path)["files"][0]
    q = _image(files, quats_name, n, _pixel_bound(n)).reshape(-1, 4)
    _check_count(q, n, quats_name, path)
    q = q[:n]
    abc = (q[:, :3] / 255.0 * 2 - 1) / _SQRT2
    tag = q[:, 3].astype(np.int64) - 252
    valid = (tag >= 0) & (tag <= 3)
    largest = np.where(valid, tag, 0)
    wxyz = np.empty((n, 4))
    rows = np.arange(n)
    m = np.sqrt(np.maximum(0.0, 1.0 - (abc**2).sum(axis=1)))
    for slot in range(4):
        others = np.where(slot < largest, slot, slot - 1)
        wxyz[:, slot] = np.where(largest == slot, m, abc[rows, np.clip(others, 0, 2)])
    wxyz[~valid] = (1, 0, 0, 0)

    sc = _pixels(files, _section(meta, "scales", path)["files"][0], n)
    c0 = _pixels(files, _section(meta, "sh0", path)["files"][0], n)
    if version == 2:
        book = _codebook(meta["scales"].get("codebook"), "scales.codebook", path)
        scales = _look_up(book, sc[:, :3], "scales.codebook", path)
        dc = _look_up(
            _codebook(meta["sh0"].get("codebook"), "sh0.codebook", path), c0[:, :3], "sh0.codebook", path
        )
        a = np.clip(c0[:, 3] / 255.0, 1e-6, 1 - 1e-6)
        opacity = np.log(a / (1 - a))
    else:
        smin = _floats(meta["scales"].get("mins"), 3, "scales.mins", path)
        smax = _floats(meta["scales"].get("maxs"), 3, "scales.maxs", path)
        scales = smin + (smax - smin) * (sc[:, :3] / 255.0)
        cmin = _floats(meta["sh0"].get("mins"), 4, "sh0.mins", path)
        cmax = _floats(meta["sh0"].get("maxs"), 4, "sh0.maxs", path)
        t = cmin + (cmax - cmin) * (c0 / 255.0)
        dc, opacity = t[:, :3], t[:, 3]

    k, rest = 1, None
    shn = meta.get("shN")  # null or absent: no SH beyond the DC term (as PlayCanvas' reader)
    if shn is not None:
        if not isinstance(shn, dict):
            raise MapError(f"{path}: SOG shN entry is not an object")
        rest, k = _sh_rest(files, shn, n, version, path)
    sh = np.zeros((n, k, 3), np.float32)
    sh[:, 0] = dc
    if rest is not None:
        sh[:, 1:] = rest
    means, xyzw, scales, opacity, sh = clamp_nonfinite(
        means, wxyz[:, [1, 2, 3, 0]], scales, opacity, sh, str(path)
    )
    return GaussianMap(
        sh_degree=int(round(k**0.5)) - 1,
        means=means,
        quats=unit_rotations(xyzw, str(path)),
        log_scales=scales,
        opacity_logits=opacity,
        sh=sh,
    )


# The most (255·√2·c)² summed over a Gaussian's three stored components c: 3/2·255² and 8-bit
# rounding (the playbot SOG's most is 1.512·255²); zero or full RGB is 3·255².
_MOST_SQUARES = int(1.6 * 255**2)


def _check_count(q: np.ndarray, n: int, name: str, path) -> None:
    """``count`` against the Gaussians the quats image (RGBA pixels ``q``) holds: each Gaussian's
    alpha is 252 + the index of its largest component ("must be 252..255", PlayCanvas'
    specification) and its RGB the other three, whose squares sum to at most 3/4 (none exceeds the
    largest). Padding after the last one is 0 (splat-transform's near-square layout), or opaque from
    other writers (alpha 255 over zero RGB, whose squares sum to 3/2: no quaternion). A count past the last Gaussian
    would read padding as Gaussians at the ``mins`` corner: refused. Pixels past the count are
    ignored, as the specification says; Gaussians there are said in one warning, as rows past a PLY
    header's count are."""
    alpha = q[:, 3]
    marked, held = np.flatnonzero(alpha >= 252), 0
    for end in range(len(marked), 0, -(1 << 16)):  # from the end: the last Gaussian is near it
        at = marked[max(0, end - (1 << 16)) : end]
        d = q[at, :3].astype(np.int32) * 2 - 255  # (255·√2 times the components)
        at = at[(d * d).sum(axis=1) <= _MOST_SQUARES]
        if len(at):
            held = int(at[-1]) + 1
            break
    if held < n and ((alpha[held:n] == 0) | (alpha[held:n] >= 252)).all():
        raise MapError(
            f"{path}: SOG count {n} (meta.json), but {name} holds {held} Gaussians (a Gaussian's "
            f"alpha is 252..255 over a quaternion's other three components; padding's 0, or 255 over none)"
        )
    if held > n:
        log.warning(
            f"{path}: SOG count {n} (meta.json), but {name} holds {held} Gaussians: those past the "
            "count are not read (the format ignores pixels past it; is the count short?)"
        )


def _sh_rest(files: _Files, shn: dict, n: int, version: int, path) -> tuple[np.ndarray | None, int]:
    if not isinstance(shn.get("files"), list) or len(shn["files"]) != 2:
        raise MapError(f"{path}: SOG shN entry lacks its two files")
    if version == 2:
        bands = shn.get("bands")
        if not _int(bands) or bands not in (1, 2, 3):
            raise MapError(f"{path}: SOG shN.bands {bands!r} not in 1..3")
        coeffs = _SH_COEFFS[bands]
        palette = shn.get("count")
        if not _int(palette) or not 0 < palette <= 65536:
            raise MapError(f"{path}: SOG shN.count {palette!r} not in 1..65536")
        book = _codebook(shn.get("codebook"), "shN.codebook", path)
        cen = _image(files, shn["files"][0], 0, 64 * coeffs * MAX_PALETTE_ROWS, width=64 * coeffs)
    else:
        lo = _floats(shn.get("mins"), 1, "shN.mins", path)
        hi = _floats(shn.get("maxs"), 1, "shN.maxs", path)
        book = lo + (hi - lo) * (np.arange(256) / 255.0)
        cen = _image(files, shn["files"][0], 0, 960 * MAX_PALETTE_ROWS, widths=(192, 512, 960))
        coeffs = {192: 3, 512: 8, 960: 15}[cen.shape[1]]
        palette = cen.shape[0] * 64
    labels_img = _pixels(files, shn["files"][1], n)
    labels = labels_img[:, 0].astype(np.int64) | (labels_img[:, 1].astype(np.int64) << 8)
    rows = cen.shape[0]
    if rows * 64 < palette:  # (v2: labels up to shN.count would index past the image)
        raise MapError(
            f"{path}: SOG image {shn['files'][0]} is {cen.shape[1]}×{rows}: {rows * 64} palette "
            f"entries for shN.count {palette}"
        )
    ent = cen[..., :3].reshape(rows * 64, coeffs, 3)[:palette]
    beyond = labels >= palette  # a lying count or labels: refused, not read as zero SH
    if beyond.any():
        row = int(np.flatnonzero(beyond)[0])
        raise MapError(
            f"{path}: SOG shN label {labels[row]} of Gaussian {row} is beyond the palette's {palette} entries"
        )
    values = _look_up(book, ent, "shN.codebook", path).astype(np.float32)  # (palette, coeffs, 3)
    return values[labels], coeffs + 1
