"""The graph rewrite on small hand-built graphs, run by the real onnxruntime."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from daemon.onnx_graph import (
    fold_matmul_biases,
    fuse_erf_gelu,
    optimized_graph,
    quantize_embedding_tables,
    quantize_weight_matmuls,
    strip_softmax_nan_guards,
)
from tests.conftest import REPO, USERNS_REASON, read_only, skip_or_fail, userns_available


def _value(name: str, shape: list[int]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _guarded_softmax_graph() -> onnx.ModelProto:
    """softmax(x) behind a NaN guard, read by an Add; plus a Where that is no guard."""
    zero = numpy_helper.from_array(np.zeros((1,), np.float32), "zero")
    nodes = [
        helper.make_node("Softmax", ["x"], ["sm"], axis=-1),
        helper.make_node("IsNaN", ["sm"], ["nan"]),
        helper.make_node("Where", ["nan", "zero", "sm"], ["guarded"]),
        helper.make_node("Add", ["guarded", "x"], ["y"]),
        helper.make_node("IsNaN", ["x"], ["xnan"]),
        helper.make_node("Where", ["xnan", "zero", "y"], ["out"]),  # cond is not about y
    ]
    graph = helper.make_graph(nodes, "g", [_value("x", [2, 3])], [_value("out", [2, 3])], [zero])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {"x": x})[0])


def test_strip_removes_only_softmax_guards_and_keeps_the_result() -> None:
    model = _guarded_softmax_graph()
    x = np.array([[1.0, 2.0, 3.0], [0.5, -1.0, 0.0]], np.float32)
    before = _run(model, x)
    assert strip_softmax_nan_guards(model.graph) == 1
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("Where") == 1 and ops.count("IsNaN") == 1
    assert model.graph.node[1].input[0] == "sm"  # the Add now reads the softmax
    np.testing.assert_allclose(_run(model, x), before, rtol=1e-6)


def test_weight_matmuls_become_int8_with_per_column_scales() -> None:
    rng = np.random.default_rng(7)
    # Columns of very different magnitude: one scale for all would flatten the small one.
    w = rng.standard_normal((16, 4)).astype(np.float32) * np.array([1.0, 0.01, 5.0, 0.2])
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["h"]),
            helper.make_node("MatMul", ["h", "h_t"], ["out"]),  # activation × activation
        ],
        "g",
        [_value("x", [3, 16]), _value("h_t", [4, 2])],
        [_value("h", [3, 4]), _value("out", [3, 2])],
        [numpy_helper.from_array(w.astype(np.float32), "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert quantize_weight_matmuls(model) == 1
    assert [n.op_type for n in model.graph.node] == ["DynamicQuantizeMatMul", "MatMul"]
    assert {i.name for i in model.graph.initializer} == {"w_q8_w", "w_q8_scale", "w_q8_zero"}
    x = rng.standard_normal((3, 16)).astype(np.float32)
    h_t = np.eye(4, 2, dtype=np.float32)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    h, out = session.run(None, {"x": x, "h_t": h_t})
    want = x @ w
    # Each column within a few percent of its own magnitude, the small one included.
    error = np.abs(np.asarray(h) - want).max(axis=0)
    assert (error <= 0.05 * np.abs(want).max(axis=0)).all(), error
    np.testing.assert_allclose(out, np.asarray(h) @ h_t, rtol=1e-5)


def _constants(**values: float) -> list[onnx.TensorProto]:
    return [numpy_helper.from_array(np.array(v, np.float32), k) for k, v in values.items()]


def test_erf_gelu_becomes_one_gelu_with_the_same_values() -> None:
    """The export's GELU (0.5 multiplied before x) becomes one Gelu; a look-alike that
    divides by 2 instead of sqrt 2 is left alone."""
    nodes = [
        helper.make_node("Div", ["x", "sqrt2"], ["d"]),
        helper.make_node("Erf", ["d"], ["e"]),
        helper.make_node("Add", ["one", "e"], ["a"]),
        helper.make_node("Mul", ["a", "half"], ["h"]),
        helper.make_node("Mul", ["h", "x"], ["gelu"]),
        helper.make_node("Div", ["gelu", "two"], ["d2"]),
        helper.make_node("Erf", ["d2"], ["e2"]),
        helper.make_node("Add", ["e2", "one"], ["a2"]),
        helper.make_node("Mul", ["half", "a2"], ["h2"]),
        helper.make_node("Mul", ["gelu", "h2"], ["out"]),
    ]
    inits = _constants(sqrt2=np.sqrt(2), one=1.0, half=0.5, two=2.0)
    graph = helper.make_graph(nodes, "g", [_value("x", [2, 5])], [_value("out", [2, 5])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = np.linspace(-3, 3, 10, dtype=np.float32).reshape(2, 5)
    before = _run(model, x)
    assert fuse_erf_gelu(model.graph) == 1
    model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    ops = [n.op_type for n in model.graph.node]
    assert ops == ["Gelu", "Div", "Erf", "Add", "Mul", "Mul"]
    np.testing.assert_allclose(_run(model, x), before, rtol=1e-5, atol=1e-6)


def test_a_quantized_matmuls_bias_folds_in_unless_the_product_is_read_twice() -> None:
    rng = np.random.default_rng(3)
    w = rng.standard_normal((8, 4)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["p"]),
            helper.make_node("Add", ["p", "b"], ["out"]),
            helper.make_node("MatMul", ["x", "w2"], ["q"]),
            helper.make_node("Add", ["b", "q"], ["out2"]),
            helper.make_node("Relu", ["q"], ["out3"]),  # q is read twice: its Add stays
        ],
        "g",
        [_value("x", [3, 8])],
        [_value(n, [3, 4]) for n in ("out", "out2", "out3")],
        [numpy_helper.from_array(a, n) for a, n in ((w, "w"), (-w, "w2"), (b, "b"))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert quantize_weight_matmuls(model) == 2
    assert fold_matmul_biases(model.graph) == 1
    ops = [n.op_type for n in model.graph.node]
    assert ops == ["DynamicQuantizeMatMul", "DynamicQuantizeMatMul", "Add", "Relu"]
    assert list(model.graph.node[0].input)[4:] == ["b"] and model.graph.node[0].output[0] == "out"
    x = rng.standard_normal((3, 8)).astype(np.float32)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    out, out2, _ = session.run(None, {"x": x})
    np.testing.assert_allclose(out, x @ w + b, atol=0.05 * np.abs(x @ w).max())
    np.testing.assert_allclose(out2, b - x @ w, atol=0.05 * np.abs(x @ w).max())


def test_an_embedding_table_becomes_int8_rows_and_an_int8_table_comes_back_exactly() -> None:
    rng = np.random.default_rng(5)
    rows = rng.integers(-127, 128, (1100, 6)).astype(np.float32)
    rows[:, 0] = 127  # every row reaches ±127, as a table quantized per row does
    table = rows * rng.uniform(0.001, 0.1, (1100, 1)).astype(np.float32)
    small = rng.standard_normal((10, 6)).astype(np.float32)  # too short: not a vocabulary
    ids = helper.make_tensor_value_info("ids", TensorProto.INT64, [1, 4])
    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["table", "ids"], ["e"], axis=0),
            helper.make_node("Gather", ["small", "ids"], ["s"], axis=0),
        ],
        "g",
        [ids],
        [_value("e", [1, 4, 6]), _value("s", [1, 4, 6])],
        [numpy_helper.from_array(table, "table"), numpy_helper.from_array(small, "small")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert quantize_embedding_tables(model.graph) == 1
    model.graph.initializer.remove(next(i for i in model.graph.initializer if i.name == "table"))
    tokens = np.array([[0, 5, 9, 5]], np.int64)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    e, s = session.run(None, {"ids": tokens})
    np.testing.assert_allclose(e, table[tokens], rtol=1e-6)
    np.testing.assert_array_equal(s, small[tokens])


def test_optimized_graph_is_built_once_and_old_builds_are_removed(tmp_path: Path) -> None:
    from daemon.embedder import offline_model_dir

    model_dir = offline_model_dir(tmp_path)
    stale = model_dir / "model-q8-0000000000000000.onnx"
    stale.write_bytes(b"from an older recipe")
    built = optimized_graph(model_dir / "model.onnx", model_dir, quantize=True)
    (kept,) = model_dir.glob("model-q8-*.onnx")
    assert kept != stale and not stale.exists() and built == str(kept)
    mtime = kept.stat().st_mtime_ns
    assert optimized_graph(model_dir / "model.onnx", model_dir, quantize=True) == built
    assert kept.stat().st_mtime_ns == mtime
    assert not list(model_dir.glob(".*.tmp"))
    ops = {n.op_type for n in onnx.load(built).graph.node}
    assert "DynamicQuantizeMatMul" in ops and "Gelu" in ops and "Cast" in ops
    assert not ops & {"IsNaN", "Erf"}


_BUILD_IN = """
import sys
from pathlib import Path
import onnxruntime as ort
from daemon.onnx_graph import optimized_graph
model_dir = Path(sys.argv[1])
built = optimized_graph(model_dir / "model.onnx", model_dir, quantize=True)
session = ort.InferenceSession(built, providers=["CPUExecutionProvider"])
assert "input_ids" in {i.name for i in session.get_inputs()}
"""


def test_a_cache_folder_without_room_still_gets_the_graph(tmp_path: Path) -> None:
    """A read-only cache folder (as good as a full one here): the graph is built and
    returned, nothing is left behind, and the next call builds again. Root ignores the
    mode, so there the folder is made read-only by a bind mount in a user and mount
    namespace of the child's own: nothing is mounted on the host."""
    from daemon.embedder import offline_model_dir

    model_dir = offline_model_dir(tmp_path)
    os.chmod(model_dir, 0o555)
    try:
        build = [sys.executable, "-c", _BUILD_IN, str(model_dir)]
        if os.access(model_dir, os.W_OK):
            if not userns_available():
                skip_or_fail(USERNS_REASON + ", as root: to make a folder read-only")
            build = [*read_only(model_dir), *build]
        out = subprocess.run(build, capture_output=True, text=True, cwd=REPO, timeout=300)
        assert out.returncode == 0, out.stderr
        assert not list(model_dir.glob("model-q8-*")) and not list(model_dir.glob(".*"))
    finally:
        os.chmod(model_dir, 0o755)


def test_the_default_models_embedding_table_comes_back_exactly(tmp_path: Path) -> None:
    """The claim `quantize_embedding_tables` rests on: the PyPI model's token table,
    once its casts are folded, is int8 rows times a per-row scale of max/127."""
    from daemon.embedder import offline_model_dir
    from daemon.onnx_graph import EMBEDDING_ROWS

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(tmp_path / "folded.onnx")
    source = offline_model_dir(tmp_path / "cache") / "model.onnx"
    ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
    graph = onnx.load(str(tmp_path / "folded.onnx")).graph
    gathered = {n.input[0] for n in graph.node if n.op_type == "Gather"}
    (table,) = [i for i in graph.initializer if i.name in gathered and i.dims[0] >= EMBEDDING_ROWS]
    want = numpy_helper.to_array(table)
    assert quantize_embedding_tables(graph) == 1
    weights = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    q8, rows = weights[f"{table.name}_q8"], weights[f"{table.name}_rows"]
    np.testing.assert_array_equal(q8.astype(np.float32) * rows, want)
