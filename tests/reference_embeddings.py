"""Real MobileNetV2 embeddings from the shared reference model, for tests and benchmarks.

Runs ONNX Runtime on the model directly (input uint8 NHWC RGB, bilinear resize to 224 x 224
without crop; output `embedding`), so these checks do not depend on the product's pipeline.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from phototag.library.similarity import normalise_rows

SHARED = Path(__file__).parents[1].parent / "shared"
MODEL = SHARED / "models" / "mobilenet_v2_1.0_224_quant.onnx"
PHOTOS = SHARED / "photos"


def available() -> bool:
    return MODEL.exists() and PHOTOS.is_dir()


def embed_images(images: list[Image.Image], batch: int = 32) -> np.ndarray:
    """L2-normalised float32 embeddings [len(images), 1280]."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])
    out = []
    for start in range(0, len(images), batch):
        pixels = np.stack(
            [
                np.asarray(image.convert("RGB").resize((224, 224), Image.BILINEAR))
                for image in images[start : start + batch]
            ]
        )
        out.append(session.run(["embedding"], {"input": pixels})[0])
    return normalise_rows(np.concatenate(out))


def embed(paths: list[Path]) -> np.ndarray:
    return embed_images([Image.open(p) for p in paths])
