"""Training loop: AdamW, warmup + cosine schedule, gradient clipping, progress bar, JSONL metrics,
atomic checkpoints every N steps, exact resume (batches and augmentation are pure functions of
(seed, step); torch's RNG state, which dropout draws from, is checkpointed), and periodic
evaluation with the reference metrics (``gsmap_hd.metrics``) on held-out frames."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import tempfile
import time
from glob import escape as glob_escape
from pathlib import Path

import numpy as np
import torch

from gs_mapping.config_file import to_dict
from gs_mapping.device import resolve_device
from gs_mapping.errors import GsMappingError
from gs_mapping.output_files import os_error, write_bytes

from . import checkpoint as ckpt
from .augment import augment
from .data import Sample, SampleSource, collate
from .errors import CheckpointError, HDDataError
from .gaussians2d import BEVGrid, clip_to_patch
from .infer import postprocess
from .losses import GSMapCriterion
from .matching import build_targets
from .model import GSMapModel
from .model_config import POLYGON_CLASSES, TrainConfig, model_config_diff
from .region import Region, clip_elements, clip_vectors, make_region, resolve_name

log = logging.getLogger(__name__)
EVAL_SEED_OFFSET = 7_777  # held-out frames come from another data seed
RUN_FILES = ("last.pt", "model.pt", "metrics.jsonl", "config.json")  # what a run writes into its folder


def lr_factor(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    t = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return 1e-3 + (1 - 1e-3) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))


def batch_indices(cfg: TrainConfig, step: int) -> list[int]:
    rng = np.random.default_rng([cfg.seed, step])
    return rng.choice(cfg.train_frames, size=min(cfg.batch_size, cfg.train_frames), replace=False).tolist()


def sample_region(cfg: TrainConfig, sample: Sample, name: str | None = None) -> Region:
    """The region ``cfg`` declares (or ``name``), for the cameras of ``sample`` as the model sees them."""
    m = cfg.model
    _, Ks, _, _ = collate([sample], m)
    h, w = m.image_size
    cams = [(Ks[0, i].numpy(), sample.T_ego_cam[i], w, h) for i in range(len(sample.T_ego_cam))]
    return make_region(resolve_name(name or cfg.region, cfg.rig), m.x_range, m.y_range, cams)


def gt_to_eval(elements, cfg, region: Region | None = None) -> dict:
    """GT elements → one hd-eval frame, clipped to the BEV patch, then to ``region`` when given."""
    m = cfg.model
    grid = BEVGrid(tuple(m.x_range), tuple(m.y_range), m.bev_h, m.bev_w)
    vecs = []
    for c, pts in elements:
        for piece in clip_to_patch(int(c), pts, grid, int(c) in POLYGON_CLASSES):
            vecs.append({"pts": np.asarray(piece).tolist(), "type": int(c)})
    if region is not None:
        vecs = clip_vectors(vecs, region, POLYGON_CLASSES)
    return {"vectors": vecs}


def evaluate_model(
    model: GSMapModel,
    cfg: TrainConfig,
    source: SampleSource,
    frames: int,
    device: str = "cpu",
    batch: int = 4,
    region: str | None = None,
) -> dict:
    """Predict held-out frames and score them with gsmap_hd.metrics (Chamfer AP + raster AP), GT and
    predictions clipped to the config's region (or ``region``: a region name; ``patch`` = unclipped)."""
    name = resolve_name(region or cfg.region, cfg.rig)
    return evaluate_regions(model, cfg, source, frames, (name,), device, batch)[name]


def evaluate_regions(
    model: GSMapModel,
    cfg: TrainConfig,
    source: SampleSource,
    frames: int,
    regions=("patch", "forward_half", "frustum"),
    device: str = "cpu",
    batch: int = 4,
) -> dict:
    """:func:`evaluate_model` for several regions from one pass of predictions: {region: metrics}."""
    from .metrics import evaluate  # the reference metrics (other module)

    model.eval()
    raw, gts_raw = [], []
    with torch.no_grad():
        for i in range(0, frames, batch):
            samples = [source[j] for j in range(i, min(frames, i + batch))]
            im, K, T, _ = collate(samples, cfg.model)
            out = model(im.to(device), K.to(device), T.to(device))
            for b, s in enumerate(samples):
                els = postprocess(out["logits"][-1][b], out["params"][-1][b])
                raw.append([e.to_eval() for e in els])
                gts_raw.append(s.elements)
    model.train()
    out = {}
    for name in regions:
        reg = sample_region(cfg, source[0], name)
        results = [{"vectors": clip_vectors(v, reg, POLYGON_CLASSES)} for v in raw]
        gts = [gt_to_eval(g, cfg, reg) for g in gts_raw]
        ev = evaluate(results, gts, frame="rep103")  # our points are base_link (x fwd, y left)
        ev["region"] = {"name": reg.name, "area_m2": round(reg.area, 2)}
        out[name] = ev
    return out


def _param_groups(model: GSMapModel, cfg: TrainConfig):
    bb = list(model.backbone.parameters())
    ids = {id(p) for p in bb}
    rest = [p for p in model.parameters() if id(p) not in ids]
    return [{"params": bb, "lr": cfg.lr * cfg.backbone_lr_mult}, {"params": rest, "lr": cfg.lr}]


def train(
    cfg: TrainConfig,
    out_dir: str | Path,
    resume: bool = False,
    progress: bool = True,
    source: SampleSource | None = None,
    eval_source: SampleSource | None = None,
    overwrite: bool = False,
) -> dict:
    """Train (or resume) into ``out_dir``: ``last.pt`` (resumable), ``model.pt`` (final weights),
    ``metrics.jsonl`` (one line per log/eval), ``config.json``. Returns the last logged metrics.
    A directory holding a run already is continued with ``resume`` or started over with
    ``overwrite``; without either it is refused (its trained model is never replaced unasked). An
    existing directory holding other things and no run (a bag's) is refused: nothing is written
    there."""
    out_dir = Path(out_dir)
    try:
        if out_dir.exists() and not out_dir.is_dir():
            raise HDDataError(f"{out_dir}: exists and is not a run directory")
        held = [n for n in RUN_FILES if (out_dir / n).exists()]
        others = [] if held or not out_dir.is_dir() else _not_a_runs(out_dir)
    except OSError as exc:  # a name too long: what looking at the path raised, named
        raise os_error(out_dir, exc, "cannot use this run directory") from None
    if others:  # (a bag's folder, a home directory: a run goes in a folder of its own)
        more = f", and {len(others) - 3} more" if len(others) > 3 else ""
        raise HDDataError(
            f"{out_dir}: holds other files ({', '.join(others[:3])}{more}), not a run; "
            "hd-train writes a run into a new or empty folder: give another --out"
        )
    if held and not (resume or overwrite):
        raise HDDataError(
            f"{out_dir}: holds a run already ({held[0]}); --resume continues it, --overwrite starts over"
        )
    if held and resume and not overwrite and not (out_dir / "last.pt").exists():
        raise HDDataError(
            f"{out_dir}: --resume: no last.pt to continue from (it holds {held[0]}); --overwrite starts over"
        )
    # starting over replaces the run's files, an input never (README): a run fine-tuned in place
    starts_over = held and overwrite and not (resume and (out_dir / "last.pt").exists())
    replaced = {os.path.realpath(out_dir / n) for n in held} if starts_over else set()
    if cfg.init_from and os.path.realpath(cfg.init_from) in replaced:
        raise HDDataError(
            f"{out_dir}: holds the --init-from checkpoint {cfg.init_from}, which --overwrite would replace; "
            "refusing (copy it out of the run folder first)"
        )
    device = resolve_device(cfg.device)
    torch.set_num_threads(max(1, cfg.num_threads))
    torch.manual_seed(cfg.seed)
    size = tuple(cfg.model.image_size)
    patch = (tuple(cfg.model.x_range), tuple(cfg.model.y_range))  # the GT covers the model's patch
    if cfg.data == "nuscenes" and source is None:
        from .nuscenes import EvenlySpaced, NuScenesSamples

        root, version = cfg.nuscenes_root, cfg.nuscenes_version
        source = NuScenesSamples(root, version, cfg.nuscenes_train_split, cfg.rig, *patch)
        eval_source = eval_source or NuScenesSamples(root, version, cfg.nuscenes_eval_split, cfg.rig, *patch)
        if cfg.train_frames > len(source):
            log.info(f"nuScenes {cfg.nuscenes_train_split}: {len(source)} samples (train_frames lowered)")
            cfg = dataclasses.replace(cfg, train_frames=len(source))
        cfg = dataclasses.replace(cfg, eval_frames=min(cfg.eval_frames, len(eval_source)))
        # frames drawn from every scene of a split, not its first N samples (a few scenes in order)
        source = EvenlySpaced(source, cfg.train_frames, cfg.nuscenes_train_split)
        eval_source = EvenlySpaced(eval_source, cfg.eval_frames, cfg.nuscenes_eval_split)
    source = source or SampleSource(cfg.data, cfg.rig, cfg.data_seed, size, *patch)
    eval_source = eval_source or SampleSource(
        cfg.data, cfg.rig, cfg.data_seed + EVAL_SEED_OFFSET, size, *patch
    )
    model = GSMapModel(cfg.model).to(device)
    opt = torch.optim.AdamW(_param_groups(model, cfg), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg))
    start, loop = 0, None
    last = out_dir / "last.pt"
    if resume and last.exists():
        state = ckpt.load_state(last)
        old = ckpt.config_of(state, last)
        diff = model_config_diff(cfg.model, old.model)
        if diff:
            raise CheckpointError(f"{last}: cannot resume, the model config differs ({'; '.join(diff[:4])})")
        if "step" not in state:
            raise CheckpointError(f"{last}: cannot resume, the checkpoint has no step")
        if cfg.init_from and not _same_file(cfg.init_from, old.init_from):
            # a resume takes last.pt's weights: a new --init-from would be recorded, never used
            raise CheckpointError(
                f"{last}: cannot resume from it and start from --init-from {cfg.init_from} at once "
                f"(the run was started {'from ' + old.init_from if old.init_from else 'from scratch'}); "
                "--overwrite with --init-from starts a new fine-tune"
            )
        start = state["step"]
        if cfg.steps < start:  # (nothing to train: model.pt would label step-`start` weights cfg.steps)
            raise CheckpointError(
                f"{last}: cannot resume, the run is at step {start}, past steps {cfg.steps} (give --steps above {start})"
            )
        try:
            model.load_state_dict(state["model"])
            if "optimizer" in state:
                opt.load_state_dict(state["optimizer"])
            if "scheduler" in state:
                sched.load_state_dict(state["scheduler"])
            loop = state.get("loop")
            if loop is not None:  # (read before anything is written: a bad one refused here)
                loop = {**loop, "acc": {str(k): float(v) for k, v in loop["acc"].items()}}
                loop["n_acc"] = int(loop["n_acc"])
                if not (isinstance(loop["rng"], torch.Tensor) and loop["rng"].dtype == torch.uint8):
                    raise TypeError("its RNG state is not a byte tensor")
        except (RuntimeError, ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{last}: cannot resume: {ckpt.fit_reason(exc)}") from None
        # lr, weight decay and backbone multiplier as this config says (a resume may change them,
        # as it may --steps): the restored state holds the old ones
        sched.base_lrs = [g["lr"] for g in _param_groups(model, cfg)]
        for group, base in zip(opt.param_groups, sched.base_lrs, strict=True):
            group.update(initial_lr=base, lr=base * lr_factor(start, cfg), weight_decay=cfg.weight_decay)
        _trim_metrics(out_dir / "metrics.jsonl", start)
        log.info(f"resumed from {last} at step {start}")
    elif cfg.init_from:
        base, base_cfg, _ = ckpt.load_model(cfg.init_from, expect=cfg.model)
        model.load_state_dict(base.state_dict())
        log.info(f"initialised from {cfg.init_from} ({ckpt.describe_training(base_cfg)})")
    # the run directory is made (and its config written) only once the model stands: a run that
    # fails before leaves nothing, and an existing run's files as they were
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # (a link that leads nowhere, or in a loop)
        raise HDDataError(f"{out_dir}: exists and is not a run directory") from None
    except OSError as exc:  # a parent that is a file, a read-only or full disk: named, one line
        raise os_error(out_dir, exc, "cannot create the run directory") from None
    real = Path(os.path.realpath(out_dir))  # (named through a symlink, or as ".")
    swap = _swappable(real)  # (decided once: the lock's place and the install's way go together)
    lock = _lock_run(real, swap)
    try:
        held_now = [n for n in RUN_FILES if (out_dir / n).exists()]
        if held_now and not held and not (resume or overwrite):  # (another run finished meanwhile)
            raise HDDataError(f"{out_dir}: holds a run already ({held_now[0]}); --overwrite starts over")
        run = _RunFiles(real, overwrite and not (resume and last.exists()), swap)
        try:
            return _train_loop(
                cfg, model, opt, sched, source, eval_source, device, start, run, progress, loop
            )
        except GsMappingError as exc:  # (a staged file named as the user knows it: OUT/last.pt)
            if run.staging is None or str(run.staging) not in str(exc):
                raise
            raise type(exc)(str(exc).replace(str(run.staging), str(out_dir))) from None
        finally:
            run.discard_staging()
    finally:
        _unlock_run(lock, _lock_path(real, swap))


def _not_a_runs(out_dir: Path) -> list[str]:
    """The names in a folder holding no run that are not hd-train's own (a lock, a staging folder a
    killed run left): sorted."""
    return sorted(n for n in os.listdir(out_dir) if n != ".hd-train.lock" and not n.startswith(".hd-train-"))


def _same_file(a: str, b: str) -> bool:
    """Whether two checkpoint names (as given, relative or through links) name one file."""
    return bool(b) and os.path.realpath(a) == os.path.realpath(b)


def _swappable(real: Path) -> bool:
    """Whether a started-over run's folder can be swapped whole: its parent writable and on the
    folder's file system (not a mount point: ``docker -v``, a USB stick)."""
    try:
        parent = real.parent
        return (
            os.access(parent, os.W_OK | os.X_OK)
            and not os.path.ismount(real)
            and real.stat().st_dev == parent.stat().st_dev
        )
    except OSError:
        return False


def _lock_path(real: Path, beside: bool) -> Path:
    """Where the lock of the run folder ``real`` (its real path) is: ``.NAME.hd-train.lock`` beside
    it, or ``.hd-train.lock`` inside (:func:`_lock_run`)."""
    from gs_mapping.output_files import temp_prefix

    return real.parent / temp_prefix(real, ".hd-train.lock") if beside else real / ".hd-train.lock"


def _lock_run(out_dir: Path, beside: bool | None = None) -> int:
    """One hd-train a run folder (however it is named: the lock is the real folder's): an exclusive
    flock on ``.NAME.hd-train.lock`` held for the whole run (two runs on one ``--out`` interleaved
    their checkpoints and logs). Beside the folder where it is swapped whole (the lock must outlive
    the swap; ``beside``: :func:`_swappable`'s answer, worked out here when not given), else inside
    it. The file goes when the run ends (:func:`_unlock_run`): a lock taken on a file that was
    removed meanwhile (opened just before its run ended) is no lock, and is taken again on the file
    the name now holds."""
    import fcntl

    real = Path(os.path.realpath(out_dir))
    beside = _swappable(real) if beside is None else beside
    path = _lock_path(real, beside)
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise HDDataError(f"{path}: cannot create the run's lock file ({exc.strerror or exc})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise HDDataError(
                f"{real}: another hd-train is writing this run (it holds {path.name})"
            ) from None
        if _names_file(path, fd):
            return fd
        os.close(fd)  # (its run ended and removed it between our open and our flock: again)


def _names_file(path: Path, fd: int) -> bool:
    """Whether ``path`` still names the file open as ``fd``."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    own = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)


def _unlock_run(fd: int, path: Path) -> None:
    """End a run's lock (:func:`_lock_run`): its file removed while still held (a run starting now
    locks a new one), then let go."""
    try:
        if _names_file(path, fd):
            path.unlink()
    except OSError:  # (a folder made read-only meanwhile: the file stays, harmless)
        pass
    finally:
        os.close(fd)


def _trim_metrics(path: Path, step: int) -> None:
    """The log of a run resumed at ``step`` keeps only its records up to that step: those logged
    after the last checkpoint (the run was killed) are logged again by the resumed run. Rewritten
    beside and renamed over; a line that does not read (a kill mid-write) goes too."""
    from gs_mapping.output_files import write_text

    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and isinstance(rec.get("step"), int) and rec["step"] <= step:
            kept.append(line)
    write_text(path, "".join(f"{line}\n" for line in kept), overwrite=True)


class _RunFiles:
    """Where a run writes. Started over (``--overwrite`` on a folder holding a run), the new run's
    files go to a hidden staging folder until its first checkpoint. With ``swap`` (see
    :func:`_swappable`) it is beside the folder, and then the folder is swapped whole for one holding
    the new run's files and the old folder's other files (linked): an interrupted or failed new run
    leaves the old one as it was, never a mix. Without (a mount point, a read-only parent) it is
    inside, and its files take the old ones' places one by one."""

    def __init__(self, out_dir: Path, start_over: bool, swap: bool = True) -> None:
        from gs_mapping.output_files import temp_prefix

        self.out_dir, self.swap = out_dir, swap
        held = start_over and any((out_dir / n).exists() for n in RUN_FILES)
        prefix = temp_prefix(out_dir, ".hd-train-")
        # staging folders of started-over runs that were killed (SIGKILL) before (the lock is ours)
        for old in [*out_dir.glob(".hd-train-*"), *out_dir.parent.glob(f"{glob_escape(prefix)}*")]:
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old, ignore_errors=True)
        where = (prefix, out_dir.parent) if swap else (".hd-train-", out_dir)
        self.staging = Path(tempfile.mkdtemp(prefix=where[0], dir=where[1])) if held else None

    @property
    def dir(self) -> Path:
        return self.staging or self.out_dir

    def checkpointed(self) -> None:
        """The new run has a checkpoint of its own: the folder with its files (and the old folder's
        files that are not the run's, linked) takes the old folder's place in one step."""
        from gs_mapping.output_files import install_directory

        if self.staging is None:
            return
        if not self.swap:  # (one by one: a kill in between leaves a mix, the swap's one limit)
            staged = {f.name for f in self.staging.iterdir()}
            for name in sorted(staged):  # (each made durable before its name is: metrics.jsonl's too)
                fd = os.open(self.staging / name, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.replace(self.staging / name, self.out_dir / name)
            for name in RUN_FILES:
                if name not in staged:
                    (self.out_dir / name).unlink(missing_ok=True)
            self.staging.rmdir()
            self.staging = None
            return
        for entry in self.out_dir.iterdir():
            if entry.name in RUN_FILES or (self.staging / entry.name).exists():
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.copytree(entry, self.staging / entry.name, symlinks=True, copy_function=os.link)
            elif entry.is_symlink():
                os.symlink(os.readlink(entry), self.staging / entry.name)
            else:
                os.link(entry, self.staging / entry.name)
        # (every file fsynced first; the folder keeps the old one's mode, group and owner)
        install_directory(self.staging, self.out_dir, overwrite=True)
        self.staging = None

    def discard_staging(self) -> None:
        if self.staging is not None:
            shutil.rmtree(self.staging, ignore_errors=True)
            self.staging = None


def _loop_state(acc: dict, n_acc: int, device) -> dict:
    """What an exact resume needs beside weights and optimiser: torch's RNG state (dropout draws
    from it; batches and augmentation are pure functions of (seed, step)) and the loss sums of the
    steps since the last log line."""
    state = {"acc": dict(acc), "n_acc": n_acc, "rng": torch.get_rng_state()}
    if torch.device(device).type == "cuda":
        state["cuda_rng"] = torch.cuda.get_rng_state(torch.device(device))
    return state


def _restore_loop(state: dict | None, device) -> None:
    """Set torch's RNG state from a checkpoint's :func:`_loop_state` (None: a checkpoint from
    before it was kept), just before the first resumed step, where the straight run was."""
    if state is None:
        return
    torch.set_rng_state(state["rng"])
    if "cuda_rng" in state and torch.device(device).type == "cuda":
        torch.cuda.set_rng_state(state["cuda_rng"], torch.device(device))


def _train_loop(
    cfg, model, opt, sched, source, eval_source, device, start, run: _RunFiles, progress, loop=None
):
    from gs_mapping.progress import progress as progress_report

    write_bytes(run.dir / "config.json", json.dumps(to_dict(cfg), indent=2).encode(), overwrite=True)
    crit = GSMapCriterion(cfg.model, cfg.loss)
    # Render the training frames once, in order (consecutive frames share a drive/world); nuScenes
    # samples are read from disk when used
    for i in progress_report(
        range(0 if cfg.data == "nuscenes" else cfg.train_frames),
        desc="hd-train data",
        enabled=progress,
        leave=False,
    ):
        source[i]
    region = sample_region(cfg, source[0])
    log.info(f"training region: {region.name} ({region.area:.0f} m² of the patch)")
    logged: dict = {}
    model.train()
    bar = progress_report(
        range(start, cfg.steps),
        initial=start,
        total=cfg.steps,
        enabled=progress,
        desc="hd-train",
        unit="step",
    )
    t0 = time.perf_counter()
    acc: dict[str, float] = dict(loop["acc"]) if loop else {}
    n_acc = loop["n_acc"] if loop else 0
    target_cache: dict = {}
    augmenting = cfg.augment_flip > 0 or cfg.augment_color > 0
    _restore_loop(loop, device)
    for step in bar:
        idx = batch_indices(cfg, step)
        rng = np.random.default_rng([cfg.seed, step, 1])  # augmentation: a pure function of (seed, step)
        samples, keys = [], []
        for i in idx:
            s = source[i]
            s = Sample(s.images, s.K, s.T_ego_cam, clip_elements(s.elements, region, POLYGON_CLASSES))
            s, flipped = augment(s, cfg.augment_flip, cfg.augment_color, rng)
            samples.append(s)
            keys.append((i, flipped))
        im, K, T, _ = collate(samples, cfg.model)
        if augmenting:  # many distinct (frame, mirror) targets: built each time (~20 ms a frame)
            targets = [build_targets(s.elements, cfg.model, cfg.loss).to(device) for s in samples]
        else:  # targets are a pure function of the frame: build once
            for key, s in zip(keys, samples, strict=False):
                if key not in target_cache:
                    target_cache[key] = build_targets(s.elements, cfg.model, cfg.loss).to(device)
            targets = [target_cache[k] for k in keys]
        out = model(im.to(device), K.to(device), T.to(device))
        losses = crit(out, targets, step)
        opt.zero_grad(set_to_none=True)
        losses["loss"].backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        loss_finite = bool(torch.isfinite(losses["loss"]))
        if not (loss_finite and torch.isfinite(gnorm)):
            _diverged(run, step, "gradient norm" if loss_finite else "loss")
        opt.step()
        sched.step()
        # finite gradients can still step the weights to inf (a huge learning rate): the next forward
        # would fail inside the rasterizer; the check costs well under a percent of a step
        if ckpt.first_nonfinite(model.named_parameters()) is not None:
            _diverged(run, step, "weights")  # never evaluated, nor written over a good checkpoint
        for k, v in losses.items():
            acc[k] = acc.get(k, 0.0) + float(v.detach())
        acc["grad_norm"] = acc.get("grad_norm", 0.0) + float(gnorm)
        n_acc += 1
        done = step + 1
        if done % cfg.log_every == 0 or done == cfg.steps:
            logged = {
                "step": done,
                **{k: v / n_acc for k, v in acc.items()},
                "lr": opt.param_groups[1]["lr"],
                "elapsed_s": time.perf_counter() - t0,
            }
            acc, n_acc = {}, 0
            with (run.dir / "metrics.jsonl").open("a") as f:
                f.write(json.dumps(logged) + "\n")
            bar.set_postfix(loss=f"{logged['loss']:.3f}", pts=f"{logged['pts']:.3f}")
        evaluating = bool(
            cfg.eval_every and (done % cfg.eval_every == 0 or done == cfg.steps) and cfg.eval_frames
        )
        saving = done % cfg.checkpoint_every == 0 or done == cfg.steps
        if evaluating:
            try:
                ev = evaluate_model(model, cfg, eval_source, cfg.eval_frames, device)
                rec = {"step": done, "eval": ev}
                with (run.dir / "metrics.jsonl").open("a") as f:
                    f.write(json.dumps(rec) + "\n")
                logged["eval"] = ev
                log.info(f"step {done} eval: {json.dumps(ev)}")
            except ImportError:
                log.warning("gsmap_hd.metrics not available: evaluation skipped")
        if saving:
            ckpt.save(run.dir / "last.pt", model, cfg, done, opt, sched, loop=_loop_state(acc, n_acc, device))
            run.checkpointed()
    bar.close()
    ckpt.save(run.dir / "model.pt", model, cfg, cfg.steps, weights_only=True)
    return logged


def _diverged(run: _RunFiles, step: int, what: str):
    kept = (
        f"the run {run.out_dir} held before is kept as it was"
        if run.staging is not None
        else f"the checkpoints in {run.out_dir} are from before it"
    )
    raise HDDataError(
        f"training diverged: the {what} became non-finite at step {step + 1} (lower --lr?); {kept}"
    )
