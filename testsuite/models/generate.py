#!/usr/bin/python3
"""Deterministic generator for the ciphercut model zoo.

Trains small real models on real data shipped by Debian packages, exports
them to ONNX and writes held-out inputs, labels and PyTorch's own outputs.

    apt-get install python3-torch python3-onnx python3-sklearn python3-numpy \
        python3-scipy jargon-text
    /usr/bin/python3 testsuite/models/generate.py            # all models
    /usr/bin/python3 testsuite/models/generate.py --only resnet20

Every model is seeded on its own, so `--only NAME` produces the same bytes as
a full run.  Written per model (in testsuite/models/NAME/):
    model.onnx     input `input` (leading axis `N` dynamic), output `output`
    inputs.npy     whole held-out split (float32; int64 token ids for tiny-gpt)
    labels.npy     int64 labels (tiny-gpt: next-char ids, N x 32)
    expected.npy   float32 outputs of the eval-mode torch model on inputs.npy
plus models.json (metadata of all models).  The ONNX graph of every model is
also re-evaluated with a small numpy reference interpreter (below) and
compared with expected.npy; nothing here needs onnxruntime.
"""

import argparse
import gzip
import json
import math
import os
import sys
import time
import warnings

import numpy as np
import onnx
import onnx.numpy_helper
import scipy.special
import torch
import torch.nn as nn
import torch.nn.functional as F
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.model_selection import train_test_split

HERE = os.path.dirname(os.path.abspath(__file__))
# One thread: deterministic and, on a shared 2-core machine, faster than two.
THREADS = 1

# Ops the Go frontend supports; every exported graph must stay inside this set.
ALLOWED_OPS = {
    "Gemm", "MatMul", "Add", "Sub", "Mul", "Div", "Conv", "BatchNormalization",
    "AveragePool", "GlobalAveragePool", "MaxPool", "Relu", "Softmax",
    "LayerNormalization", "ReduceMean", "Sqrt", "Pow", "Erf", "Flatten",
    "Reshape", "Transpose", "Concat", "Gather", "Slice", "Squeeze",
    "Unsqueeze", "Constant", "Shape", "Identity", "Dropout", "Cast",
}


def seed_all(seed):
    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(THREADS)


def n_params(model):
    return int(sum(p.numel() for p in model.parameters()))


# ----------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------

def split(x, y):
    """The fixed split used by every classification model."""
    return train_test_split(x, y, random_state=0, test_size=0.2, stratify=y)


def digits_split():
    d = load_digits()
    x = d.images.astype(np.float32) / 16.0  # (1797, 8, 8) in [0, 1]
    y = d.target.astype(np.int64)
    return split(x, y)


def upsample(x, size):
    """(N, 8, 8) in [0,1] -> (N, 1, size, size), bilinear."""
    t = torch.from_numpy(x).unsqueeze(1)
    t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)
    return t.numpy().astype(np.float32)


def train_classifier(model, xtr, ytr, epochs, lr, batch=64, wd=0.0, seed=0):
    """Plain Adam + cosine schedule, deterministic shuffling."""
    g = torch.Generator().manual_seed(seed)
    xtr = torch.from_numpy(xtr)
    ytr = torch.from_numpy(ytr)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=wd)
    steps = epochs * math.ceil(len(xtr) / batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps,
                                                pct_start=0.15)
    model.train()
    for ep in range(epochs):
        perm = torch.randperm(len(xtr), generator=g)
        tot = 0.0
        for i in range(0, len(xtr), batch):
            idx = perm[i:i + batch]
            loss = F.cross_entropy(model(xtr[idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot += loss.item() * len(idx)
        if ep == epochs - 1 or ep % max(1, epochs // 5) == 0:
            print(f"    epoch {ep + 1}/{epochs} train loss {tot / len(xtr):.4f}",
                  flush=True)
    model.eval()
    return model


@torch.no_grad()
def torch_outputs(model, x, batch=256):
    model.eval()
    outs = [model(torch.from_numpy(x[i:i + batch])) for i in range(0, len(x), batch)]
    return torch.cat(outs).numpy().astype(np.float32)


# ----------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------

class MLP(nn.Module):
    def __init__(self, sizes):
        super().__init__()
        layers = []
        for i in range(len(sizes) - 1):
            layers.append(nn.Linear(sizes[i], sizes[i + 1]))
            if i < len(sizes) - 2:
                layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


class Standardized(nn.Module):
    """Training-time wrapper: (x - mean) / std in front of an MLP."""

    def __init__(self, mlp, mean, std):
        super().__init__()
        self.mlp = mlp
        self.register_buffer("mean", torch.from_numpy(mean))
        self.register_buffer("std", torch.from_numpy(std))

    def forward(self, x):
        return self.mlp((x - self.mean) / self.std)


class DigitsCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
            nn.AvgPool2d(2, count_include_pad=False),  # True would emit a zero Pad
            nn.Conv2d(6, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(16 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x):
        return self.classifier(self.features(x))


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:  # option B: projection shortcut
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet20(nn.Module):
    """CIFAR ResNet-20 (He et al. 2016, sec. 4.2), n=3, projection shortcuts."""

    def __init__(self, num_classes=10, n=3):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        layers, cin = [], 16
        for cout, stride in ((16, 1), (32, 2), (64, 2)):
            blocks = []
            for b in range(n):
                blocks.append(BasicBlock(cin, cout, stride if b == 0 else 1))
                cin = cout
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = layers
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


class SelfAttention(nn.Module):
    """Hand-written multi-head self-attention with constant-shape reshapes.

    Only MatMul/Add (Linear), Reshape, Transpose, Mul (scale), Add (mask) and
    Softmax reach the ONNX graph.  The batch dimension is always -1.
    """

    def __init__(self, d, heads, seq, causal):
        super().__init__()
        self.d, self.h, self.t, self.hd = d, heads, seq, d // heads
        self.q = nn.Linear(d, d)
        self.k = nn.Linear(d, d)
        self.v = nn.Linear(d, d)
        self.proj = nn.Linear(d, d)
        self.scale = 1.0 / math.sqrt(self.hd)
        self.causal = causal
        if causal:
            mask = torch.triu(torch.full((seq, seq), -1e4), diagonal=1)
            self.register_buffer("mask", mask)

    def heads(self, x):  # (N, T, D) -> (N, H, T, hd)
        return x.reshape(-1, self.t, self.h, self.hd).transpose(1, 2)

    def forward(self, x):
        q, k, v = self.heads(self.q(x)), self.heads(self.k(x)), self.heads(self.v(x))
        s = torch.matmul(q, k.transpose(2, 3)) * self.scale
        if self.causal:
            s = s + self.mask
        a = torch.softmax(s, dim=-1)
        o = torch.matmul(a, v).transpose(1, 2).reshape(-1, self.t, self.d)
        return self.proj(o)


class Block(nn.Module):
    """Pre-LN transformer block."""

    def __init__(self, d, heads, seq, hidden, causal):
        super().__init__()
        self.ln1 = nn.LayerNorm(d)
        self.attn = SelfAttention(d, heads, seq, causal)
        self.ln2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, hidden), nn.GELU(), nn.Linear(hidden, d))

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class DigitsViT(nn.Module):
    def __init__(self, d=32, heads=2, layers=2, hidden=64, tokens=8, feat=8, classes=10):
        super().__init__()
        self.embed = nn.Linear(feat, d)
        self.pos = nn.Parameter(torch.randn(1, tokens, d) * 0.02)
        self.blocks = nn.Sequential(*[Block(d, heads, tokens, hidden, False)
                                      for _ in range(layers)])
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, classes)

    def forward(self, x):  # (N, 8, 8)
        x = self.blocks(self.embed(x) + self.pos)
        return self.head(self.ln(x).mean(dim=1))


class TinyGPT(nn.Module):
    def __init__(self, vocab, d=64, heads=4, layers=2, hidden=256, ctx=32):
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(torch.randn(1, ctx, d) * 0.02)
        self.blocks = nn.Sequential(*[Block(d, heads, ctx, hidden, True)
                                      for _ in range(layers)])
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
                if isinstance(m, nn.Linear):
                    nn.init.zeros_(m.bias)

    def forward(self, idx):  # (N, 32) int64
        x = self.blocks(self.tok(idx) + self.pos)
        return self.head(self.ln(x))


# ----------------------------------------------------------------------------
# Export, numpy reference interpreter, checks
# ----------------------------------------------------------------------------

def export(model, example, path, opset, training=torch.onnx.TrainingMode.EVAL):
    model.eval()
    with warnings.catch_warnings():
        # PRESERVE + constant folding warns about models in *training* mode;
        # ours are always in eval mode.
        warnings.filterwarnings("ignore", message="It is recommended that constant folding")
        _export(model, example, path, opset, training)


def _export(model, example, path, opset, training):
    torch.onnx.export(
        model, (torch.from_numpy(example),), path,
        input_names=["input"], output_names=["output"],
        dynamic_axes={"input": {0: "N"}, "output": {0: "N"}},
        opset_version=opset, do_constant_folding=True, training=training)


def _attrs(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _pool_windows(x, k, s, pads, fill):
    """(N,C,H,W) -> (N,C,Ho,Wo,kh,kw) strided view of the padded input."""
    x = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])),
               constant_values=fill)
    n, c, h, w = x.shape
    ho, wo = (h - k[0]) // s[0] + 1, (w - k[1]) // s[1] + 1
    st = x.strides
    return np.lib.stride_tricks.as_strided(
        x, (n, c, ho, wo, k[0], k[1]),
        (st[0], st[1], st[2] * s[0], st[3] * s[1], st[2], st[3]))


def run_onnx_numpy(model_proto, x):
    """Evaluate the graph with numpy in float64. Returns (output, MACs)."""
    g = model_proto.graph
    env = {i.name: onnx.numpy_helper.to_array(i).astype(np.float64)
           if onnx.numpy_helper.to_array(i).dtype.kind == "f"
           else onnx.numpy_helper.to_array(i) for i in g.initializer}
    env[g.input[0].name] = x.astype(np.float64) if x.dtype.kind == "f" else x
    macs = 0
    for node in g.node:
        a = _attrs(node)
        i = [env[n] if n else None for n in node.input]
        op = node.op_type
        if op == "Constant":
            v = onnx.numpy_helper.to_array(a["value"])
            y = v.astype(np.float64) if v.dtype.kind == "f" else v
        elif op in ("Identity", "Dropout"):
            y = i[0]
        elif op == "Cast":
            to = onnx.helper.tensor_dtype_to_np_dtype(a["to"])
            y = i[0].astype(np.float64 if np.dtype(to).kind == "f" else to)
        elif op in ("Add", "Sub", "Mul", "Div", "Pow"):
            y = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply,
                 "Div": np.divide, "Pow": np.power}[op](i[0], i[1])
        elif op == "Sqrt":
            y = np.sqrt(i[0])
        elif op == "Erf":
            y = scipy.special.erf(i[0])
        elif op == "Relu":
            y = np.maximum(i[0], 0)
        elif op == "MatMul":
            y = np.matmul(i[0], i[1])
            macs += int(np.prod(y.shape)) * i[0].shape[-1]
        elif op == "Gemm":
            A = i[0].T if a.get("transA", 0) else i[0]
            B = i[1].T if a.get("transB", 0) else i[1]
            y = a.get("alpha", 1.0) * (A @ B)
            if len(i) > 2 and i[2] is not None:
                y = y + a.get("beta", 1.0) * i[2]
            macs += int(np.prod(y.shape)) * A.shape[1]
        elif op == "Conv":
            w = i[1]
            assert a.get("group", 1) == 1 and set(a.get("dilations", [1, 1])) == {1}
            k = w.shape[2:]
            win = _pool_windows(i[0], k, a.get("strides", [1, 1]),
                                a.get("pads", [0, 0, 0, 0]), 0.0)
            y = np.einsum("nchwij,ocij->nohw", win, w, optimize=True)
            if len(i) > 2 and i[2] is not None:
                y = y + i[2][None, :, None, None]
            macs += int(np.prod(y.shape)) * int(np.prod(w.shape[1:]))
        elif op == "BatchNormalization":
            sc, b, m, v = (t[None, :, None, None] for t in i[1:5])
            y = (i[0] - m) / np.sqrt(v + a.get("epsilon", 1e-5)) * sc + b
        elif op in ("AveragePool", "MaxPool"):
            assert a.get("ceil_mode", 0) == 0
            pads = a.get("pads", [0, 0, 0, 0])
            fill = -np.inf if op == "MaxPool" else 0.0
            win = _pool_windows(i[0], a["kernel_shape"], a.get("strides", [1, 1]),
                                pads, fill)
            if op == "MaxPool":
                y = win.max(axis=(4, 5))
            else:
                assert not any(pads) or a.get("count_include_pad", 0)
                y = win.mean(axis=(4, 5))
        elif op == "GlobalAveragePool":
            y = i[0].mean(axis=(2, 3), keepdims=True)
        elif op == "Softmax":
            z = i[0] - i[0].max(axis=a.get("axis", -1), keepdims=True)
            e = np.exp(z)
            y = e / e.sum(axis=a.get("axis", -1), keepdims=True)
        elif op == "LayerNormalization":
            ax = a.get("axis", -1)
            axes = tuple(range(ax % i[0].ndim, i[0].ndim))
            mu = i[0].mean(axis=axes, keepdims=True)
            var = ((i[0] - mu) ** 2).mean(axis=axes, keepdims=True)
            y = (i[0] - mu) / np.sqrt(var + a.get("epsilon", 1e-5)) * i[1]
            if len(i) > 2 and i[2] is not None:
                y = y + i[2]
        elif op == "ReduceMean":
            y = i[0].mean(axis=tuple(a["axes"]), keepdims=bool(a.get("keepdims", 1)))
        elif op == "Flatten":
            ax = a.get("axis", 1)
            y = i[0].reshape(int(np.prod(i[0].shape[:ax])), -1)
        elif op == "Reshape":
            shape = [int(s) for s in i[1]]
            shape = [i[0].shape[j] if s == 0 else s for j, s in enumerate(shape)]
            y = i[0].reshape(shape)
        elif op == "Transpose":
            y = np.transpose(i[0], a.get("perm"))
        elif op == "Concat":
            y = np.concatenate(i, axis=a["axis"])
        elif op == "Gather":
            y = np.take(i[0], i[1], axis=a.get("axis", 0))
        elif op == "Shape":
            y = np.array(i[0].shape, dtype=np.int64)
        elif op == "Unsqueeze":
            y = np.expand_dims(i[0], tuple(int(t) for t in i[1]))
        elif op == "Squeeze":
            y = np.squeeze(i[0], tuple(int(t) for t in i[1])) if len(i) > 1 else np.squeeze(i[0])
        elif op == "Slice":
            starts, ends = i[1], i[2]
            axes = i[3] if len(i) > 3 and i[3] is not None else range(len(starts))
            steps = i[4] if len(i) > 4 and i[4] is not None else [1] * len(starts)
            sl = [slice(None)] * i[0].ndim
            for s, e, ax, st in zip(starts, ends, axes, steps):
                sl[int(ax)] = slice(int(s), int(e), int(st))
            y = i[0][tuple(sl)]
        else:
            raise NotImplementedError(op)
        env[node.output[0]] = y
    return env[g.output[0].name], macs


def check_onnx(path, x, expected, int_input=False):
    """onnx.checker + op whitelist + numpy re-evaluation against torch."""
    m = onnx.load(path)
    onnx.checker.check_model(m, full_check=True)
    ops = sorted({n.op_type for n in m.graph.node})
    bad = set(ops) - ALLOWED_OPS
    assert not bad, f"{path}: unsupported ops {bad}"
    assert [i.name for i in m.graph.input] == ["input"], m.graph.input
    assert [o.name for o in m.graph.output] == ["output"], m.graph.output
    assert m.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"
    assert m.graph.output[0].type.tensor_type.shape.dim[0].dim_param == "N"
    y, _ = run_onnx_numpy(m, x)
    _, macs = run_onnx_numpy(m, x[:1])
    diff = float(np.abs(y - expected).max())
    scale = float(np.abs(expected).max())
    assert diff <= 1e-4 * max(1.0, scale), f"{path}: numpy ONNX vs torch max diff {diff}"
    agree = float((y.argmax(-1) == expected.argmax(-1)).mean())
    return {"ops": ops, "max_abs_diff_numpy_onnx_vs_torch": diff,
            "argmax_agreement_numpy_onnx_vs_torch": agree, "macs_per_sample": macs,
            "opset": m.opset_import[0].version}


def save(name, x, labels, expected):
    d = os.path.join(HERE, name)
    np.save(os.path.join(d, "inputs.npy"), x)
    np.save(os.path.join(d, "labels.npy"), labels.astype(np.int64))
    np.save(os.path.join(d, "expected.npy"), expected.astype(np.float32))


def finish(name, model, xte, yte, opset, extra=None,
           training=torch.onnx.TrainingMode.EVAL, note=""):
    d = os.path.join(HERE, name)
    os.makedirs(d, exist_ok=True)
    expected = torch_outputs(model, xte)
    acc = float((expected.argmax(-1) == yte).mean())
    path = os.path.join(d, "model.onnx")
    export(model, xte[:2], path, opset, training)
    save(name, xte, yte, expected)
    info = {"params": n_params(model), "heldout": int(len(xte)),
            "input_shape": ["N"] + list(xte.shape[1:]), "input_dtype": str(xte.dtype),
            "output_shape": ["N"] + list(expected.shape[1:]),
            "torch_accuracy": round(acc, 6)}
    info.update(check_onnx(path, xte, expected))
    if note:
        info["note"] = note
    if extra:
        info.update(extra)
    print(f"  {name}: params {info['params']}, torch accuracy {acc:.4f} "
          f"({len(xte)} held-out), opset {info['opset']}, MACs/sample {info['macs_per_sample']}")
    print(f"    ops: {' '.join(info['ops'])}")
    print(f"    numpy-ONNX vs torch: max|diff| {info['max_abs_diff_numpy_onnx_vs_torch']:.2e}, "
          f"argmax agreement {info['argmax_agreement_numpy_onnx_vs_torch']:.4f}")
    return info


# ----------------------------------------------------------------------------
# Builders
# ----------------------------------------------------------------------------

def build_cancer_mlp():
    seed_all(1)
    data = load_breast_cancer()
    x = data.data.astype(np.float64)
    y = data.target.astype(np.int64)
    xtr, xte, ytr, yte = split(x, y)
    mean, std = xtr.mean(axis=0), xtr.std(axis=0)
    mlp = MLP([30, 64, 32, 2])
    net = Standardized(mlp, mean.astype(np.float32), std.astype(np.float32))
    train_classifier(net, xtr.astype(np.float32), ytr, epochs=60, lr=3e-3, batch=32,
                     wd=1e-2, seed=1)
    xte = xte.astype(np.float32)
    wrapped = torch_outputs(net, xte)
    # Fold the standardization into the first Linear: W' = W / std,
    # b' = b - W' mean (computed in float64), so the ONNX input is raw features.
    first = mlp.net[0]
    with torch.no_grad():
        w = first.weight.double().numpy()
        b = first.bias.double().numpy()
        w2 = w / std[None, :]
        b2 = b - w2 @ mean
        first.weight.copy_(torch.from_numpy(w2.astype(np.float32)))
        first.bias.copy_(torch.from_numpy(b2.astype(np.float32)))
    mlp.eval()
    folded_vs_wrapped = float(np.abs(torch_outputs(mlp, xte) - wrapped).max())
    print(f"    folded vs unfolded max|diff| {folded_vs_wrapped:.2e}")
    return finish("cancer-mlp", mlp, xte, yte, 13,
                  extra={"data": "sklearn load_breast_cancer (Wisconsin diagnostic)",
                         "arch": "standardize folded into Linear 30-64, ReLU, 64-32, ReLU, 32-2"})


def build_digits_mlp():
    seed_all(2)
    xtr, xte, ytr, yte = digits_split()
    xtr, xte = xtr.reshape(-1, 64), xte.reshape(-1, 64)  # ONNX input is N x 64
    model = MLP([64, 128, 64, 10])
    train_classifier(model, xtr, ytr, epochs=40, lr=3e-3, seed=2)
    return finish("digits-mlp", model, xte, yte, 13,
                  extra={"data": "sklearn load_digits 8x8 flattened to 64, /16",
                         "arch": "Linear 64-128, ReLU, 128-64, ReLU, 64-10"})


def build_digits_cnn():
    seed_all(3)
    xtr, xte, ytr, yte = digits_split()
    xtr, xte = upsample(xtr, 16), upsample(xte, 16)
    model = DigitsCNN()
    train_classifier(model, xtr, ytr, epochs=30, lr=3e-3, seed=3)
    # TrainingMode.PRESERVE with the model in eval mode keeps the (inference
    # mode) BatchNormalization nodes; the default EVAL mode would fold them
    # into the preceding Conv.  Outputs are checked against torch below.
    info = finish("digits-cnn", model, xte, yte, 13,
                  training=torch.onnx.TrainingMode.PRESERVE,
                  note="BatchNormalization kept (export with TrainingMode.PRESERVE, model in eval mode)",
                  extra={"data": "sklearn load_digits, bilinear 16x16, /16",
                         "arch": "Conv1-6 k3 BN ReLU AvgPool2, Conv6-16 k3 BN ReLU MaxPool2, "
                                 "Flatten, Linear 256-64, ReLU, 64-10"})
    m = onnx.load(os.path.join(HERE, "digits-cnn", "model.onnx"))
    for n in m.graph.node:
        if n.op_type == "BatchNormalization":
            assert len(n.output) == 1 and not _attrs(n).get("training_mode", 0)
    return info


def build_resnet20():
    seed_all(4)
    xtr, xte, ytr, yte = digits_split()
    xtr = np.repeat(upsample(xtr, 32), 3, axis=1)
    xte = np.repeat(upsample(xte, 32), 3, axis=1)
    model = ResNet20()
    train_classifier(model, xtr, ytr, epochs=8, lr=3e-3, wd=1e-4, seed=4)
    return finish("resnet20", model, xte, yte, 13,
                  note="BatchNormalization folded into Conv by torch.onnx export (EVAL mode)",
                  extra={"data": "sklearn load_digits, bilinear 32x32, /16, 3 channels",
                         "arch": "CIFAR ResNet-20 (3x3 BasicBlocks, 16/32/64, 1x1 conv+BN "
                                 "projection shortcuts), GAP, Linear 64-10"})


def build_digits_vit():
    seed_all(5)
    xtr, xte, ytr, yte = digits_split()
    model = DigitsViT()
    train_classifier(model, xtr, ytr, epochs=80, lr=3e-3, wd=1e-2, seed=5)
    return finish("digits-vit", model, xte, yte, 14,
                  extra={"data": "sklearn load_digits, 8 row tokens x 8 features, /16",
                         "arch": "Linear 8-32 + pos, 2 pre-LN blocks (2-head attention, "
                                 "MLP 32-64-32 GELU), LN, mean pool, Linear 32-10"})


# tiny-gpt -------------------------------------------------------------------

JARGON = "/usr/share/doc/jargon-text/jargon.txt.gz"
VOCAB = list(" abcdefghijklmnopqrstuvwxyz#.,;:'\"!?-(){}/")
CTX = 32
BLOCK = 4096


def load_text():
    with gzip.open(JARGON, "rt", encoding="utf-8") as f:
        raw = f.read()
    # Skip the table of contents: the body starts at the 2nd "Welcome".
    start = raw.index("Welcome to the Jargon File", raw.index("Welcome to the Jargon File") + 1)
    raw = raw[start:].lower()
    table = {"‘": "'", "’": "'", "´": "'", "`": "'", "“": '"', "”": '"',
             "—": "-", "−": "-", "[": "(", "]": ")", "\xa0": " "}
    for c in "0123456789":
        table[c] = "#"
    keep = set(VOCAB)
    out = []
    for c in raw:
        c = table.get(c, c)
        out.append(c if c in keep else " ")  # newlines, box drawing, other symbols
    text = " ".join("".join(out).split())  # collapse whitespace runs
    return text


def build_tiny_gpt():
    seed_all(6)
    text = load_text()
    stoi = {c: i for i, c in enumerate(VOCAB)}
    ids = np.array([stoi[c] for c in text], dtype=np.int64)
    nblk = len(ids) // BLOCK
    blocks = ids[:nblk * BLOCK].reshape(nblk, BLOCK)
    tr_idx, te_idx = train_test_split(np.arange(nblk), random_state=0, test_size=0.1)
    tr_idx, te_idx = np.sort(tr_idx), np.sort(te_idx)
    train_blocks = torch.from_numpy(blocks[tr_idx])
    print(f"    text: {len(text)} chars, {nblk} blocks of {BLOCK}, "
          f"{len(tr_idx)} train / {len(te_idx)} held-out blocks, vocab {len(VOCAB)}")

    model = TinyGPT(len(VOCAB))
    g = torch.Generator().manual_seed(6)
    steps, batch, lr = 2000, 128, 3e-3
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps,
                                                pct_start=0.05)
    model.train()
    ar = torch.arange(CTX + 1)
    for step in range(steps):
        b = torch.randint(len(train_blocks), (batch,), generator=g)
        o = torch.randint(BLOCK - CTX - 1, (batch,), generator=g)
        w = train_blocks[b[:, None], o[:, None] + ar[None, :]]
        logits = model(w[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, len(VOCAB)), w[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 500 == 0 or step == steps - 1:
            print(f"    step {step}/{steps} train loss {loss.item():.4f}", flush=True)
    model.eval()

    # Held-out windows: 128 windows, evenly spread over the held-out blocks.
    test_blocks = blocks[te_idx]
    rs = np.random.RandomState(6)
    nwin = 128
    wb = np.arange(nwin) % len(te_idx)
    wo = rs.randint(0, BLOCK - CTX - 1, size=nwin)
    wins = np.stack([test_blocks[b, o:o + CTX + 1] for b, o in zip(wb, wo)])
    xte, yte = wins[:, :-1].copy(), wins[:, 1:].copy()
    # Larger held-out estimate (not saved): 2048 windows.
    wb2 = rs.randint(0, len(te_idx), size=2048)
    wo2 = rs.randint(0, BLOCK - CTX - 1, size=2048)
    big = np.stack([test_blocks[b, o:o + CTX + 1] for b, o in zip(wb2, wo2)])
    with torch.no_grad():
        lg = model(torch.from_numpy(big[:, :-1]))
        big_loss = float(F.cross_entropy(lg.reshape(-1, len(VOCAB)),
                                         torch.from_numpy(big[:, 1:]).reshape(-1)))
        big_acc = float((lg.argmax(-1).numpy() == big[:, 1:]).mean())
    print(f"    2048 held-out windows: loss {big_loss:.4f} nats/char, "
          f"next-char accuracy {big_acc:.4f}")

    # Prompts with greedy continuation (sliding 32-char window).
    prompts = []
    for j in range(5):
        # Start at a word boundary in a digit-free stretch of held-out text.
        b = (j * 7) % len(te_idx)
        o = 100 + 517 * j
        while not (test_blocks[b, o - 1] == stoi[" "] and
                   stoi["#"] not in test_blocks[b, o:o + 2 * CTX]):
            o += 1
        ctx = list(test_blocks[b, o:o + CTX])
        prompt = "".join(VOCAB[t] for t in ctx)
        cont = []
        with torch.no_grad():
            for _ in range(32):
                lg = model(torch.tensor([ctx[-CTX:]], dtype=torch.int64))
                nxt = int(lg[0, -1].argmax())
                cont.append(nxt)
                ctx.append(nxt)
        prompts.append({"prompt": prompt, "prompt_ids": [int(t) for t in ctx[:CTX]],
                        "continuation": "".join(VOCAB[t] for t in cont),
                        "continuation_ids": cont,
                        "heldout_text": "".join(VOCAB[t] for t in test_blocks[b, o + CTX:o + 2 * CTX])})
        print(f"    {prompt!r} -> {prompts[-1]['continuation']!r}")

    d = os.path.join(HERE, "tiny-gpt")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "vocab.json"), "w") as f:
        json.dump(VOCAB, f, ensure_ascii=True)
        f.write("\n")
    with open(os.path.join(d, "prompts.json"), "w") as f:  # one prompt per line
        f.write("[\n" + ",\n".join(json.dumps(p, ensure_ascii=True) for p in prompts) + "\n]\n")
    info = finish("tiny-gpt", model, xte, yte, 17, extra={
        "data": "Jargon File 4.4.7 (Debian jargon-text, public domain)",
        "source": {"package": "jargon-text", "path": JARGON, "license": "public domain"},
        "arch": "Embedding(Gather)+pos, 2 pre-LN causal blocks (d64, 4 heads, MLP 64-256-64 "
                "GELU), LN, Linear 64-vocab",
        "vocab": len(VOCAB), "context": CTX,
        "heldout_2048_windows": {"loss_nats_per_char": round(big_loss, 6),
                                 "next_char_accuracy": round(big_acc, 6)}})
    # Greedy decoding through the exported graph (numpy interpreter) must
    # reproduce torch's continuations.
    m = onnx.load(os.path.join(d, "model.onnx"))
    same = 0
    for p in prompts:
        ctx = list(p["prompt_ids"])
        for _ in range(32):
            y, _ = run_onnx_numpy(m, np.array([ctx[-CTX:]], dtype=np.int64))
            ctx.append(int(y[0, -1].argmax()))
        same += ctx[CTX:] == p["continuation_ids"]
    print(f"    numpy-ONNX greedy continuation identical for {same}/{len(prompts)} prompts")
    info["greedy_prompts_identical_numpy_onnx"] = f"{same}/{len(prompts)}"
    return info


BUILDERS = {
    "cancer-mlp": build_cancer_mlp,
    "digits-mlp": build_digits_mlp,
    "digits-cnn": build_digits_cnn,
    "resnet20": build_resnet20,
    "digits-vit": build_digits_vit,
    "tiny-gpt": build_tiny_gpt,
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", action="append", choices=sorted(BUILDERS),
                    help="build only this model (repeatable)")
    args = ap.parse_args()
    names = args.only or list(BUILDERS)
    print(f"torch {torch.__version__}, onnx {onnx.__version__}, numpy {np.__version__}, "
          f"{THREADS} threads", flush=True)
    manifest_path = os.path.join(HERE, "models.json")
    manifest = {}
    if os.path.exists(manifest_path):
        with open(manifest_path) as f:
            manifest = json.load(f)
    t_all = time.time()
    for name in names:
        t0 = time.time()
        print(f"[{name}]", flush=True)
        manifest[name] = BUILDERS[name]()
        print(f"  {name} done in {time.time() - t0:.1f}s", flush=True)
    manifest = {k: manifest[k] for k in BUILDERS if k in manifest}
    with open(manifest_path, "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
        f.write("\n")
    print(f"total {time.time() - t_all:.1f}s")


if __name__ == "__main__":
    sys.exit(main())
