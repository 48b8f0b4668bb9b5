"""The GSMap network as ONNX, and an onnxruntime runner that stands in for the torch model.

Export (``gs-mapping hd-export --onnx``): the whole network — backbone, geometric lifting (its
``grid_sample`` into the cameras), BEV encoder, decoder with the deformable cross-attention (also
``grid_sample``) — traced into one graph at opset 17 (``GridSample`` needs ≥ 16). Inputs
``images`` (B, N, 3, H, W) float RGB in [0, 1] at the model's input size, ``K`` (B, N, 3, 3) for those
images, ``T_ego_cam`` (B, N, 4, 4); outputs ``logits`` (B, E, C) and ``params`` (B, E, K, 5) of the last
decoder layer (what inference uses). B and N are dynamic. The training config travels in the model's
metadata (``gsmap_hd_config``), so a runner rebuilds the same pre- and post-processing.

Runner (``hd_map_node.backend: onnx``): :class:`OnnxModel` has the torch model's call signature and
output dict, so :class:`gsmap_hd.infer.Predictor` uses either. Execution providers: CPU here; on a
Jetson (onnxruntime-gpu from NVIDIA's Jetson wheels) ``("TensorrtExecutionProvider",
"CUDAExecutionProvider", "CPUExecutionProvider")`` — see docs/hd_model.md.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn

from gs_mapping.output_files import output_path

from .errors import CheckpointError
from .model import GSMapModel
from .model_config import ModelConfig, TrainConfig

log = logging.getLogger(__name__)
OPSET = 17
META_KEY = "gsmap_hd_config"
META_EXTRA = "gsmap_hd_provenance"
INPUTS = ("images", "K", "T_ego_cam")
OUTPUTS = ("logits", "params")


class _LastLayer(nn.Module):
    def __init__(self, model: GSMapModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, images, K, T_ego_cam):
        out = self.model(images, K, T_ego_cam)
        return out["logits"][-1], out["params"][-1]


def export_onnx(
    model: GSMapModel,
    cfg: TrainConfig,
    path: str | Path,
    num_cameras: int = 1,
    step: int | None = None,
    extra: dict | None = None,
    shown: str | Path | None = None,
) -> Path:
    """Write ``model`` as ONNX to ``path`` (temp file + rename). ``num_cameras`` only shapes the example
    input of the trace; the graph takes any number of cameras. ``shown``: the output a failure to
    write names, where ``path`` is the caller's temp (hd-export's)."""
    import warnings

    import onnx  # deferred: only the export needs it

    from gs_mapping.config_file import to_dict

    path = Path(path)
    model = model.eval().float()
    h, w = model.cfg.image_size
    ex = (
        torch.rand(1, num_cameras, 3, h, w),
        torch.tensor([[200.0, 0, (w - 1) / 2], [0, 200.0, (h - 1) / 2], [0, 0, 1]]).expand(
            1, num_cameras, 3, 3
        ),
        torch.eye(4).expand(1, num_cameras, 4, 4).clone(),
    )
    ex[2][..., :3, :3] = torch.tensor([[0.0, 0, 1], [-1, 0, 0], [0, -1, 0]])  # a forward-looking camera
    ex[2][..., 2, 3] = 1.5
    dyn = {n: {0: "batch", 1: "cameras"} for n in INPUTS}
    dyn.update({n: {0: "batch"} for n in OUTPUTS})
    # the suite's one way to write a file (temp beside it, synced, renamed over; the mode, group and
    # owner of a file replaced kept): hd-export's own temp from output_path is replaced the same way
    with output_path(path, overwrite=True, shown=shown) as tmp, torch.no_grad(), warnings.catch_warnings():
        # shape checks and constants in forward() are traced as constants: B and N stay dynamic
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter (no onnxscript)
        # the wrapper in eval mode: the exporter restores the wrapper's mode afterwards, recursively,
        # which would leave a fresh (training-mode) wrapper's model with BatchNorm in training mode
        torch.onnx.export(
            _LastLayer(model).eval(),
            ex,
            tmp,
            input_names=list(INPUTS),
            output_names=list(OUTPUTS),
            dynamic_axes=dyn,
            opset_version=OPSET,
            dynamo=False,  # the TorchScript exporter: one self-contained file, no onnxscript needed
        )
        proto = onnx.load(tmp)
        entry = proto.metadata_props.add()
        entry.key, entry.value = META_KEY, json.dumps(to_dict(cfg))
        entry = proto.metadata_props.add()  # provenance, logged by hd_map_node at start
        entry.key, entry.value = META_EXTRA, json.dumps({"step": step, "extra": extra or {}}, default=str)
        onnx.checker.check_model(proto)
        onnx.save(proto, tmp)
    return path


DEFAULT_PROVIDERS = ("CPUExecutionProvider",)


class OnnxModel:
    """An exported GSMap network run by onnxruntime, called like :class:`GSMapModel` (torch tensors in,
    ``{"logits": [last], "params": [last]}`` out)."""

    def __init__(self, path: str | Path, providers=DEFAULT_PROVIDERS, threads: int = 0) -> None:
        import onnxruntime as ort  # deferred: optional at import time of the package

        from gs_mapping.config_file import from_dict

        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"{path}: ONNX model not found")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=list(providers))
        except Exception as exc:  # onnxruntime raises its own exception types for bad files/providers
            raise CheckpointError(f"{path}: onnxruntime cannot load it: {str(exc).splitlines()[0]}") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        if META_KEY not in meta:
            raise CheckpointError(f"{path}: not a gsmap_hd ONNX export (no {META_KEY} metadata)")
        try:
            cfg, prov = json.loads(meta[META_KEY]), json.loads(meta.get(META_EXTRA, "{}"))
        except (ValueError, RecursionError) as exc:
            raise CheckpointError(f"{path}: its gsmap_hd metadata is not JSON ({exc})") from None
        if not isinstance(cfg, dict) or not isinstance(prov, dict):
            raise CheckpointError(f"{path}: its gsmap_hd metadata is not a JSON object")
        self.train_cfg: TrainConfig = from_dict(TrainConfig, cfg, where=f"{path}")
        self.cfg: ModelConfig = self.train_cfg.model
        self.step, self.extra = prov.get("step"), prov.get("extra") or {}
        self.path = path

    @property
    def providers(self) -> list[str]:
        return self.session.get_providers()

    def to(self, device):  # the Predictor's interface; the providers decide the device
        return self

    def eval(self):
        return self

    def __call__(self, images, K, T_ego_cam) -> dict:
        feeds = {
            n: np.ascontiguousarray(torch.as_tensor(x).detach().cpu().float().numpy())
            for n, x in zip(INPUTS, (images, K, T_ego_cam), strict=True)
        }
        logits, params = self.session.run(list(OUTPUTS), feeds)
        return {"logits": [torch.from_numpy(logits)], "params": [torch.from_numpy(params)]}


def output_difference(cfg: ModelConfig, ref: dict, other: dict) -> dict:
    """Largest differences between two outputs of the last layer (torch vs ONNX): logits absolute;
    Gaussian x, y relative to the patch extent, sx, sy relative to the scale range, θ in radians
    (float32 on a 60 m patch resolves ~4 µm, so metres would compare rounding, not the graph).
    ``max_normalised`` is the largest of them; the metric differences are reported beside."""
    la, lb = ref["logits"][-1].detach().cpu().double(), other["logits"][-1].detach().cpu().double()
    pa, pb = ref["params"][-1].detach().cpu().double(), other["params"][-1].detach().cpu().double()
    d = (pa - pb).abs()
    sx, sy = cfg.x_range[1] - cfg.x_range[0], cfg.y_range[1] - cfg.y_range[0]
    srange = cfg.scale_max - cfg.scale_min
    out = {
        "logits": float((la - lb).abs().max()),
        "x_rel": float(d[..., 0].max() / sx),
        "y_rel": float(d[..., 1].max() / sy),
        "scale_rel": float(d[..., 2:4].max() / srange),
        "theta": float(d[..., 4].max()),
        "xy_m": float(d[..., :2].max()),
        "scale_m": float(d[..., 2:4].max()),
    }
    out["max_normalised"] = max(out["logits"], out["x_rel"], out["y_rel"], out["scale_rel"], out["theta"])
    return out


def compare_on_world(model: GSMapModel, cfg: TrainConfig, onnx_path: str | Path, frames: int = 2) -> dict:
    """Run torch and the ONNX graph on ``frames`` world frames of the checkpoint's rig (one batch)."""
    from .data import collate
    from .world_data import world_sample

    h, w = model.cfg.image_size
    samples = [world_sample(424_242, i, cfg.rig, (w, h)) for i in range(frames)]
    im, K, T, _ = collate(samples, model.cfg)
    with torch.no_grad():
        ref = model(im, K, T)
    return output_difference(model.cfg, ref, OnnxModel(onnx_path)(im, K, T))


def compare_on_bag(model: GSMapModel, onnx: OnnxModel, bag_path, max_frames: int = 4) -> dict:
    """Torch vs ONNX on the first ``max_frames`` frames of a bag's first camera (real recordings:
    Image or CompressedImage, its CameraInfo, the extrinsic from the bag's TF), both fed the same
    model inputs (:meth:`gsmap_hd.infer.Predictor.model_inputs`). Returns the largest differences
    (:func:`output_difference`) over the frames and the number of frames."""
    from gs_mapping import messages as M
    from gs_mapping.bag import BagReader
    from gs_mapping.messages.camera_image import color_to_rgb
    from gs_mapping.tf import RecordedTF, TFBuffer
    from gs_mapping.topics import tf_topics

    from .infer import Predictor
    from .predict_bag import _info_topic, find_cameras

    pred = Predictor(model)
    worst: dict = {}
    n = 0
    with BagReader(bag_path) as bag:
        cam = find_cameras(bag)[0]
        tf, info = TFBuffer(cache_time_s=None), None
        tf_of = dict(tf_topics(bag))  # (the bag's TF as hd-predict reads it; a bad transform refused)
        recorded_tf = RecordedTF(tf, log, f"{bag_path}: ")
        topics = [t for t in (cam, _info_topic(cam), *tf_of) if bag.has_topic(t)]
        for topic, _, msg in bag.messages(topics):
            if topic in tf_of:
                recorded_tf.add(topic, msg, tf_of[topic])
            elif topic == _info_topic(cam):
                info = M.camera_info_to_intrinsics(msg)
            elif info is not None:
                stamp, frame_id = M.header_fields(msg)
                T = tf.lookup("base_link", frame_id, stamp).matrix()
                im, K, Tt = pred.model_inputs([color_to_rgb(msg)], [info], [T])
                args = (im[None], K[None], Tt[None])
                with torch.no_grad():
                    ref = model.eval()(*args)
                d = output_difference(model.cfg, ref, onnx(*args))
                worst = {k: max(v, worst.get(k, 0.0)) for k, v in d.items()}
                n += 1
                if n >= max_frames:
                    break
    return {"frames": n, "camera": cam, **worst}
