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
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

_ACTIVE: contextvars.ContextVar[bool] = contextvars.ContextVar("nvembed_int8_active", default=False)
# The real (non-padding) tokens of the batch being encoded: ((B, T), flat indices of the real tokens), or None.
_TOKENS: contextvars.ContextVar[tuple[tuple[int, ...], torch.Tensor] | None] = contextvars.ContextVar(
    "nvembed_int8_tokens", default=None)
THREADS_ENV = "NVEMBED_INT8_THREADS"  # onnxruntime threads per layer; default: torch's thread count
# A row (token) whose largest |activation| exceeds this many times the median row's is computed in float:
# one per-tensor activation scale would otherwise be set by a few "massive activation" tokens (BOS and some
# punctuation in a decoder's early MLPs reach 20x the median) and flatten every other token to a few levels.
OUTLIER_RATIO = 8.0


def available() -> bool:
    """True when onnxruntime (the int8 kernels) is installed."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


@contextlib.contextmanager
def int8_inference(enabled: bool = True) -> Iterator[None]:
    """Inside this block (this thread or task only), `Int8Linear` layers compute in int8."""
    token = _ACTIVE.set(enabled)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


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
        tokens = (tuple(attention_mask.shape), attention_mask.reshape(-1).nonzero().squeeze(1))
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

    def __call__(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """(..., in) float CPU tensor -> (..., out); outlier rows go through `weight` and `bias` in float.

        Inside `skip_padding(mask)`, an input shaped (B, T, in) like the mask has only its real rows computed.
        """
        lead = x.shape[:-1]
        rows = x.reshape(-1, self.in_features).to(torch.float32)
        if rows.shape[0] == 0:
            return x.new_zeros(*lead, self.out_features)
        tokens = _TOKENS.get()
        if tokens is not None and tuple(lead) == tokens[0]:
            y = rows.new_zeros(rows.shape[0], self.out_features)
            y.index_copy_(0, tokens[1], self.rows(rows.index_select(0, tokens[1]), weight, bias))
            return y.view(*lead, self.out_features).to(x.dtype)
        return self.rows(rows, weight, bias).view(*lead, self.out_features).to(x.dtype)

    def rows(self, rows: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """(n, in) float32 -> (n, out) float32; rows far above the median row's peak are computed in float."""
        peaks = torch.maximum(rows.amax(dim=1), rows.amin(dim=1).neg_())  # |x| max per row, no copy of x
        outliers = peaks > OUTLIER_RATIO * peaks.median()
        if not bool(outliers.any()):
            y = self.matmul(rows)
        else:
            keep = (~outliers).nonzero().squeeze(1)
            wide = outliers.nonzero().squeeze(1)
            y = rows.new_empty(rows.shape[0], self.out_features)
            y[keep] = self.matmul(rows.index_select(0, keep))
            y[wide] = torch.nn.functional.linear(rows.index_select(0, wide), weight.float(),
                                                 None if bias is None else bias.float())
        return y


def _version_key(*tensors: torch.Tensor | None) -> tuple:
    """Changes when a tensor is modified in place or replaced (inference tensors cannot change in place)."""
    return tuple(None if t is None else (None if t.is_inference() else t._version, t.data_ptr(), tuple(t.shape))
                 for t in tensors)


class Int8Linear(nn.Linear):
    """An `nn.Linear` that computes in int8 inside `int8_inference()` (no grad, CPU), in float elsewhere."""

    _int8_kernel: Int8Kernel | None = None
    _int8_key: tuple | None = None

    def int8_kernel(self) -> Int8Kernel:
        """The int8 twin of the current weights, (re)built when they changed."""
        key = _version_key(self.weight, self.bias)
        if self._int8_kernel is None or self._int8_key != key:
            self._int8_kernel = Int8Kernel(self.weight, self.bias)
            self._int8_key = key
        return self._int8_kernel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _ACTIVE.get() and x.device.type == "cpu" and not torch.is_grad_enabled():
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


def enable_int8(module: nn.Module) -> int:
    """Turn every plain `nn.Linear` under `module` into an `Int8Linear` in place; returns how many.

    Parameters and state-dict keys are unchanged, so this is safe on a model that is later trained or saved.
    """
    count = 0
    for sub in module.modules():
        if type(sub) is nn.Linear:
            sub.__class__ = Int8Linear
            count += 1
    return count


def build_kernels(module: nn.Module) -> int:
    """Build every `Int8Linear`'s twin now (instead of at first use); returns how many."""
    layers = [m for m in module.modules() if isinstance(m, Int8Linear)]
    for layer in layers:
        layer.int8_kernel()
    return len(layers)
