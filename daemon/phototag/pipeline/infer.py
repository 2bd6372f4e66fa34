"""One ONNX Runtime session per model, batched, on CUDA where available.

Like Immich's machine-learning service: the session is wrapped with its provider
choice, and callers only see numpy arrays in and out.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import onnxruntime as ort

log = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


class InferenceError(Exception):
    """The model cannot be loaded or run; one line for the user."""


@dataclass
class Batch:
    """The CNN's outputs for a batch of photos, row i for photo i."""

    probabilities: np.ndarray  # float32 [N, n_classes]
    embeddings: np.ndarray  # float32 [N, dim], L2-normalised


def choose_providers(wanted: Literal["auto", "cpu", "cuda"]) -> list[str]:
    """CUDA first when asked for or available (onnxruntime-gpu installed), CPU as the fallback."""
    available = ort.get_available_providers()
    if wanted == "cuda" and CUDA not in available:
        raise InferenceError(
            "model.providers is 'cuda' but ONNX Runtime has no CUDA provider: "
            "install the extra with `pip install 'phototag[gpu]'` (and a CUDA driver)"
        )
    if wanted != "cpu" and CUDA in available:
        return [CUDA, CPU]
    return [CPU]


def session(
    path: Path, providers: Literal["auto", "cpu", "cuda"] = "auto", threads: int = 0
) -> ort.InferenceSession:
    """An ONNX Runtime session on the chosen providers; a bad file is one InferenceError line."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads  # 0: ONNX Runtime uses every core
    # Idle ORT threads would otherwise spin for the next batch, burning the cores that the
    # decoders and the metadata writer need (measured: 62 -> 51 ms of CPU per photo).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(
            str(path), sess_options=options, providers=choose_providers(providers)
        )
    except Exception as exc:  # ORT raises its own untyped errors for bad files
        raise InferenceError(f"{path}: cannot load model: {str(exc).splitlines()[0]}") from None


class Model:
    """An ONNX image model with `probabilities` and `embedding` outputs."""

    def __init__(
        self,
        path: Path,
        input_name: str = "input",
        input_size: int = 224,
        providers: Literal["auto", "cpu", "cuda"] = "auto",
        threads: int = 0,
    ) -> None:
        self.session = session(path, providers, threads)
        self.input_name = input_name
        self.input_size = input_size
        self.providers = self.session.get_providers()
        log.info("model %s runs on %s", path.name, ", ".join(self.providers))

    def run(self, pixels: np.ndarray) -> Batch:
        """Run a uint8 [N, size, size, 3] RGB batch (N may be 1)."""
        probabilities, embeddings = self.session.run(
            ["probabilities", "embedding"], {self.input_name: pixels}
        )
        norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
        embeddings = embeddings / np.maximum(norms, 1e-12)
        return Batch(probabilities.astype(np.float32), embeddings.astype(np.float32))
