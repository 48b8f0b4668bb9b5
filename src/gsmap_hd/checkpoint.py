"""Checkpoints: weights + the full training config (so a checkpoint rebuilds its own model) + the
optimiser/scheduler state and step for resuming. Written atomically (temp file + rename)."""

from __future__ import annotations

import errno
import re
import stat
import zipfile
import zlib
from pathlib import Path

import torch

from gs_mapping.config_file import from_dict, to_dict
from gs_mapping.output_files import os_reason, output_path

from .errors import CheckpointError
from .model import GSMapModel
from .model_config import ModelConfig, TrainConfig, model_config_diff

FORMAT = "gsmap_hd/1"


def save(
    path: str | Path,
    model: GSMapModel,
    cfg: TrainConfig,
    step: int = 0,
    optimizer=None,
    scheduler=None,
    extra: dict | None = None,
    weights_only: bool = False,
    loop: dict | None = None,
) -> Path:
    """``loop``: what else an exact resume needs (the training loop's RNG state and its partial
    log average), kept with the optimiser state (not in a ``weights_only`` file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "format": FORMAT,
        "config": to_dict(cfg),
        "step": int(step),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "extra": _plain(extra or {}, "extra"),
    }
    if weights_only:
        state["model"] = {k: _half_if_it_fits(v) for k, v in state["model"].items()}
        state["half"] = True  # float tensors in float16 where they fit (loaders cast back to float32)
    else:
        if optimizer is not None:
            state["optimizer"] = optimizer.state_dict()
        if scheduler is not None:
            state["scheduler"] = scheduler.state_dict()
        if loop is not None:
            state["loop"] = loop
    # written beside it, synced, then renamed over it (a power cut leaves the old checkpoint or
    # the new one, never an empty file); a full disk is one line naming the file
    with output_path(path, overwrite=True) as tmp:
        try:
            torch.save(state, tmp)
        except RuntimeError as exc:  # torch's zip writer on a failed write ("unexpected pos …")
            raise CheckpointError(
                f"{path}: cannot write the checkpoint: {str(exc).splitlines()[0]}"
            ) from None
    return path


def _plain(value, where: str):
    """``extra`` as the plain data a weights-only load reads back: numpy scalars and arrays as
    Python numbers and lists (saved as they are, they made a file its own loader refuses); any
    other object refused before anything is written."""
    import numpy as np

    if isinstance(value, dict):
        return {str(k): _plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, (np.generic, np.ndarray)):
        # (a scalar's item() too: np.datetime64's is a datetime, no plain data)
        return _plain(value.tolist() if isinstance(value, np.ndarray) else value.item(), where)
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor)):
        return value
    raise CheckpointError(
        f"checkpoint {where}: a {type(value).__name__} is not plain data (numbers, text, lists, dicts)"
    )


def _half_if_it_fits(v: torch.Tensor) -> torch.Tensor:
    """A float tensor in float16 (half the file) when that loses no more than float16's own
    rounding, 2⁻¹¹ of the tensor's largest magnitude; else as it is. A value beyond ±65504 would
    be stored as inf (and the file refused on load), and a tensor of magnitudes below float16's
    normal range (~6e-5) lose its values to underflow; a few tiny values beside large ones are
    negligible at the tensor's scale and do not keep it in float32."""
    if not v.is_floating_point() or v.numel() == 0:
        return v
    h = v.half()
    err = (h.to(v.dtype) - v).abs().max()
    return h if bool(err <= 2.0**-11 * v.abs().max()) else v


def check_file(path: str | Path) -> None:
    """A checkpoint's path refused in one line naming it, before anything is read: missing, a
    directory, a device or pipe (never read: a FIFO would block), an empty file."""
    path = Path(path)
    try:
        st = path.stat()
    except OSError as exc:  # (missing, or a name too long, a loop of links: named as it is)
        why = "checkpoint not found" if exc.errno in (errno.ENOENT, errno.ENOTDIR) else os_reason(exc)
        raise CheckpointError(f"{path}: {why}") from None
    if stat.S_ISDIR(st.st_mode):
        raise CheckpointError(f"{path}: is a directory, not a checkpoint file")
    if not stat.S_ISREG(st.st_mode):
        raise CheckpointError(f"{path}: not a regular file (a device, pipe or socket), not a checkpoint")
    if st.st_size == 0:
        raise CheckpointError(f"{path}: empty file, not a checkpoint")


def load_state(path: str | Path) -> dict:
    path = Path(path)
    check_file(path)
    _check_crcs(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds on truncated/corrupt files
        raise CheckpointError(f"{path}: cannot read checkpoint ({_load_failure(path, exc)})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: {_not_ours(state)}")
    _check_structure(state, path)
    return state


def _not_ours(state) -> str:
    """Why a file torch reads is not a checkpoint this version takes, in a few words: one of a later
    (or earlier) format, a bare state_dict (weights without the config that rebuilds the model)."""
    fmt = state.get("format") if isinstance(state, dict) else None
    if isinstance(fmt, str) and fmt.startswith("gsmap_hd/"):
        ours, theirs = int(FORMAT.split("/")[1]), fmt.split("/", 1)[1]
        newer = theirs.isdigit() and int(theirs) > ours
        return (
            f"a gsmap_hd checkpoint of format {fmt!r}, {'newer than' if newer else 'not'} the {FORMAT!r} "
            f"this version reads{': update gs_mapping to load it' if newer else ''}"
        )
    if isinstance(state, dict) and state and all(isinstance(v, torch.Tensor) for v in state.values()):
        return (
            "a bare state_dict (weights only), not a gsmap_hd checkpoint: it lacks the training config "
            "that rebuilds the model (gsmap_hd.checkpoint.save writes both)"
        )
    return f"not a gsmap_hd checkpoint (format {fmt!r})"


def _load_failure(path: Path, exc: Exception) -> str:
    """Why ``torch.load`` refused a file, in a few words. Never torch's advice to load it with
    ``weights_only=False``: that runs whatever code the file holds, and our checkpoints hold only
    tensors and plain data, so a file it refuses is not one. An ONNX export (``hd-export --onnx``),
    the likely slip, is named: it is run by ``backend: onnx`` with ``onnx_model``."""
    if _is_onnx_model(path):
        return (
            "it is an ONNX model, not a torch checkpoint: hd_map_node runs it with backend: onnx, "
            "onnx_model: FILE"
        )
    text = str(exc)
    if "central directory" in text:  # (torch's zip reader on a file cut short: a page of advice)
        return "truncated or damaged: its zip archive has no end, copied or written only in part?"
    if "weights_only" in text:  # (torch's "Weights only load failed …": the reason is after the advice)
        why = text.partition("WeightsUnpickler error:")[2].strip().split("\n")[0]
        # "Unsupported global: GLOBAL mod.Name was not an allowed global by default. Please use …
        # add_safe_globals …": the object named, torch's advice to allow it (run its code) left out
        glob = re.search(r"GLOBAL (\S+) was not an allowed global", why)
        if glob and glob.group(1).endswith(".GSMapModel"):
            return (
                "a whole model pickled with torch.save(model), not a gsmap_hd checkpoint: "
                "save its weights and config with gsmap_hd.checkpoint.save"
            )
        if glob:
            why = f"it holds a pickled {glob.group(1)} object, not only tensors and plain data"
        return f"not a gsmap_hd checkpoint: {why or 'it holds more than tensors and plain data'}"
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


def _is_onnx_model(path: Path, head_bytes: int = 1 << 20) -> bool:
    """Whether ``path`` reads as an ONNX ModelProto: top-level protobuf fields, the first its
    ``ir_version`` (field 1, a varint), and among them its ``graph`` (field 7, length-delimited,
    within the file), walked by their keys and lengths (not every protobuf starting with a field-1
    varint is one: a TensorFlow ``saved_model.pb`` is not)."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            data = f.read(head_bytes)
    except OSError:
        return False

    def varint(i: int) -> tuple[int, int]:
        value = shift = 0
        while i < len(data) and shift < 64:
            b = data[i]
            value |= (b & 0x7F) << shift
            i, shift = i + 1, shift + 7
            if b < 0x80:
                return value, i
        raise IndexError

    i, first = 0, True
    try:
        while i < len(data):
            key, i = varint(i)
            field, wire = key >> 3, key & 7
            if first and (field, wire) != (1, 0):
                return False
            first = False
            if wire == 0:
                _, i = varint(i)
            elif wire in (1, 5):
                i += 8 if wire == 1 else 4
            elif wire == 2:
                length, i = varint(i)
                if field == 7:
                    return i + length <= size
                i += length
            else:
                return False
    except IndexError:
        pass
    return False


def _check_crcs(path: Path) -> None:
    """A damaged checkpoint refused before it loads: ``torch.save`` writes a zip whose members
    carry CRC-32s, which ``torch.load`` does not check, so flipped or zeroed bytes in a weight
    loaded as other, finite weights. Not a zip (a truncated file, another format): left to
    ``torch.load``'s own error."""
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
            # written without CRCs (torch.serialization.set_crc32_options(False)): nothing to check
            if all(i.CRC == 0 for i in infos if i.file_size):
                return
            bad = z.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError, zlib.error):
        return
    if bad is not None:
        raise CheckpointError(f"{path}: checkpoint damaged: member {bad!r} fails its CRC-32 check")


def _check_structure(state: dict, path) -> None:
    """What the loaders take from a checkpoint, checked once: its fields' types, and finite
    weights (a bit flip in a float, or a diverged run, would otherwise fail deep in inference)."""
    weights = state.get("model")
    if not isinstance(weights, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in weights.items()
    ):
        raise CheckpointError(f"{path}: checkpoint without its weights (a 'model' table of tensors)")
    for key, kind in (("config", dict), ("extra", dict), ("step", int)):
        if key in state and (not isinstance(state[key], kind) or isinstance(state[key], bool)):
            raise CheckpointError(f"{path}: checkpoint field {key!r} is not a {kind.__name__}")
    if "step" in state and state["step"] < 0:
        raise CheckpointError(f"{path}: checkpoint step {state['step']} is negative")
    bad = first_nonfinite(weights.items())
    if bad is not None:
        raise CheckpointError(f"{path}: checkpoint weight {bad[0]!r} has {bad[1]} non-finite values")


def first_nonfinite(named_tensors) -> tuple[str, int] | None:
    """(name, count of NaN/inf values) of the first floating tensor that holds any; None when all
    are finite (a checkpoint's weights, or a model's parameters during training)."""
    for name, v in named_tensors:
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            return name, int((~torch.isfinite(v)).sum())
    return None


def config_of(state: dict, path) -> TrainConfig:
    try:
        return from_dict(TrainConfig, state["config"], where=f"{path}: config")
    except Exception as exc:
        # (a field this version does not know: most likely a later version's option)
        later = (
            " (written by a later gs_mapping? update it to load this checkpoint)"
            if "unknown key" in str(exc)
            else ""
        )
        raise CheckpointError(f"{path}: config in checkpoint is invalid: {exc}{later}") from None


def load_model(
    path: str | Path, expect: ModelConfig | None = None, device: str = "cpu"
) -> tuple[GSMapModel, TrainConfig, dict]:
    """Rebuild the model a checkpoint was trained as; with ``expect``, refuse one of another config."""
    state = load_state(path)
    cfg = config_of(state, path)
    if expect is not None:
        diff = model_config_diff(expect, cfg.model)
        if diff:
            raise CheckpointError(f"{path}: checkpoint is from another model config ({'; '.join(diff[:4])})")
    model = GSMapModel(cfg.model)
    weights = {k: v.float() if v.is_floating_point() else v for k, v in state["model"].items()}
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit the model config: {fit_reason(exc)}") from None
    return model.to(device).eval(), cfg, state


def fit_reason(exc: Exception) -> str:
    """torch's load_state_dict message without its header line: the first missing, unexpected or
    mis-sized key (cut short); another exception's first line."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()] or [""]
    if len(lines) > 1 and lines[0].startswith("Error(s) in loading"):
        lines = lines[1:]
    return lines[0] if len(lines[0]) <= 200 else lines[0][:197] + "..."


def describe_training(cfg: TrainConfig, step: int | None = None, extra: dict | None = None) -> str:
    """One line saying what a model learnt from (logged by hd_map_node at start)."""
    from .region import resolve_name

    data = {
        "world": "the procedural driving world (gs_mapping.world), synthetic images only",
        "flat": "built-in flat-road scenes, synthetic images only",
    }.get(cfg.data, cfg.data)
    h, w = cfg.model.image_size
    text = (
        f"trained on {data}: {cfg.rig} rig at {w}x{h}, {cfg.train_frames} frames (data seed {cfg.data_seed}), "
        f"{step if step is not None else cfg.steps} steps, region {resolve_name(cfg.region, cfg.rig)}"
    )
    held = (extra or {}).get("heldout_eval")
    if isinstance(held, dict) and "chamfer_mAP" in held:
        text += f"; held-out world Chamfer mAP {float(held['chamfer_mAP']):.3f}"
        if "region" in held:
            text += f" ({held['region']})"
    if cfg.data in ("world", "flat"):
        text += ". Real cameras are outside this domain: train on real data (e.g. nuScenes) first"
    return text
