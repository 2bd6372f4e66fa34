"""The detector's ms per photo under ONNX Runtime session options and int8, side by side.

    .venv/bin/python bench/detector_options.py [--int8 coco_nanodet_int8.onnx] [--rounds 5]

Photos: coco256 val/ letterboxed to 416 by phototag's decode, batch 8. Variants alternate
within each round (so load from other jobs falls on all of them alike); the table gives the
median ms per photo and the median per-round ratio to phototag's own session
(`infer.session`: ORT_ENABLE_ALL, all cores, no spinning).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from phototag.pipeline import decode, infer

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
FLOAT = SHARED / "models" / "coco_nanodet.onnx"
BATCH = 8


def options(**changes: object) -> ort.SessionOptions:
    """phototag's session options (see infer.session) with `changes` applied."""
    opts = ort.SessionOptions()
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    for key, value in changes.items():
        setattr(opts, key, value)
    return opts


def variants(int8: Path | None) -> dict[str, ort.InferenceSession]:
    cpu = ["CPUExecutionProvider"]
    out = {
        "float, phototag's session (ORT_ENABLE_ALL, intra-op all cores)": infer.session(
            FLOAT, "cpu"
        ),
        "float, ORT_ENABLE_BASIC": ort.InferenceSession(
            str(FLOAT),
            options(graph_optimization_level=ort.GraphOptimizationLevel.ORT_ENABLE_BASIC),
            providers=cpu,
        ),
        "float, intra-op 1 thread": ort.InferenceSession(
            str(FLOAT), options(intra_op_num_threads=1), providers=cpu
        ),
        "float, ORT_PARALLEL, inter-op 2": ort.InferenceSession(
            str(FLOAT),
            options(execution_mode=ort.ExecutionMode.ORT_PARALLEL, inter_op_num_threads=2),
            providers=cpu,
        ),
    }
    if int8 is not None:
        out["int8 (models/make_nanodet_int8.py), phototag's session"] = infer.session(int8, "cpu")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--int8", type=Path, help="the int8 detector file")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--photos", type=int, default=64)
    args = parser.parse_args()
    files = sorted((SHARED / "coco256" / "val").glob("*.jpg"))[: args.photos]
    frames = [decode.load(f, 224, 200_000_000, 416).letterbox for f in files]
    pixels = np.stack([f.pixels for f in frames if f is not None])
    sessions = variants(args.int8)
    for s in sessions.values():  # warm-up
        s.run(None, {"input": pixels[:BATCH]})
    ms: dict[str, list[float]] = {k: [] for k in sessions}
    for _ in range(args.rounds):
        for name, s in sessions.items():
            t0 = time.perf_counter()
            for i in range(0, len(pixels), BATCH):
                s.run(["scores", "boxes"], {"input": pixels[i : i + BATCH]})
            ms[name].append(1000 * (time.perf_counter() - t0) / len(pixels))
    base = np.array(next(iter(ms.values())))
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"{len(pixels)} photos, batch {BATCH}, {args.rounds} rounds; load average {load}\n")
    print("| detector session | ms per photo (median) | time / phototag's float session |")
    print("| --- | ---: | ---: |")
    for name, values in ms.items():
        ratio = float(np.median(np.array(values) / base))
        print(f"| {name} | {np.median(values):.1f} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
