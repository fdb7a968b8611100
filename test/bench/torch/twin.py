#!/usr/bin/python3
"""A PyTorch twin of the trainer's IAC search step, for test/bench/trainer-throughput.ts.

The same supernet as trainer/src/model (a 2-D U-Net with an IAC cell in every skip
connection) and the same search step as trainer/src/search/search.ts, written the
way a PyTorch user would write it, after the PC-DARTS code (Xu et al., ICLR 2020):
a MixedOp per edge over the first C/K channels, the rest bypassing it, then a channel
shuffle; edge normalisation (softmax over each node's incoming edges); a frozen
backbone; the first-order architecture step (Adam) then the weights step (momentum
SGD with gradient clipping).

Runs under Debian's Python 3 with Debian's python3-torch (/usr/bin/python3, not a
pyenv or virtualenv python3 that comes first on PATH):

  /usr/bin/python3 test/bench/torch/twin.py bench --size 32 --batch 8 --variant full --steps 3
      One thread (intra-op and inter-op); `--warmup` untimed steps (default 1), `--steps` timed steps, then
      one untimed step under torch.profiler for the aten op count. Prints one JSON
      object: CPU ms per step (time.process_time), wall ms per step, aten ops per step.
  /usr/bin/python3 test/bench/torch/twin.py serve --size 32 --batch 8 --variant pruned --warmup 8
      The same step, one per "step" line on stdin, its CPU and wall ms on stdout: the
      benchmark interleaves these with its own steps.
  /usr/bin/python3 test/bench/torch/twin.py check DIR
      DIR holds manifest.json and data.bin written by test/bench/torch/twin.test.ts:
      the tfjs network's named weights, two batches, and the tfjs side's logits,
      loss, gradients and weights after one search step. Loads the weights into the
      twin by name, computes the same, and prints one JSON report of parameter counts
      and per-tensor differences (the test decides what passes).
"""
import argparse
import json
import math
import os
import sys
import time

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError as e:  # the caller prints this line
    sys.stderr.write(
        f"twin.py: PyTorch is not importable by {sys.executable} ({e}); "
        "install Debian's package: apt-get install python3-torch\n"
    )
    sys.exit(3)

# trainer/src/config/search.ts OPERATIONS, in that order (alphas' columns).
OPERATIONS = [
    "none",
    "skip_connect",
    "conv_3x3",
    "conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "avg_pool_3x3",
    "max_pool_3x3",
]

# The search defaults (trainer/src/config/search.ts).
WEIGHTS_LR, WEIGHTS_MOMENTUM, WEIGHTS_DECAY, GRAD_CLIP = 0.025, 0.9, 3e-4, 5.0
ARCH_LR, ARCH_BETAS, ARCH_DECAY = 6e-4, (0.5, 0.999), 1e-3


# ---------------------------------------------------------------- operations


class Zero(nn.Module):
    """'none': contributes nothing (MixedOp skips it rather than multiplying by 0)."""

    def forward(self, x):
        return x.mul(0.0)


class Identity(nn.Module):
    def forward(self, x):
        return x


def norm(c):
    """Every operation's output is instance-normalised without affine parameters."""
    return nn.InstanceNorm2d(c, affine=False, eps=1e-5)


class ReLUConvIN(nn.Module):
    """ReLU, k x k convolution (stride 1, 'same'), instance norm."""

    def __init__(self, c_in, c_out, k):
        super().__init__()
        self.op = nn.Sequential(nn.ReLU(inplace=False), nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=False), norm(c_out))

    def forward(self, x):
        return self.op(x)


class DilConv(nn.Module):
    """ReLU, depthwise k x k convolution with dilation 2, 1x1 convolution, instance norm."""

    def __init__(self, c, k, dilation=2):
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(c, c, k, padding=dilation * (k - 1) // 2, dilation=dilation, groups=c, bias=False),
            nn.Conv2d(c, c, 1, bias=False),
            norm(c),
        )

    def forward(self, x):
        return self.op(x)


class SepConv(nn.Module):
    """Two rounds of ReLU, depthwise k x k, 1x1, instance norm."""

    def __init__(self, c, k):
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(c, c, k, padding=k // 2, groups=c, bias=False),
            nn.Conv2d(c, c, 1, bias=False),
            norm(c),
            nn.ReLU(inplace=False),
            nn.Conv2d(c, c, k, padding=k // 2, groups=c, bias=False),
            nn.Conv2d(c, c, 1, bias=False),
            norm(c),
        )

    def forward(self, x):
        return self.op(x)


def make_op(name, c):
    if name == "none":
        return Zero()
    if name == "skip_connect":
        return Identity()
    if name == "conv_3x3":
        return ReLUConvIN(c, c, 3)
    if name == "conv_5x5":
        return ReLUConvIN(c, c, 5)
    if name == "dil_conv_3x3":
        return DilConv(c, 3)
    if name == "dil_conv_5x5":
        return DilConv(c, 5)
    if name == "sep_conv_3x3":
        return SepConv(c, 3)
    if name == "sep_conv_5x5":
        return SepConv(c, 5)
    if name == "avg_pool_3x3":
        # TensorFlow's 'same' average pooling does not count the padded cells.
        return nn.Sequential(nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False), norm(c))
    if name == "max_pool_3x3":
        return nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1), norm(c))
    raise ValueError(f"unknown operation {name}")


def channel_shuffle(x, groups):
    b, c, h, w = x.shape
    x = x.view(b, groups, c // groups, h, w)
    x = torch.transpose(x, 1, 2).contiguous()
    return x.view(b, c, h, w)


class MixedOp(nn.Module):
    """One edge: a softmax-weighted sum of its operations over the first C/K channels;
    the other channels bypass it; then the channel shuffle (PC-DARTS). `ops` are the
    indices (into OPERATIONS) of the edge's operations still active: pruned ones are
    not built at all."""

    def __init__(self, c, k, ops):
        super().__init__()
        self.k = k
        self.indices = [o for o in ops if OPERATIONS[o] != "none"]  # 'none' adds nothing
        self.ops = nn.ModuleDict({OPERATIONS[o]: make_op(OPERATIONS[o], c // k) for o in ops})

    def forward(self, x, weights):
        """weights: this edge's row of softmax(alphas) [len(OPERATIONS)]."""
        cp = x.shape[1] // self.k
        xp = x[:, :cp]
        mixed = None
        for o in self.indices:
            y = weights[o] * self.ops[OPERATIONS[o]](xp)
            mixed = y if mixed is None else mixed + y
        if mixed is None:
            mixed = torch.zeros_like(xp)
        if self.k == 1:
            return mixed
        return channel_shuffle(torch.cat([mixed, x[:, cp:]], dim=1), self.k)


def edge_index(node, inp):
    return node * (node + 3) // 2 + inp


class Cell(nn.Module):
    """The Implantable Adaptive Cell: s0 (encoder skip) and s1 (upsampled decoder
    feature) through ReLU-1x1-norm, `nodes` nodes over all previous states, output
    s0 + 1x1 conv of the concatenated nodes."""

    def __init__(self, c, c1, nodes, k, active):
        super().__init__()
        self.nodes = nodes
        self.preprocess0 = ReLUConvIN(c, c, 1)
        self.preprocess1 = ReLUConvIN(c1, c, 1)
        self.edges = nn.ModuleList()
        for j in range(nodes):
            for i in range(j + 2):
                e = edge_index(j, i)
                self.edges.append(MixedOp(c, k, active[e]))
        self.out = nn.Conv2d(nodes * c, c, 1, bias=False)
        # Softmax over each edge's active operations: pruned ones get -inf (weight 0).
        if all(len(ops) == len(OPERATIONS) for ops in active):
            self.alpha_mask = None
        else:
            mask = torch.full((len(self.edges), len(OPERATIONS)), float("-inf"))
            for e, ops in enumerate(active):
                mask[e, list(ops)] = 0.0
            self.register_buffer("alpha_mask", mask)

    def forward(self, s0, s1, alphas, betas):
        weights = F.softmax(alphas if self.alpha_mask is None else alphas + self.alpha_mask, dim=-1)
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for j in range(self.nodes):
            start = edge_index(j, 0)
            edge_w = F.softmax(betas[start : start + j + 2], dim=-1)
            node = None
            for i, h in enumerate(states):
                y = edge_w[i] * self.edges[start + i](h, weights[start + i])
                node = y if node is None else node + y
            states.append(node)
        return s0 + self.out(torch.cat(states[2:], dim=1))


class ConvBlock(nn.Module):
    """(3x3 convolution, instance norm with affine, ReLU) x 2."""

    def __init__(self, c_in, c_out):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.norm1 = nn.InstanceNorm2d(c_out, affine=True, eps=1e-5)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.norm2 = nn.InstanceNorm2d(c_out, affine=True, eps=1e-5)

    def forward(self, x):
        x = F.relu(self.norm1(self.conv1(x)))
        return F.relu(self.norm2(self.conv2(x)))


class Supernet(nn.Module):
    def __init__(self, depth, base, in_channels, classes, nodes, k, active):
        """active[l][e]: the operation indices still active on edge e of cell l."""
        super().__init__()
        ch = [base * 2**l for l in range(depth + 1)]
        self.depth = depth
        self.encoders = nn.ModuleList()
        cin = in_channels
        for l in range(depth):
            self.encoders.append(ConvBlock(cin, ch[l]))
            cin = ch[l]
        self.bottleneck = ConvBlock(cin, ch[depth])
        self.ups = nn.ModuleList([nn.Conv2d(ch[l + 1], ch[l], 1, bias=False) for l in range(depth)])
        self.decoders = nn.ModuleList([ConvBlock(2 * ch[l], ch[l]) for l in range(depth)])
        self.head = nn.Conv2d(ch[0], classes, 1, bias=True)
        self.cells = nn.ModuleList([Cell(ch[l], ch[l], nodes, k, active[l]) for l in range(depth)])
        edges = nodes * (nodes + 3) // 2
        # Architecture parameters, kept out of parameters() as in DARTS.
        self._alphas = [(1e-3 * torch.randn(edges, len(OPERATIONS))).requires_grad_(True) for _ in range(depth)]
        self._betas = [(1e-3 * torch.randn(edges)).requires_grad_(True) for _ in range(depth)]

    def arch_parameters(self):
        return self._alphas + self._betas

    def backbone_parameters(self):
        return [p for name, p in self.named_parameters() if not name.startswith("cells.")]

    def cell_parameters(self):
        return list(self.cells.parameters())

    def forward(self, x):
        skips = []
        cur = x
        for enc in self.encoders:
            s = enc(cur)
            skips.append(s)
            cur = F.max_pool2d(s, 2)
        cur = self.bottleneck(cur)
        for l in reversed(range(self.depth)):
            up = self.ups[l](F.interpolate(cur, scale_factor=2, mode="nearest"))
            skip = self.cells[l](skips[l], up, self._alphas[l], self._betas[l])
            cur = self.decoders[l](torch.cat([skip, up], dim=1))
        return self.head(cur)


def init_like_trainer(model):
    """trainer/src/model/init.ts: He-normal kernels, unit gamma, zero beta and bias, the
    cell's output kernel zero (a fresh cell is the identity)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("out.weight"):
                p.zero_()
            elif p.dim() == 4:
                fan_in = p.shape[1] * p.shape[2] * p.shape[3]
                nn.init.trunc_normal_(p, std=math.sqrt(2 / fan_in), a=-2 * math.sqrt(2 / fan_in), b=2 * math.sqrt(2 / fan_in))
            elif name.endswith("norm1.weight") or name.endswith("norm2.weight"):
                p.fill_(1.0)
            else:
                p.zero_()


# ---------------------------------------------------------------- the step


def seg_loss(logits, labels, smooth=1e-5):
    """Cross-entropy (mean over pixels) + 1 - mean soft Dice over classes (over the batch)."""
    logp = F.log_softmax(logits, dim=1)
    ce = F.nll_loss(logp, labels)
    p = logp.exp()
    y = F.one_hot(labels, logits.shape[1]).permute(0, 3, 1, 2).to(logits.dtype)
    inter = (p * y).sum(dim=(0, 2, 3))
    denom = p.sum(dim=(0, 2, 3)) + y.sum(dim=(0, 2, 3))
    dice = (2 * inter + smooth) / (denom + smooth)
    return ce + 1 - dice.mean()


def freeze_backbone(model):
    for p in model.backbone_parameters():
        p.requires_grad_(False)


def optimizers(model):
    w = torch.optim.SGD(model.cell_parameters(), lr=WEIGHTS_LR, momentum=WEIGHTS_MOMENTUM, weight_decay=WEIGHTS_DECAY)
    a = torch.optim.Adam(model.arch_parameters(), lr=ARCH_LR, betas=ARCH_BETAS, weight_decay=ARCH_DECAY)
    return w, a


def search_step(model, w_opt, a_opt, batch_w, batch_a, grad_clip=GRAD_CLIP):
    """trainer/src/search/search.ts's inner loop: the first-order architecture step on
    batch_a, then the weights step on batch_w. Each backward computes only the
    gradients its optimizer needs (backward(inputs=...)), as tf.variableGrads does.
    Returns the two losses and the weights' gradient norm before clipping."""
    arch = model.arch_parameters()
    weights = model.cell_parameters()
    a_opt.zero_grad(set_to_none=True)
    loss_a = seg_loss(model(batch_a[0]), batch_a[1])
    loss_a.backward(inputs=arch)
    a_opt.step()
    w_opt.zero_grad(set_to_none=True)
    loss_w = seg_loss(model(batch_w[0]), batch_w[1])
    loss_w.backward(inputs=weights)
    norm = nn.utils.clip_grad_norm_(weights, grad_clip)
    w_opt.step()
    return loss_a.detach(), loss_w.detach(), norm


def prune_to_one(cells, edges):
    """test/bench/step.ts pruneToOne: every edge keeps one operation, cycling through
    the operations other than 'none'."""
    real = [i for i, op in enumerate(OPERATIONS) if op != "none"]
    return [[[real[(c * edges + e) % len(real)]] for e in range(edges)] for c in range(cells)]


def all_ops(cells, edges):
    return [[list(range(len(OPERATIONS))) for _ in range(edges)] for _ in range(cells)]


def one_thread():
    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass  # already set (or already used) in this process


# ---------------------------------------------------------------- bench


def count_aten(prof):
    """Aten ops in a profile: all of them, and those not called from inside another
    aten op (the ones the step itself dispatches, comparable to tfjs kernel calls).
    The nesting comes from the profiler's event tree (each op's parent as recorded when
    it ran); FunctionEvent.cpu_parent, rebuilt from microsecond timestamps, lets a few
    percent of the children that start or end in their parent's last microsecond escape."""
    try:
        roots = prof.profiler.kineto_results.experimental_event_tree()
    except AttributeError:
        roots = None
    total = 0
    top = 0
    if roots is not None:
        stack = [(r, False) for r in roots]
        while stack:
            node, inside = stack.pop()
            name = node.name() if callable(node.name) else node.name
            aten = name.startswith("aten::")
            if aten:
                total += 1
                top += not inside
            stack.extend((c, inside or aten) for c in node.children)
        return total, top
    for ev in prof.events():
        if not ev.name.startswith("aten::"):
            continue
        total += 1
        parent = ev.cpu_parent
        while parent is not None and not parent.name.startswith("aten::"):
            parent = parent.cpu_parent
        top += parent is None
    return total, top


def build(args):
    """The benchmark's supernet, optimizers and two batches, after `args.warmup` steps."""
    one_thread()
    torch.manual_seed(args.seed)
    depth, nodes, k = args.depth, args.nodes, args.k
    edges = nodes * (nodes + 3) // 2
    active = prune_to_one(depth, edges) if args.variant == "pruned" else all_ops(depth, edges)
    model = Supernet(depth, args.base, 1, args.classes, nodes, k, active)
    init_like_trainer(model)
    freeze_backbone(model)
    w_opt, a_opt = optimizers(model)
    batches = [
        (torch.randn(args.batch, 1, args.size, args.size), torch.randint(0, args.classes, (args.batch, args.size, args.size)))
        for _ in range(2)
    ]
    for _ in range(args.warmup):
        search_step(model, w_opt, a_opt, batches[0], batches[1])
    return model, w_opt, a_opt, batches


def serve(args):
    """One step per "step" line on stdin, its CPU and wall ms as a JSON line on stdout;
    "ready" (a JSON line) once warmed up; ends at "quit" or end of input. The benchmark
    interleaves these steps with its own, so both see the same machine."""
    model, w_opt, a_opt, batches = build(args)
    print(json.dumps({"ready": True, "engine": f"pytorch {torch.__version__}", "warmup": args.warmup}), flush=True)
    for line in sys.stdin:
        if line.strip() != "step":
            break
        c0, t0 = time.process_time(), time.perf_counter()
        losses = search_step(model, w_opt, a_opt, batches[0], batches[1])
        float(losses[1])
        print(json.dumps({"cpuMs": (time.process_time() - c0) * 1000, "ms": (time.perf_counter() - t0) * 1000}), flush=True)


def bench(args):
    model, w_opt, a_opt, batches = build(args)
    c0, t0 = time.process_time(), time.perf_counter()
    for _ in range(args.steps):
        losses = search_step(model, w_opt, a_opt, batches[0], batches[1])
        float(losses[1])
    cpu_ms = (time.process_time() - c0) * 1000 / args.steps
    wall_ms = (time.perf_counter() - t0) * 1000 / args.steps
    out = {
        "engine": f"pytorch {torch.__version__}",
        "python": sys.version.split()[0],
        "threads": {"intraOp": torch.get_num_threads(), "interOp": torch.get_num_interop_threads()},
        "mkldnn": torch.backends.mkldnn.is_available(),
        "size": args.size,
        "batch": args.batch,
        "variant": args.variant,
        "steps": args.steps,
        "warmup": args.warmup,
        "cpuMsPerStep": round(cpu_ms, 1),
        "msPerStep": round(wall_ms, 1),
        "parameters": {
            "cells": sum(p.numel() for p in model.cell_parameters()),
            "backbone": sum(p.numel() for p in model.backbone_parameters()),
            "arch": sum(p.numel() for p in model.arch_parameters()),
        },
        "loss": [float(l) for l in losses[:2]],
    }
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            search_step(model, w_opt, a_opt, batches[0], batches[1])
        total, top = count_aten(prof)
        out["atenOpsPerStep"] = top
        out["atenOpsPerStepAllLevels"] = total
    print(json.dumps(out))


# ---------------------------------------------------------------- check


def load_dir(d):
    with open(os.path.join(d, "manifest.json")) as f:
        manifest = json.load(f)
    with open(os.path.join(d, "data.bin"), "rb") as f:
        blob = f.read()
    tensors = {}
    for name, t in manifest["tensors"].items():
        dtype = torch.int32 if t["dtype"] == "int32" else torch.float32
        n = math.prod(t["shape"])
        arr = torch.frombuffer(bytearray(blob[t["offset"] : t["offset"] + 4 * n]), dtype=dtype).clone()
        tensors[name] = arr.reshape(t["shape"])
    return manifest, tensors


class Mapping:
    """Our (tfjs) weight names and layouts to the twin's parameters."""

    def __init__(self, model, cfg):
        self.model = model
        self.cfg = cfg

    def out_rows(self, l):
        """Our cell output kernel reads the nodes unshuffled, rows [operated channels of
        every node | bypass channels of every node] (trainer/src/model/cell.ts); the
        twin's reads the concatenated shuffled nodes. Row of ours for each twin input."""
        c = self.cfg["base"] * 2**l
        k, n = self.cfg["k"], self.cfg["nodes"]
        cp, cb = c // k, c - c // k
        rows = []
        for j in range(n):
            for t in range(c):
                src = (t % k) * cp + t // k  # the shuffle: shuffled[t] = unshuffled[src]
                rows.append(j * cp + src if src < cp else n * cp + j * cb + (src - cp))
        return torch.tensor(rows)

    def resolve(self, name):
        """(twin tensor, f: ours -> twin layout) for our weight `name`, or None when the
        twin has no such weight (an operation pruned away)."""
        m = self.model
        parts = name.split("/")
        conv = lambda t: t.permute(3, 2, 0, 1)  # [kh, kw, in, out] -> [out, in, kh, kw]
        dw = lambda t: t.permute(2, 3, 0, 1)  # [kh, kw, c, 1] -> [c, 1, kh, kw]
        pw = lambda t: t.t()[:, :, None, None]  # [in, out] -> [out, in, 1, 1]
        if parts[0] == "arch":
            l = int(parts[1][len("cell") :])
            return (m._alphas[l] if parts[2] == "alphas" else m._betas[l]), (lambda t: t)
        if parts[0] == "head":
            return (m.head.weight, pw) if parts[1] == "kernel" else (m.head.bias, lambda t: t)
        if parts[0].startswith("up"):
            return m.ups[int(parts[0][2:])].weight, pw
        if parts[0].startswith("enc") or parts[0].startswith("dec") or parts[0] == "bottleneck":
            block = m.bottleneck if parts[0] == "bottleneck" else (m.encoders if parts[0].startswith("enc") else m.decoders)[int(parts[0][3:])]
            if parts[1].startswith("conv"):
                return getattr(block, parts[1]).weight, conv
            normp = getattr(block, parts[1])
            return (normp.weight if parts[2] == "gamma" else normp.bias), (lambda t: t)
        if parts[0].startswith("cell"):
            l = int(parts[0][4:])
            cell = m.cells[l]
            if parts[1] == "pre0":
                return cell.preprocess0.op[1].weight, pw
            if parts[1] == "pre1":
                return cell.preprocess1.op[1].weight, pw
            if parts[1] == "out":
                rows = self.out_rows(l)
                return cell.out.weight, (lambda t: t[rows].t()[:, :, None, None])
            if parts[1].startswith("edge"):
                e = int(parts[1][4:])
                op = parts[2]
                mixed = cell.edges[e]
                if op not in mixed.ops:
                    return None
                seq = mixed.ops[op].op
                part = parts[3]
                if part == "kernel":
                    return seq[1].weight, conv
                index = {"dw": 1, "pw": 2, "dw1": 1, "pw1": 2, "dw2": 5, "pw2": 6}[part]
                return seq[index].weight, (dw if part.startswith("dw") else pw)
        raise KeyError(f"no twin weight for {name}")


def compare(ours, twin):
    """Max |difference| and max |value| of two tensors of the same layout."""
    ours = ours.to(torch.float64)
    twin = twin.detach().to(torch.float64)
    if tuple(ours.shape) != tuple(twin.shape):
        raise ValueError(f"shapes differ: ours {list(ours.shape)}, twin {list(twin.shape)}")
    return {"maxAbsDiff": float((ours - twin).abs().max()), "maxAbs": float(ours.abs().max()), "size": ours.numel()}


def check(args):
    one_thread()
    torch.manual_seed(0)
    manifest, t = load_dir(args.dir)
    cfg = manifest["config"]
    edges = cfg["nodes"] * (cfg["nodes"] + 3) // 2
    model = Supernet(cfg["depth"], cfg["base"], cfg["inChannels"], cfg["classes"], cfg["nodes"], cfg["k"], cfg["active"])
    freeze_backbone(model)
    mapping = Mapping(model, cfg)
    twin_params = {id(p): n for n, p in model.named_parameters()}
    for i, a in enumerate(model._alphas):
        twin_params[id(a)] = f"arch alphas {i}"
    for i, b in enumerate(model._betas):
        twin_params[id(b)] = f"arch betas {i}"
    loaded = set()
    unused = []
    resolved = {}
    with torch.no_grad():
        for name in manifest["weights"]:
            r = mapping.resolve(name)
            if r is None:
                unused.append(name)
                continue
            p, f = r
            v = f(t[f"w/{name}"])
            if tuple(v.shape) != tuple(p.shape):
                raise ValueError(f"{name}: ours has shape {list(v.shape)} in the twin's layout, the twin {list(p.shape)}")
            if id(p) in loaded:
                raise ValueError(f"{name}: a second weight for twin parameter {twin_params[id(p)]}")
            p.copy_(v)
            loaded.add(id(p))
            resolved[name] = (p, f)
    missing = [n for i, n in twin_params.items() if i not in loaded]

    def nchw(x):
        return x.permute(0, 3, 1, 2).contiguous()

    batch_w = (nchw(t["x/weights"]), t["y/weights"].long())
    batch_a = (nchw(t["x/arch"]), t["y/arch"].long())
    report = {
        "torch": torch.__version__,
        "parameters": {
            "cells": sum(p.numel() for p in model.cell_parameters()),
            "backbone": sum(p.numel() for p in model.backbone_parameters()),
            "arch": sum(p.numel() for p in model.arch_parameters()),
        },
        "missing": missing,
        "unused": unused,
        "pruneToOneMatches": cfg["active"] == prune_to_one(cfg["depth"], edges),
        "tensors": {},
    }
    # The loss of batch_w and its gradients with respect to every cell weight, alpha and beta.
    logits = model(batch_w[0])
    loss = seg_loss(logits, batch_w[1])
    report["tensors"]["logits"] = compare(t["logits"], logits.permute(0, 2, 3, 1))
    report["tensors"]["loss"] = compare(t["loss"], loss.reshape(1))
    trainable = model.cell_parameters() + model.arch_parameters()
    grads = torch.autograd.grad(loss, trainable, allow_unused=True)
    by_param = {id(p): g for p, g in zip(trainable, grads)}
    for name in manifest["grads"]:
        if name not in resolved:
            raise ValueError(f"ours has a gradient for {name}, which the twin does not have")
        p, f = resolved[name]
        g = by_param.get(id(p))
        if g is None:
            g = torch.zeros_like(p)
        report["tensors"][f"grad/{name}"] = compare(f(t[f"grad/{name}"]), g)
    # One search step (architecture Adam step on batch_a, weights SGD step on batch_w).
    before = {name: p.detach().clone() for name, (p, f) in resolved.items()}
    w_opt, a_opt = optimizers(model)
    grad_clip = cfg.get("gradClip", GRAD_CLIP)
    losses = search_step(model, w_opt, a_opt, batch_w, batch_a, grad_clip)
    report["gradClip"] = grad_clip
    report["weightsGradNorm"] = float(losses[2])
    report["tensors"]["step/loss/arch"] = compare(t["step/loss/arch"], losses[0].reshape(1))
    report["tensors"]["step/loss/weights"] = compare(t["step/loss/weights"], losses[1].reshape(1))
    for name in manifest["after"]:
        p, f = resolved[name]
        ours_after = f(t[f"after/{name}"])
        report["tensors"][f"after/{name}"] = compare(ours_after, p)
        # The update itself, held to its own scale.
        update = compare(ours_after.double() - before[name].double(), p.detach().double() - before[name].double())
        # An update is resolved only to the float32 spacing of the weight it is added to.
        update["weightMaxAbs"] = float(before[name].abs().max())
        report["tensors"][f"update/{name}"] = update
    print(json.dumps(report))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    b = sub.add_parser("bench")
    b.add_argument("--size", type=int, default=32)
    b.add_argument("--batch", type=int, default=8)
    b.add_argument("--variant", choices=["full", "pruned"], default="full")
    b.add_argument("--steps", type=int, default=3)
    b.add_argument("--warmup", type=int, default=1, help="untimed steps before the timed ones")
    b.add_argument("--depth", type=int, default=3)
    b.add_argument("--base", type=int, default=16)
    b.add_argument("--nodes", type=int, default=4)
    b.add_argument("--k", type=int, default=4)
    b.add_argument("--classes", type=int, default=4)
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--no-profile", dest="profile", action="store_false", help="skip the untimed profiled step (no aten op count)")
    v = sub.add_parser("serve")
    for name, default in [("--size", 32), ("--batch", 8), ("--warmup", 1), ("--depth", 3), ("--base", 16), ("--nodes", 4), ("--k", 4), ("--classes", 4), ("--seed", 0)]:
        v.add_argument(name, type=int, default=default)
    v.add_argument("--variant", choices=["full", "pruned"], default="full")
    c = sub.add_parser("check")
    c.add_argument("dir")
    args = parser.parse_args()
    if args.mode == "bench":
        bench(args)
    elif args.mode == "serve":
        serve(args)
    else:
        check(args)


if __name__ == "__main__":
    main()
