"""gsmap_hd: GSMap online HD map prediction with ordered sequences of 2D Gaussians in BEV."""

from gs_mapping.lazy_api import lazy_api

_API = {
    "Predictor": "infer",
    "Element": "infer",
    "GSMapModel": "model",
    "ModelConfig": "model_config",
    "TrainConfig": "model_config",
    "evaluate": "metrics",
    "export_onnx": "onnx_export",
    "HDMapError": "errors",
    "HDInputError": "errors",
    "CheckpointError": "errors",
}
__all__ = sorted(_API)
__getattr__ = lazy_api(__name__, _API)
