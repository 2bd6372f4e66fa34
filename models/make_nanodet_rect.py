#!/usr/bin/env python3
"""Derive `coco_nanodet_rect.onnx` (catalogue `coco-nanodet@g-416-rect`) from the float detector.

The published graph takes a 416x416 letterbox only because two constants pin it: the
3549 anchor centres added to the box distances (`ctr_xyxy`) and the clip at 416 (`size`).
Everything else (convolutions, the 2x/0.5x resizes by scale, the head's reshapes) works
at any height and width that are multiples of 32. This script computes the anchor centres
in the graph from the input's shape instead (per stride 8, 16, 32: ((j + 0.5) * stride,
(i + 0.5) * stride), each grid row-major, as before) and clips x to the width and y to the
height. Same weights, same outputs on a 416x416 input (bit-identical, tests/test_detect.py),
but a 4:3 photo is fed as 416x320 instead of 416x416 with 25 % black: about a quarter less
detector work for the same pixels (docs/benchmarks.md). Needs `onnx` (the test extra).

    python3 models/make_nanodet_rect.py ../shared/models/coco_nanodet.onnx coco_nanodet_rect.onnx
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np

SOURCE_SHA256 = "b46401a5854177f3729db33e750a562320ce2822360d29e16967ec7557b0f50e"
STRIDES = (8, 16, 32)


def make(source: Path, out: Path) -> str:
    """Write the any-shape detector to `out`; returns its sha256."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if hashlib.sha256(source.read_bytes()).hexdigest() != SOURCE_SHA256:
        raise SystemExit(f"{source}: not the published coco_nanodet.onnx (sha256 differs)")
    model = onnx.load(str(source))
    graph = model.graph
    constants = {
        "rc_hw_axes": np.array([1, 2], np.int64),
        "rc_wh_order": np.array([1, 0, 1, 0], np.int64),
        "rc_i0": np.array(0, np.int64),
        "rc_i1": np.array(1, np.int64),
        "rc_axis0": np.array([0], np.int64),
        "rc_axis1": np.array([1], np.int64),
        "rc_column": np.array([-1, 1], np.int64),
        "rc_half": np.array(0.5, np.float32),
        "rc_zero": np.array(0.0, np.float32),
    }
    nodes = []

    def node(op: str, inputs: list[str], output: str, **attrs: int) -> str:
        nodes.append(helper.make_node(op, inputs, [output], **attrs))
        return output

    node("Shape", ["input"], "rc_shape")
    hw = node("Gather", ["rc_shape", "rc_hw_axes"], "rc_hw", axis=0)
    levels = []
    for level, stride in enumerate(STRIDES):
        constants[f"rc_stride{level}"] = np.array(stride, np.int64)
        constants[f"rc_stridef{level}"] = np.array(stride, np.float32)
        cells = node("Div", [hw, f"rc_stride{level}"], f"rc_cells{level}")
        centres = {}
        for axis, name in ((0, "y"), (1, "x")):
            n = node("Gather", [cells, f"rc_i{axis}"], f"rc_n{name}{level}", axis=0)
            ramp = node("Range", ["rc_i0", n, "rc_i1"], f"rc_{name}{level}")
            flt = node("Cast", [ramp], f"rc_{name}f{level}", to=TensorProto.FLOAT)
            mid = node("Add", [flt, "rc_half"], f"rc_{name}h{level}")
            centres[name] = node("Mul", [mid, f"rc_stridef{level}"], f"rc_{name}c{level}")
        cy = node("Unsqueeze", [centres["y"], "rc_axis1"], f"rc_cy{level}")  # [rows, 1]
        cx = node("Unsqueeze", [centres["x"], "rc_axis0"], f"rc_cx{level}")  # [1, cols]
        # broadcast each to [rows, cols] by adding 0 x the other, then flatten row-major
        grid_y = node("Add", [cy, node("Mul", [cx, "rc_zero"], f"rc_zx{level}")], f"rc_gy{level}")
        grid_x = node("Add", [cx, node("Mul", [cy, "rc_zero"], f"rc_zy{level}")], f"rc_gx{level}")
        fy = node("Reshape", [grid_y, "rc_column"], f"rc_fy{level}")
        fx = node("Reshape", [grid_x, "rc_column"], f"rc_fx{level}")
        levels.append(node("Concat", [fx, fy, fx, fy], f"rc_ctr{level}", axis=1))
    node("Concat", levels, "rc_ctr_xyxy", axis=0)
    hwf = node("Cast", [hw], "rc_hwf", to=TensorProto.FLOAT)
    node("Gather", [hwf, "rc_wh_order"], "rc_limits", axis=0)  # [W, H, W, H]

    for name in ("ctr_xyxy", "size"):
        graph.initializer.remove(next(i for i in graph.initializer if i.name == name))
    for n in graph.node:
        n.input[:] = ["rc_ctr_xyxy" if i == "ctr_xyxy" else i for i in n.input]
    clip = next(n for n in graph.node if n.op_type == "Clip" and n.output[0] == "boxes")
    at = list(graph.node).index(clip)
    graph.node.remove(clip)
    graph.node.insert(at, helper.make_node("Min", [clip.input[0], "rc_limits"], ["rc_boxes"]))
    graph.node.insert(at + 1, helper.make_node("Max", ["rc_boxes", clip.input[1]], ["boxes"]))
    for k, n in enumerate(nodes):
        graph.node.insert(k, n)
    graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in constants.items())
    dims = graph.input[0].type.tensor_type.shape.dim
    for d, name in ((dims[1], "H"), (dims[2], "W")):
        d.ClearField("dim_value")
        d.dim_param = name
    for output in graph.output:
        anchors = output.type.tensor_type.shape.dim[1]
        anchors.ClearField("dim_value")
        anchors.dim_param = "A"
    del graph.value_info[:]
    onnx.checker.check_model(model)
    onnx.save(model, str(out))
    return hashlib.sha256(out.read_bytes()).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="coco_nanodet.onnx (float)")
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    digest = make(args.source, args.out)
    print(f"{args.out}: {args.out.stat().st_size} bytes, sha256 {digest}")


if __name__ == "__main__":
    main()
