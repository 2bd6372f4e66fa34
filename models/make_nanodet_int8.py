#!/usr/bin/env python3
"""Derive `coco_nanodet_int8.onnx` (catalogue `coco-nanodet@g-416-int8`) from the float detector.

Static int8 quantisation with ONNX Runtime's own tool (`onnxruntime.quantization`), made
so that anyone gets the same bytes from the same inputs:
  - the source is the published float file, checked by its sha256;
  - calibration data are the 128 photos of coco256 `train/`, letterboxed by phototag's own
    decode (`decode.load`), fed in sorted order in batches of 8, MinMax calibration;
  - QDQ format, per-channel int8 weights, uint8 activations, Conv layers only, and the three
    head convolutions (class scores and box bins, before the graph's sigmoid and softmax)
    left in float: quantising them cost most of the accuracy in measurement (see
    docs/benchmarks.md, "Detector speed"), quantising every op type broke the model.
The result's sha256 is printed; the catalogue entry pins it. It depends on the
onnxruntime version (1.32.0 made the pinned file), which is why the file is published
rather than derived on each user's machine. Needs `pip install onnx sympy` (`[quantize]`).

    python3 models/make_nanodet_int8.py ../shared/models/coco_nanodet.onnx \
        ../shared/coco256/train coco_nanodet_int8.onnx
"""

from __future__ import annotations

import argparse
import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np

SOURCE_SHA256 = "b46401a5854177f3729db33e750a562320ce2822360d29e16967ec7557b0f50e"
HEAD = ["Conv__176", "Conv__178", "Conv__180"]  # the graph's last convolutions, kept float
BATCH = 8


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def calibration_batches(folder: Path) -> list[dict[str, np.ndarray]]:
    """The calibration photos as the pipeline feeds the detector: 416 letterboxes, uint8."""
    from phototag.pipeline import decode

    files = sorted(folder.glob("*.jpg"))
    if not files:
        raise SystemExit(f"{folder}: no .jpg calibration photos")
    frames = [decode.load(f, 224, 200_000_000, 416).letterbox for f in files]
    pixels = np.stack([f.pixels for f in frames if f is not None])
    return [{"input": pixels[i : i + BATCH]} for i in range(0, len(pixels), BATCH)]


def make(source: Path, calibration: Path, out: Path) -> str:
    """Write the int8 model to `out`; returns its sha256."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if sha256(source) != SOURCE_SHA256:
        raise SystemExit(f"{source}: not the published coco_nanodet.onnx (sha256 differs)")
    batches = iter(calibration_batches(calibration))

    class Reader(CalibrationDataReader):
        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(batches, None)

    source, out, cwd = source.resolve(), out.resolve(), os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)  # the quantiser leaves scratch files in the working folder
        try:
            prepared = Path(tmp) / "prepared.onnx"
            # the graph's shapes defeat the symbolic pass; ONNX's own shape inference suffices
            quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
            quantize_static(
                str(prepared),
                str(out),
                Reader(),
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=["Conv"],
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=HEAD,
            )
        finally:
            os.chdir(cwd)
    return sha256(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="coco_nanodet.onnx (float)")
    parser.add_argument("calibration", type=Path, help="a folder of photos: coco256/train")
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    digest = make(args.source, args.calibration, args.out)
    print(f"{args.out}: {args.out.stat().st_size} bytes, sha256 {digest}")


if __name__ == "__main__":
    main()
