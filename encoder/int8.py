"""int8 linear layers for CPU inference, run by onnxruntime's quantised matrix-product kernel.

Why this file exists: on a CPU nearly all of the encoder's time is its linear layers (float32 matrix
products, already near what these cores give), so the next factor comes from int8 arithmetic. The routes
measured on torch 2.13 (one core, AVX2, a 576 -> 1536 layer on 3,200 tokens; docs/benchmarks.md):

- torch's own `torch.ao.quantization.quantize_dynamic` is fast (1.6x float32) but deprecated in 2.13, and
  so are the quantised tensors it is built on;
- torchao 0.18 (`Int8DynamicActivationInt8WeightConfig`) is 35x *slower* than float32 in eager mode on
  a CPU, and `torch._int_mm` 58x slower;
- onnxruntime's `DynamicQuantizeMatMul` (MLAS kernels, prepacked int8 weights) is 1.9x faster than float32.

How it works: `enable_int8(module)` turns every `nn.Linear` inside into an `Int8Linear` (same parameters,
same state-dict keys, still an `nn.Linear`), so training, saving and the model fingerprint see float32
weights as before. An `Int8Linear` runs its int8 twin only inside `int8_inference()`, which the encoder's
`encode_*` methods enter, with gradients off and on a CPU tensor; everywhere else it is a float linear layer.
The twin is built on first use: the weight quantised symmetrically per output channel (scale =
max |w| / 127), in a one-node onnxruntime graph; activations are quantised per call (per tensor, uint8,
asymmetric) by the kernel. A weight changed after that (a training step, `load_state_dict`) is noticed by
its version counter and storage pointer, and the twin is rebuilt at its next use.

Fused products: in a recognised Llama/Mistral/Qwen2 decoder layer, q/k/v projections (attention) and
gate/up (MLP) always read the same input, so `enable_int8` groups them (`FusedProducts`): the first member
called computes all of them as one int8 product (weights concatenated along the output dimension), and the
others take their slice of it. With per-output-channel weight scales and one activation scale per call
(that of the shared input), that is the separate products to float rounding, at one activation
quantisation, one outlier-row scan, one padding gather and one kernel call instead of three (or two).
Anything not recognised keeps its separate layers.

Packed MLPs: a recognised MLP acts on each token alone, so inside `skip_padding` it runs once on the batch's
real rows, packed (N, d), and only its output is scattered back to the padded (B, T, d) layout: its wide
intermediate tensors (gate, up, their product) are never scattered into padding and gathered again, and
the activation and product skip the padding rows. The same rows and scales as before, so the same results.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import os
import threading
import types
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

_ACTIVE: contextvars.ContextVar[bool] = contextvars.ContextVar("nvembed_int8_active", default=False)
_RATIO: contextvars.ContextVar[float | None] = contextvars.ContextVar("nvembed_int8_outlier_ratio", default=None)


class _Tokens(NamedTuple):
    """The batch being encoded: its (B, T) shape and the flat indices of its real and padding tokens."""

    shape: tuple[int, ...]
    real: torch.Tensor
    pad: torch.Tensor


_TOKENS: contextvars.ContextVar[_Tokens | None] = contextvars.ContextVar("nvembed_int8_tokens", default=None)
THREADS_ENV = "NVEMBED_INT8_THREADS"  # onnxruntime threads per layer; default: torch's thread count
# A row (token) whose largest |activation| exceeds this many times the median row's is computed in float:
# one per-tensor activation scale would otherwise be set by a few "massive activation" tokens (BOS and some
# punctuation in a decoder's early MLPs reach 20x the median) and flatten every other token to a few levels.
# The threshold is model-dependent: each model's is chosen with its int8 cost (docs/benchmarks.md, "Quality
# cost of int8") and kept with its measurement (`encoder.model.INT8_MEASURED`); this is the value for a
# model without one (the fourth session's default needed 3: its CISI cost at 4 was 0.0106).
OUTLIER_RATIO = 3.0
# A linear layer's float weight, or the parts of a fused product's (in output order); the same for biases.
Weights = torch.Tensor | Sequence[torch.Tensor]
Biases = torch.Tensor | Sequence[torch.Tensor | None] | None


def available() -> bool:
    """True when onnxruntime (the int8 kernels) is installed."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def check_outlier_ratio(ratio: float | None, name: str = "outlier_ratio") -> None:
    """Refuse a ratio that is not above 1 (a row's peak over the median row's; None means the default)."""
    if ratio is not None and not ratio > 1.0:
        raise ValueError(f"{name} must be above 1 (a row's peak over the median row's), got {ratio}")


@contextlib.contextmanager
def int8_inference(enabled: bool = True, outlier_ratio: float | None = None) -> Iterator[None]:
    """Inside this block (this thread or task only), `Int8Linear` layers compute in int8, rows whose peak is
    over `outlier_ratio` times the median row's in float (None: `OUTLIER_RATIO`)."""
    check_outlier_ratio(outlier_ratio)
    token, ratio = _ACTIVE.set(enabled), _RATIO.set(outlier_ratio)
    try:
        yield
    finally:
        _ACTIVE.reset(token)
        _RATIO.reset(ratio)


@contextlib.contextmanager
def skip_padding(attention_mask: torch.Tensor | None) -> Iterator[None]:
    """Inside this block, `Int8Linear` layers whose input is token-aligned with `attention_mask` (B, T) compute
    only the real tokens' rows and give padding rows zeros (None: every row, as outside the block).

    Exact for the real tokens of an encoder: a linear layer, a norm and an MLP act on each token alone, and
    attention masks padding keys out, so no real token ever reads a padding row. Padding is then nearly free
    in the linear layers (the bulk of the work), which matters for an ingest's short batches of mixed
    lengths; attention itself still sees the padded batch.
    """
    tokens = None
    if attention_mask is not None and attention_mask.dim() == 2 and not bool(attention_mask.all()):
        flat = attention_mask.reshape(-1) != 0
        tokens = _Tokens(tuple(attention_mask.shape), flat.nonzero().squeeze(1), (~flat).nonzero().squeeze(1))
    token = _TOKENS.set(tokens)
    try:
        yield
    finally:
        _TOKENS.reset(token)


def quantize_weight(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(out, in) float weight -> (out, in) int8 values and (out,) float32 scales, symmetric per row."""
    w = weight.detach().to("cpu", torch.float32)
    scale = (w.abs().amax(dim=1) / 127.0).clamp_min(torch.finfo(torch.float32).tiny)
    q = torch.round(w / scale[:, None]).clamp_(-127, 127).to(torch.int8)
    return q, scale


def _threads() -> int:
    value = os.environ.get(THREADS_ENV)
    if value:
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"{THREADS_ENV} must be a positive integer, got {value!r}")
        return int(value)
    return max(1, torch.get_num_threads())


class Int8Kernel:
    """One linear layer as an onnxruntime session: y = dequant(quant(x) @ W_int8) + bias."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, threads: int | None = None):
        import onnxruntime as ort
        from onnx import TensorProto, helper, numpy_helper

        q, scale = quantize_weight(weight)
        self.out_features, self.in_features = q.shape
        inits = [
            numpy_helper.from_array(np.ascontiguousarray(q.T.numpy()), "B"),  # (in, out): MatMul's B
            numpy_helper.from_array(scale.numpy(), "b_scale"),
            numpy_helper.from_array(np.zeros(self.out_features, np.int8), "b_zero_point"),
        ]
        names = ["A", "B", "b_scale", "b_zero_point"]
        if bias is not None:
            inits.append(numpy_helper.from_array(bias.detach().to("cpu", torch.float32).numpy(), "bias"))
            names.append("bias")
        node = helper.make_node("DynamicQuantizeMatMul", names, ["Y"], domain="com.microsoft")
        graph = helper.make_graph(
            [node], "int8_linear",
            [helper.make_tensor_value_info("A", TensorProto.FLOAT, ["rows", self.in_features])],
            [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["rows", self.out_features])],
            inits,
        )
        proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                        helper.make_opsetid("com.microsoft", 1)])
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or _threads()
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # idle threads sleep
        self.session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])

    def matmul(self, rows: torch.Tensor) -> torch.Tensor:
        """(n, in) float32 -> (n, out) float32 through the int8 kernel, one activation scale for all rows."""
        if rows.shape[0] == 0:
            return rows.new_zeros(0, self.out_features)
        return torch.from_numpy(self.session.run(None, {"A": rows.contiguous().numpy()})[0])

    def __call__(self, x: torch.Tensor, weight: Weights, bias: Biases) -> torch.Tensor:
        """(..., in) float CPU tensor -> (..., out); outlier rows go through `weight` and `bias` in float.

        `weight` and `bias` may be sequences: the float parts of a fused product, in output order.
        Inside `skip_padding(mask)`, an input shaped (B, T, in) like the mask has only its real rows computed.
        """
        lead = x.shape[:-1]
        rows = x.reshape(-1, self.in_features).to(torch.float32)
        if rows.shape[0] == 0:
            return x.new_zeros(*lead, self.out_features)
        tokens = _TOKENS.get()
        if tokens is not None and tuple(lead) == tokens.shape:
            # Every row is written once: the real ones by the product, the padding ones with zeros (no
            # zero-filled buffer first: that was a full extra pass over the largest tensors).
            y = rows.new_empty(rows.shape[0], self.out_features)
            y.index_copy_(0, tokens.real, self.rows(rows.index_select(0, tokens.real), weight, bias, owned=True))
            y.index_fill_(0, tokens.pad, 0.0)
            return y.view(*lead, self.out_features).to(x.dtype)
        return self.rows(rows, weight, bias).view(*lead, self.out_features).to(x.dtype)

    def rows(self, rows: torch.Tensor, weight: Weights, bias: Biases, owned: bool = False) -> torch.Tensor:
        """(n, in) float32 -> (n, out) float32; rows far above the median row's peak are computed in float.

        The outlier rows are zeroed in the kernel's input rather than left out of it: the kernel's activation
        range always includes 0, so the scale of the other rows, and so their results, are the same, and
        the other rows need no gather and scatter. `owned`: `rows` is this call's own copy (zeroed in place).
        """
        # |x| max per row without a copy of x (amax and amin: torch.aminmax along rows is 6x slower here)
        peaks = torch.maximum(rows.amax(dim=1), rows.amin(dim=1).neg_())
        ratio = _RATIO.get()
        outliers = peaks > (OUTLIER_RATIO if ratio is None else ratio) * peaks.median()
        if not bool(outliers.any()):
            return self.matmul(rows)
        wide = outliers.nonzero().squeeze(1)
        exact = _float_linear(rows.index_select(0, wide), weight, bias)
        rows = rows if owned else rows.clone()
        y = self.matmul(rows.index_fill_(0, wide, 0.0))
        return y.index_copy_(0, wide, exact)


def _float_linear(rows: torch.Tensor, weight: Weights, bias: Biases) -> torch.Tensor:
    """The float product of `rows` with one weight or with the parts of a fused one (concatenated outputs)."""
    if isinstance(weight, torch.Tensor):
        return F.linear(rows, weight.float(), None if bias is None else bias.float())
    biases = [None] * len(weight) if bias is None else bias
    return torch.cat([F.linear(rows, w.float(), None if b is None else b.float())
                      for w, b in zip(weight, biases, strict=True)], dim=1)


def _version_key(*tensors: torch.Tensor | None) -> tuple:
    """Changes when a tensor is modified in place or replaced (inference tensors cannot change in place)."""
    return tuple(None if t is None else (None if t.is_inference() else t._version, t.data_ptr(), tuple(t.shape))
                 for t in tensors)


class Int8Linear(nn.Linear):
    """An `nn.Linear` that computes in int8 inside `int8_inference()` (no grad, CPU), in float elsewhere."""

    _int8_kernel: Int8Kernel | None = None
    _int8_key: tuple | None = None
    _int8_group: FusedProducts | None = None  # set by `enable_int8` for q/k/v and gate/up of a known decoder

    def int8_kernel(self) -> Int8Kernel:
        """The int8 twin of the current weights, (re)built when they changed."""
        key = _version_key(self.weight, self.bias)
        if self._int8_kernel is None or self._int8_key != key:
            self._int8_kernel = Int8Kernel(self.weight, self.bias)
            self._int8_key = key
        return self._int8_kernel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _ACTIVE.get() and x.device.type == "cpu" and not torch.is_grad_enabled():
            if self._int8_group is not None:
                return self._int8_group.output(self, x)
            return self.int8_kernel()(x, self.weight, self.bias)
        return super().forward(x)

    def __deepcopy__(self, memo: dict[int, Any]) -> Int8Linear:
        # onnxruntime sessions cannot be copied; the copy rebuilds its own twin on first use.
        clone = Int8Linear.__new__(Int8Linear)
        memo[id(self)] = clone
        for key, value in self.__dict__.items():
            if key not in ("_int8_kernel", "_int8_key"):
                clone.__dict__[key] = copy.deepcopy(value, memo)
        return clone

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_int8_kernel", None)
        state.pop("_int8_key", None)
        return state


class FusedProducts:
    """Int8 layers that always read the same input, computed as one int8 product (see the module docstring).

    The first member called with an input computes every member's output from it and keeps the others'
    until they are asked for with that same tensor object; a member called with any other tensor (or a
    second time) computes afresh, so a forward that does not follow the expected pattern is still exact,
    only slower. The kept outputs are released as they are taken.
    """

    def __init__(self, members: Sequence[Int8Linear]):
        self.members = list(members)
        self.sizes = [m.out_features for m in self.members]
        self._reset()

    def _reset(self) -> None:
        self._kernel: Int8Kernel | None = None
        self._key: tuple | None = None
        self._lock = threading.Lock()
        self._pending: tuple[torch.Tensor, dict[int, torch.Tensor]] | None = None  # (input, outputs not taken)

    def kernel(self) -> Int8Kernel:
        """One int8 kernel for all members (weights concatenated in member order), rebuilt when any changed."""
        key = _version_key(*(t for m in self.members for t in (m.weight, m.bias)))
        if self._kernel is None or self._key != key:
            weight = torch.cat([m.weight.detach() for m in self.members])
            bias = None if self.members[0].bias is None else torch.cat([m.bias.detach() for m in self.members])
            self._kernel, self._key = Int8Kernel(weight, bias), key
        return self._kernel

    def output(self, member: Int8Linear, x: torch.Tensor) -> torch.Tensor:
        """`member`'s output for `x`, from the fused product (computed now, or kept from a sibling's call)."""
        index = next(i for i, m in enumerate(self.members) if m is member)
        with self._lock:
            pending = self._pending
            if pending is not None and pending[0] is x and index in pending[1]:
                out = pending[1].pop(index)
                if not pending[1]:
                    self._pending = None
                return out
        fused = self.kernel()(x, [m.weight for m in self.members], None if member.bias is None else
                              [m.bias for m in self.members])
        outputs = fused.split(self.sizes, dim=-1)  # views: no copy
        with self._lock:
            self._pending = (x, {i: o for i, o in enumerate(outputs) if i != index})
        return outputs[index]

    def __getstate__(self) -> dict[str, Any]:
        return {"members": self.members, "sizes": self.sizes}  # no session, lock or kept tensors

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset()


# Modules whose forward feeds one input to several projections (transformers' Llama, Mistral and Qwen2:
# `q_proj(h)`, `k_proj(h)`, `v_proj(h)`; `down_proj(act(gate_proj(x)) * up_proj(x))`), by class and module.
FUSABLE = {
    ("transformers.models.llama.modeling_llama", "LlamaAttention"): ("q_proj", "k_proj", "v_proj"),
    ("transformers.models.mistral.modeling_mistral", "MistralAttention"): ("q_proj", "k_proj", "v_proj"),
    ("transformers.models.qwen2.modeling_qwen2", "Qwen2Attention"): ("q_proj", "k_proj", "v_proj"),
    ("transformers.models.llama.modeling_llama", "LlamaMLP"): ("gate_proj", "up_proj"),
    ("transformers.models.mistral.modeling_mistral", "MistralMLP"): ("gate_proj", "up_proj"),
    ("transformers.models.qwen2.modeling_qwen2", "Qwen2MLP"): ("gate_proj", "up_proj"),
}


MLPS = {key for key, names in FUSABLE.items() if names == ("gate_proj", "up_proj")}


def _packed_mlp_forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A recognised MLP's forward (`MLPS`, set on the instance by `enable_int8`): inside `skip_padding`, the
    class's own forward on the real rows only, scattered back with zeros in the padding rows."""
    tokens = _TOKENS.get()
    lead = tuple(x.shape[:-1])
    if tokens is None or lead != tokens.shape or not _ACTIVE.get() or torch.is_grad_enabled():
        return type(self).forward(self, x)
    out = type(self).forward(self, x.reshape(-1, x.shape[-1]).index_select(0, tokens.real))  # (N, d)
    y = out.new_empty(x.shape[:-1].numel(), out.shape[-1])
    y.index_copy_(0, tokens.real, out)
    y.index_fill_(0, tokens.pad, 0.0)
    return y.view(*lead, out.shape[-1])


def _is_packed(module: nn.Module) -> bool:
    return getattr(module.__dict__.get("forward"), "__func__", None) is _packed_mlp_forward


def _fusable(module: nn.Module) -> list[Int8Linear] | None:
    """The members of `module`'s fused product, or None when it is not a recognised attention or MLP."""
    names = FUSABLE.get((type(module).__module__, type(module).__name__))
    if names is None:
        return None
    members = [getattr(module, name, None) for name in names]
    if not all(type(m) is Int8Linear and m._int8_group is None for m in members):
        return None
    first = members[0]
    same = all(m.in_features == first.in_features and m.weight.dtype == first.weight.dtype
               and m.weight.device == first.weight.device and (m.bias is None) == (first.bias is None)
               for m in members)
    return members if same else None


def enable_int8(module: nn.Module, fuse: bool = True) -> int:
    """Turn every plain `nn.Linear` under `module` into an `Int8Linear` in place; returns how many.

    With `fuse`, the q/k/v and gate/up projections of recognised decoder layers (`FUSABLE`) are grouped into
    fused products, and their MLPs run packed inside `skip_padding` (see the module docstring). Parameters and state-dict keys are unchanged, so this is safe on a model that is later
    trained or saved.
    """
    count = 0
    for sub in module.modules():
        if type(sub) is nn.Linear:
            sub.__class__ = Int8Linear
            count += 1
    if fuse:
        for sub in module.modules():
            members = _fusable(sub)
            if members is not None:
                group = FusedProducts(members)
                for member in members:
                    member._int8_group = group
            if (type(sub).__module__, type(sub).__name__) in MLPS and not _is_packed(sub):
                sub.forward = types.MethodType(_packed_mlp_forward, sub)
    return count


def fused_groups(module: nn.Module) -> list[FusedProducts]:
    """The fused products under `module`, each once."""
    groups = {id(m._int8_group): m._int8_group for m in module.modules()
              if isinstance(m, Int8Linear) and m._int8_group is not None}
    return list(groups.values())


def unfuse(module: nn.Module) -> int:
    """Give every grouped `Int8Linear` under `module` its own product again, and MLPs their plain forward
    (padding skipped layer by layer); returns how many groups."""
    for sub in module.modules():
        if _is_packed(sub):
            del sub.__dict__["forward"]
    groups = fused_groups(module)
    for group in groups:
        for member in group.members:
            member.__dict__.pop("_int8_group", None)
    return len(groups)


def build_kernels(module: nn.Module) -> int:
    """Build every int8 kernel now (instead of at first use): one per fused product or ungrouped layer."""
    layers = [m for m in module.modules() if isinstance(m, Int8Linear) and m._int8_group is None]
    for layer in layers:
        layer.int8_kernel()
    groups = fused_groups(module)
    for group in groups:
        group.kernel()
    return len(layers) + len(groups)
