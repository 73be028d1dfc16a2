#!/usr/bin/env python3
"""Writes tests/data/onnx_vectors.txt: outputs of ONNX Runtime's QuantizeLinear, DequantizeLinear and
DynamicQuantizeLinear on inputs with exact ties, saturation, infinities, -0.0 and subnormals.

Run:  python3 -m venv /tmp/ortenv && /tmp/ortenv/bin/pip install onnxruntime onnx numpy
      /tmp/ortenv/bin/python tests/data/make_onnx_vectors.py

Format, one case per line, fields separated by spaces (floats as f32 bit patterns in hex):
  quantize <type> <axis or -> <shape dims,comma> <block or 0> | scales | zero_points | x | y
  dequantize <type> <axis or -> <shape> <block or 0> | scales | zero_points | q | x
  dynamic | x | y | scale | zero_point
"""
import os
import struct

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

OPSET = 21
TYPES = {
    "i8": (TensorProto.INT8, np.int8),
    "u8": (TensorProto.UINT8, np.uint8),
    "i16": (TensorProto.INT16, np.int16),
    "u16": (TensorProto.UINT16, np.uint16),
    "i4": (TensorProto.INT4, None),
    "u4": (TensorProto.UINT4, None),
}


def hexf(a):
    return " ".join("%08x" % struct.unpack("<I", struct.pack("<f", float(v)))[0] for v in np.asarray(a, np.float32).ravel())


def ints(a):
    return " ".join(str(int(v)) for v in np.asarray(a).ravel())


def run(node, inputs, in_infos, out_infos):
    graph = helper.make_graph([node], "g", in_infos, out_infos)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 10
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, inputs)


def zp_initializer(qt, zps, shape):
    # 4-bit zero points are passed as initializers (numpy has no 4-bit dtype).
    return helper.make_tensor("zp", TYPES[qt][0], shape, [int(z) for z in np.asarray(zps).ravel()])


def quantize(qt, x, scales, zps, axis=None, block=0):
    x = np.asarray(x, np.float32)
    scales = np.asarray(scales, np.float32)
    attrs = {}
    if axis is not None:
        attrs["axis"] = axis
    if block:
        attrs["block_size"] = block
    nodes = [helper.make_node("QuantizeLinear", ["x", "scale", "zp"], ["q"], **attrs)]
    # numpy has no 4-bit dtype: widen 4-bit results with ONNX Cast (exact) before reading them.
    out_type = TensorProto.INT8 if qt in ("i4", "u4") else TYPES[qt][0]
    nodes.append(helper.make_node("Cast", ["q"], ["y"], to=out_type))
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape),
         helper.make_tensor_value_info("scale", TensorProto.FLOAT, scales.shape)],
        [helper.make_tensor_value_info("y", out_type, x.shape)],
        initializer=[zp_initializer(qt, zps, scales.shape)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 10
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, {"x": x, "scale": scales})
    return y


def dequantize(qt, q, scales, zps, axis=None, block=0):
    scales = np.asarray(scales, np.float32)
    attrs = {}
    if axis is not None:
        attrs["axis"] = axis
    if block:
        attrs["block_size"] = block
    q = np.asarray(q)
    node = helper.make_node("DequantizeLinear", ["q", "scale", "zp"], ["x"], **attrs)
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info("scale", TensorProto.FLOAT, scales.shape)],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, q.shape)],
        initializer=[helper.make_tensor("q", TYPES[qt][0], q.shape, [int(v) for v in q.ravel()]),
                     zp_initializer(qt, zps, scales.shape)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 10
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (x,) = sess.run(None, {"scale": scales})
    return x


def dynamic(x):
    x = np.asarray(x, np.float32)
    node = helper.make_node("DynamicQuantizeLinear", ["x"], ["y", "scale", "zp"])
    return run(
        node, {"x": x},
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
        [helper.make_tensor_value_info("y", TensorProto.UINT8, x.shape),
         helper.make_tensor_value_info("scale", TensorProto.FLOAT, []),
         helper.make_tensor_value_info("zp", TensorProto.UINT8, [])],
    )


def edge_inputs(scale, rng, n_random=40):
    s = np.float32(scale)
    k = np.arange(-6, 7, dtype=np.float32)
    ties = (k + np.float32(0.5)) * s  # exact halves of the scale when the scale is a power of two
    special = np.array([0.0, -0.0, np.inf, -np.inf, 1e30, -1e30, 1e-45, -1e-45, 1.17549435e-38,
                        np.float32(127.5) * s, np.float32(-128.5) * s, np.float32(255.5) * s,
                        np.float32(2.5) * s, np.float32(-2.5) * s, np.float32(3.5) * s], np.float32)
    rnd = (rng.standard_normal(n_random) * 200 * s).astype(np.float32)
    return np.concatenate([ties, special, rnd]).astype(np.float32)


def line(op, qt, axis, shape, block, scales, zps, a, b):
    ax = "-" if axis is None else str(axis)
    dims = ",".join(str(d) for d in shape) if len(shape) else "scalar"
    return f"{op} {qt} {ax} {dims} {block} | {hexf(scales)} | {ints(zps)} | {a} | {b}"


def main():
    rng = np.random.default_rng(20261128)
    out = ["# ONNX Runtime %s, onnx %s, numpy %s: made by tests/data/make_onnx_vectors.py" %
           (ort.__version__, onnx.__version__, np.__version__)]
    per_tensor = [("u8", 0.5, 128), ("u8", 0.1, 3), ("u8", 1.0, 0), ("u8", 0.25, 255),
                  ("i8", 0.5, 0), ("i8", 0.1, -3), ("i8", 0.0625, 127), ("i8", 3.0, -128),
                  ("i16", 0.5, 7), ("u16", 0.01, 32768), ("i4", 0.5, 1), ("u4", 0.25, 8), ("i4", 0.3, -8)]
    for qt, scale, zp in per_tensor:
        x = edge_inputs(scale, rng)
        y = quantize(qt, x, np.float32(scale), zp)
        out.append(line("quantize", qt, None, x.shape, 0, [scale], [zp], hexf(x), ints(y)))
        lo, hi = {"i8": (-128, 127), "u8": (0, 255), "i16": (-32768, 32767), "u16": (0, 65535),
                  "i4": (-8, 7), "u4": (0, 15)}[qt]
        q = np.unique(np.concatenate([[lo, hi, zp], rng.integers(lo, hi + 1, 30)]))
        x = dequantize(qt, q.astype(np.int64), np.float32(scale), zp)
        out.append(line("dequantize", qt, None, q.shape, 0, [scale], [zp], ints(q), hexf(x)))
    # Per axis: shape [3, 4, 5] along each axis, i8 and u8.
    for qt, axis in [("i8", 0), ("i8", 1), ("u8", 2), ("i8", 2)]:
        shape = (3, 4, 5)
        c = shape[axis]
        scales = np.array([0.5, 0.1, 0.25, 0.03, 2.0][:c], np.float32)
        zps = np.array([0, -5, 10, 3, -1][:c]) if qt == "i8" else np.array([128, 0, 255, 17, 3][:c])
        x = (rng.standard_normal(shape) * 20).astype(np.float32)
        x.ravel()[:6] = [0.25, -0.25, 0.75, -0.0, np.inf, -np.inf]
        y = quantize(qt, x, scales, zps, axis=axis)
        out.append(line("quantize", qt, axis, shape, 0, scales, zps, hexf(x), ints(y)))
    # Blocked (opset 21): shape [7, 6] with blocks of 3 along axis 0 (short last block), and along axis 1.
    for qt, axis, block in [("i8", 0, 3), ("u8", 1, 4), ("i4", 1, 4), ("u4", 0, 2)]:
        shape = (7, 6)
        sshape = list(shape)
        sshape[axis] = -(-shape[axis] // block)
        scales = (rng.integers(1, 16, sshape) / 8.0).astype(np.float32)
        lo, hi = {"i8": (-128, 127), "u8": (0, 255), "i4": (-8, 7), "u4": (0, 15)}[qt]
        zps = rng.integers(lo, hi + 1, sshape)
        x = (rng.standard_normal(shape) * 4).astype(np.float32)
        try:
            y = quantize(qt, x, scales, zps, axis=axis, block=block)
        except Exception as e:  # noqa: BLE001
            out.append(f"# blocked {qt} axis {axis} block {block}: not supported by this ONNX Runtime: {e!s}"[:200])
            continue
        out.append(line("quantize", qt, axis, shape, block, scales, zps, hexf(x), ints(y)))
    # DynamicQuantizeLinear.
    dyn_inputs = [
        np.array([0.0, 2.0, -3.0, 1000.0, -4.0], np.float32),
        np.array([-1.0, -2.0, -0.0, -0.5], np.float32),
        np.array([0.5, 1.5, 2.5, 3.5, 255.0], np.float32),
        np.array([0.0, -0.0, 0.0], np.float32),
        np.array([1e-20, 3e-20], np.float32),
        (rng.standard_normal(64) * 3).astype(np.float32),
        (rng.laplace(size=97) * 0.01 + 0.2).astype(np.float32),
    ]
    for x in dyn_inputs:
        y, scale, zp = dynamic(x)
        out.append(f"dynamic | {hexf(x)} | {ints(y)} | {hexf([scale])} | {int(zp)}")
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "onnx_vectors.txt")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")
    print(f"wrote {len(out) - 1} cases to {path}")


if __name__ == "__main__":
    main()
