#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Regenerate the ONNX backend conformance cases used by ciphercut.

Runs the ONNX backend test-data generator (the in-process equivalent of
`backend-test-tools generate-data`) into a temporary directory, then copies
into this folder only the cases whose graphs use nothing but the operators
ciphercut supports (SUPPORTED_OPS below).

Usage (from the repository root):

    /usr/bin/python3 testsuite/onnx/generate.py

Requires Debian's python3-onnx (ONNX 1.12.0) and python3-numpy. The output is
deterministic: the ONNX generators seed NumPy's RNG with 0 before every case.
This script also rewrites README.md and cases.tsv in this folder.
"""

import argparse
import collections
import os
import shutil
import sys
import tempfile

import numpy as np

EXPECTED_ONNX_VERSION = "1.12.0"

# Operators supported by ciphercut (default ONNX domain only).
SUPPORTED_OPS = [
    "Gemm", "MatMul", "Add", "Sub", "Mul", "Div", "Conv", "BatchNormalization",
    "AveragePool", "GlobalAveragePool", "MaxPool", "Relu", "LeakyRelu", "PRelu",
    "Sigmoid", "Tanh", "Gelu", "Softplus", "Softmax", "LayerNormalization",
    "Flatten", "Reshape", "Transpose", "Concat", "Pad", "Squeeze", "Unsqueeze",
    "Gather", "Slice", "ReduceMean", "Sqrt", "Pow", "Erf", "Identity", "Dropout",
    "Constant", "Shape", "Neg", "Exp", "Reciprocal", "Abs", "HardSigmoid", "Elu",
    "Selu", "Sum", "Cast", "ConstantOfShape", "Expand", "Where", "Equal", "Range",
    "Tile", "Clip", "Min", "Max", "Split", "ReduceSum",
]
SUPPORTED_SET = frozenset(SUPPORTED_OPS)
DEFAULT_DOMAINS = ("", "ai.onnx")

# Generator output kinds that hold runnable (model + data) cases. "real" cases
# only reference models to download and are never kept.
KEPT_KINDS = ("node", "simple", "pytorch-converted", "pytorch-operator")

MAX_CASE_BYTES = 1 << 20  # drop any single case larger than 1 MiB

HERE = os.path.dirname(os.path.abspath(__file__))


def restore_numpy_aliases():
    """ONNX 1.12's generators still use aliases that NumPy 1.24 removed."""
    aliases = {
        "float": float, "int": int, "bool": bool, "object": object,
        "complex": complex, "str": str, "long": int, "unicode": str,
    }
    for name, value in aliases.items():
        if name not in np.__dict__:
            setattr(np, name, value)


def run_onnx_generator(out_dir):
    from onnx.backend.test.cmd_tools import main

    saved_argv = sys.argv
    sys.argv = ["backend-test-tools", "generate-data", "-o", out_dir]
    try:
        np.random.seed(0)
        main()
    finally:
        sys.argv = saved_argv


def iter_graph_nodes(graph):
    """Yield every node of graph, including nodes of nested subgraphs."""
    import onnx

    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from iter_graph_nodes(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    yield from iter_graph_nodes(g)


def classify(model):
    """Return (ops used by the main graph, list of reasons to reject)."""
    reasons = []
    main_ops = set()
    for node in model.graph.node:
        main_ops.add(node.op_type)
        if node.domain not in DEFAULT_DOMAINS:
            reasons.append("domain %s:%s" % (node.domain, node.op_type))
        elif node.op_type not in SUPPORTED_SET:
            reasons.append("op " + node.op_type)
    # Subgraphs (If/Loop/Scan bodies...) and model-local functions must also
    # stay within the supported set.
    nested = [n for n in iter_graph_nodes(model.graph)][len(model.graph.node):]
    for fn in model.functions:
        nested.extend(fn.node)
    for node in nested:
        if node.domain not in DEFAULT_DOMAINS or node.op_type not in SUPPORTED_SET:
            reasons.append("nested %s:%s" % (node.domain, node.op_type))
    if not model.graph.node:
        reasons.append("empty graph")
    return main_ops, reasons


def dir_size(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            total += os.path.getsize(os.path.join(root, f))
    return total


def value_types(values):
    import onnx

    names = []
    for vi in values:
        t = vi.type
        if t.HasField("tensor_type"):
            names.append(onnx.TensorProto.DataType.Name(t.tensor_type.elem_type))
        else:
            names.append(t.WhichOneof("value"))
    return names


def clean_output_dir():
    """Remove previously generated case folders (those holding model.onnx)."""
    for name in sorted(os.listdir(HERE)):
        path = os.path.join(HERE, name)
        if os.path.isdir(path) and os.path.exists(os.path.join(path, "model.onnx")):
            shutil.rmtree(path)


def write_readme(kept, per_op, per_op_float, total_bytes, dropped_big,
                 onnx_version):
    lines = []
    w = lines.append
    w("# ONNX backend node conformance cases")
    w("")
    w("Generated by `generate.py` from the ONNX %s backend test generators "
      "(`onnx.backend.test.cmd_tools generate-data`, run in-process). Do not "
      "edit by hand: regenerate instead. This file and `cases.tsv` are "
      "written by the script too." % onnx_version)
    w("")
    w("## Regenerating")
    w("")
    w("```sh")
    w("apt-get install -y python3-onnx python3-numpy   # Debian bookworm: ONNX 1.12.0, NumPy 1.24")
    w("/usr/bin/python3 testsuite/onnx/generate.py      # from the repository root")
    w("```")
    w("")
    w("Use Debian's `/usr/bin/python3`, not another `python3` on PATH, so that "
      "the Debian `onnx` package is found. The script refuses to run with an "
      "ONNX version other than %s (the data would differ). It restores the "
      "NumPy aliases (`np.float`, `np.int`, `np.bool`, `np.object`, ...) that "
      "NumPy 1.24 removed and that the ONNX 1.12 generators still use. The "
      "generators seed NumPy with 0 before each case, so the output is "
      "byte-for-byte reproducible (checked by running it twice and comparing "
      "`sha256sum` of every file)." % EXPECTED_ONNX_VERSION)
    w("")
    w("## Layout")
    w("")
    w("Each case is a folder `<case_name>/` holding `model.onnx` and one or "
      "more `test_data_set_N/` folders with `input_K.pb` and `output_K.pb` "
      "(serialized `TensorProto`s, in graph input/output order). "
      "`cases.tsv` lists every case with its source kind, the operators of "
      "its main graph, its graph-input element types and its size.")
    w("")
    w("## Selection")
    w("")
    w("A case is kept when every node of its main graph is a default-domain "
      "operator in ciphercut's supported list, and so is every node of any "
      "subgraph or model-local function it has. Expanded function cases "
      "(`*_expanded`) are kept when all their nodes qualify. Cases of kinds "
      "`node` and `simple` are considered; ONNX 1.12's generator produces no "
      "`pytorch-converted`/`pytorch-operator` cases (those exist only as "
      "checked-in data in the ONNX source tree), and `real` cases only point "
      "to models to download, so they are skipped. Cases over 1 MiB are "
      "dropped.")
    w("")
    if dropped_big:
        w("Dropped for size (> 1 MiB): " +
          ", ".join("`%s` (%d bytes)" % d for d in dropped_big) + ".")
    else:
        w("No case passing the operator filter was over 1 MiB.")
    w("")
    by_kind = collections.Counter(c["kind"] for c in kept)
    w("## Counts")
    w("")
    w("Total: **%d cases**, %d bytes (%.2f MiB) of case data (%s)." % (
        len(kept), total_bytes, total_bytes / (1 << 20),
        ", ".join("%d %s" % (by_kind[k], k) for k in sorted(by_kind))))
    w("")
    n_float = sum(1 for c in kept if c["float_only"])
    w("Of these, %d are float32-only (every graph input and output is a FLOAT "
      "tensor); the others use other element types (INT64, UINT8, FLOAT16, "
      "BFLOAT16, DOUBLE, BOOL, STRING, ...) or, in `test_identity_opt` and "
      "`test_identity_sequence`, optional/sequence values." % n_float)
    w("")
    w("Cases per operator (a case counts once for each distinct operator in "
      "its main graph, so the columns do not add up to the total):")
    w("")
    w("| Operator | Cases | float32-only |")
    w("| --- | ---: | ---: |")
    for op in sorted(SUPPORTED_OPS):
        w("| %s | %d | %d |" % (op, per_op.get(op, 0), per_op_float.get(op, 0)))
    w("")
    w("`Gelu` has no cases: ONNX added it in opset 20 (ONNX 1.15), after "
      "1.12. Several expanded function cases are rejected because their "
      "expansion uses an unsupported operator (e.g. `*_layer_normalization_*"
      "_expanded` use `Size`, `test_softmax_*_expanded` use `ReduceMax`, "
      "`test_clip_*_expanded` use `CastLike`, `test_range_*_expanded` use "
      "`Loop`).")
    w("")
    w("## Notes for test harnesses")
    w("")
    w("- The files are reproducible, but the expected outputs of "
      "`test_training_dropout`, `test_training_dropout_default`, "
      "`test_training_dropout_default_mask` and `test_training_dropout_mask` "
      "(Dropout with `training_mode=true` and ratio > 0) come from NumPy's "
      "seeded RNG (`np.random.seed(0)`, then `uniform >= ratio`); another "
      "runtime will not reproduce that mask. Compare only output shapes "
      "there, or skip them.")
    w("- `test_batchnorm_*_training_mode` run BatchNormalization in training "
      "mode (extra outputs: running mean and variance).")
    w("- `test_cast_*` cases include STRING and BFLOAT16/FLOAT16 conversions.")
    w("- Tolerances: the ONNX backend runner compares with rtol=1e-3, "
      "atol=1e-7 by default.")
    w("")
    with open(os.path.join(HERE, "README.md"), "w") as f:
        f.write("\n".join(lines))


def write_manifest(kept):
    with open(os.path.join(HERE, "cases.tsv"), "w") as f:
        f.write("case\tkind\tops\tinput_types\toutput_types\tfloat_only"
                "\tdata_sets\tbytes\n")
        for c in kept:
            f.write("%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\n" % (
                c["name"], c["kind"], ",".join(sorted(c["ops"])),
                ",".join(c["in_types"]) or "-",
                ",".join(c["out_types"]) or "-",
                "yes" if c["float_only"] else "no",
                c["data_sets"], c["bytes"]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="print every rejected case and the reason")
    args = parser.parse_args()

    import onnx

    if onnx.__version__ != EXPECTED_ONNX_VERSION:
        sys.exit("generate.py: expected onnx %s, found %s (%s); use Debian's "
                 "/usr/bin/python3 with python3-onnx" % (
                     EXPECTED_ONNX_VERSION, onnx.__version__, onnx.__file__))
    restore_numpy_aliases()

    with tempfile.TemporaryDirectory(prefix="ciphercut-onnx-") as tmp:
        run_onnx_generator(tmp)

        candidates = []
        for kind in sorted(os.listdir(tmp)):
            if kind not in KEPT_KINDS:
                continue
            for name in sorted(os.listdir(os.path.join(tmp, kind))):
                candidates.append((kind, name))

        seen = {}
        kept, rejected, dropped_big = [], [], []
        for kind, name in candidates:
            src = os.path.join(tmp, kind, name)
            model_path = os.path.join(src, "model.onnx")
            if not os.path.exists(model_path):
                rejected.append((name, "no model.onnx"))
                continue
            model = onnx.load(model_path)
            ops, reasons = classify(model)
            if reasons:
                rejected.append((name, "; ".join(sorted(set(reasons)))))
                continue
            size = dir_size(src)
            if size > MAX_CASE_BYTES:
                dropped_big.append((name, size))
                continue
            if name in seen:
                sys.exit("generate.py: case name %s in both %s and %s" % (
                    name, seen[name], kind))
            seen[name] = kind
            data_sets = len([d for d in os.listdir(src)
                             if d.startswith("test_data_set_")])
            in_types = value_types(model.graph.input)
            out_types = value_types(model.graph.output)
            kept.append({"name": name, "kind": kind, "ops": ops, "src": src,
                         "bytes": size, "data_sets": data_sets,
                         "in_types": in_types, "out_types": out_types,
                         "float_only": all(t == "FLOAT"
                                           for t in in_types + out_types)})

        clean_output_dir()
        for c in kept:
            shutil.copytree(c["src"], os.path.join(HERE, c["name"]),
                            copy_function=shutil.copyfile)

    per_op = collections.Counter()
    per_op_float = collections.Counter()
    for c in kept:
        per_op.update(c["ops"])
        if c["float_only"]:
            per_op_float.update(c["ops"])
    total_bytes = sum(c["bytes"] for c in kept)
    write_readme(kept, per_op, per_op_float, total_bytes, dropped_big,
                 onnx.__version__)
    write_manifest(kept)

    if args.verbose:
        for name, why in rejected:
            print("rejected %s: %s" % (name, why))
    for name, size in dropped_big:
        print("dropped %s: %d bytes > 1 MiB" % (name, size))
    print("considered %d cases, kept %d (%d bytes), rejected %d by op filter, "
          "dropped %d for size" % (len(candidates), len(kept), total_bytes,
                                   len(rejected), len(dropped_big)))


if __name__ == "__main__":
    main()
