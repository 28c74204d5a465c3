"""Block-wise weight-only quantization (4 or 8 bits) of MatMul/Gemm weights into ONNX Runtime's MatMulNBits.

The integer weights are computed here (not by ORT's C++ RTN kernel) so that rounding can minimise each layer's
output error on calibration data:

- `rtn`: round to nearest, block min-max (or absmax) ranges: the plain baseline;
- `clip`: round to nearest with a per-block clipping ratio chosen to minimise the block's output error
  sum_k E[x_k^2] (w_k - q(w_k))^2 (activation-weighted, from the calibration data);
- `gptq`: GPTQ (Frantar et al. 2022): columns quantized in order, each one's error spread over the columns not
  yet quantized through the inverse Hessian H = E[x x^T] of the layer's input; per-block ranges as in `clip`.

The result is packed in MatMulNBits' layout: B uint8 [N, K/block, block*bits/8] (row n = column n of the
weight, low nibble first), scales [N, K/block], zero points (asymmetric only) packed the same way; symmetric
blocks use ORT's implied zero point 2^(bits-1). `pack`/`dequantize` are exact inverses (tested against ORT).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

ALGORITHMS = ("auto", "rtn", "clip", "gptq")
BLOCK_SIZES = (16, 32, 64, 128, 256)
CLIP_RATIOS = (1.0, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6)
GPTQ_DAMP = 0.01
GPTQ_LAZY = 128  # columns updated together (a multiple of every block size up to 128)


@dataclass(frozen=True)
class BlockQuant:
    """Integer weights of one [K, N] matrix, stored transposed as MatMulNBits reads them."""

    q: np.ndarray  # uint8 [N, blocks, block]: values 0 .. 2^bits - 1
    scale: np.ndarray  # float32 [N, blocks]
    zero: np.ndarray | None  # uint8 [N, blocks]; None = symmetric (implied zero point 2^(bits-1))
    bits: int
    block: int
    k: int  # rows of the original weight (K); the padding beyond it is zero

    def dequantize(self) -> np.ndarray:
        """The [K, N] float32 weight the quantized node computes with."""
        q = self.q.astype(np.float32)
        if self.zero is not None:
            w = q - self.zero.astype(np.float32)[..., None]
        else:
            w = q - np.float32(2 ** (self.bits - 1))
        w = w * self.scale[..., None]
        n = w.shape[0]
        return np.ascontiguousarray(w.reshape(n, -1)[:, : self.k].T)

    @property
    def nbytes(self) -> int:
        n, nb, blk = self.q.shape
        zp = 0 if self.zero is None else n * -(-nb * self.bits // 8)
        return n * nb * blk * self.bits // 8 + self.scale.size * 4 + zp


def _blocks(w: np.ndarray, block: int) -> np.ndarray:
    """[K, N] -> [N, blocks, block], zero-padded along K."""
    k, n = w.shape
    nb = -(-k // block)
    wt = np.zeros((n, nb * block), dtype=np.float64)
    wt[:, :k] = w.T
    return wt.reshape(n, nb, block)


def _ranges(x: np.ndarray, bits: int, sym: bool, ratio: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scale and zero point of each block of x [..., block] at the clipping `ratio`."""
    top = 2 ** bits - 1
    if sym:
        # ORT's convention: the element of largest magnitude maps to -2^(bits-1) exactly (one more level)
        idx = np.abs(x).argmax(axis=-1)[..., None]
        m = np.take_along_axis(x, idx, axis=-1)[..., 0] * ratio
        scale = m / -(2 ** (bits - 1))
        zero = np.full(scale.shape, 2 ** (bits - 1), dtype=np.float64)
    else:
        lo = np.minimum(x.min(axis=-1), 0.0) * ratio
        hi = np.maximum(x.max(axis=-1), 0.0) * ratio
        scale = (hi - lo) / top
        zero = np.clip(np.round(-lo / np.where(scale == 0, 1, scale)), 0, top)
    return scale, zero


def _round(x: np.ndarray, scale: np.ndarray, zero: np.ndarray, bits: int) -> np.ndarray:
    safe = np.where(scale == 0, 1.0, scale)
    return np.clip(np.round(x / safe[..., None] + zero[..., None]), 0, 2 ** bits - 1)


def _best_ranges(x: np.ndarray, weight: np.ndarray | None, bits: int, sym: bool,
                 ratios: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Per block, the clipping ratio of `ratios` with the least (activation-weighted) squared error."""
    best_err: np.ndarray | None = None
    best_s = best_z = np.zeros(0)
    for r in ratios:
        s, z = _ranges(x, bits, sym, r)
        deq = (_round(x, s, z, bits) - z[..., None]) * s[..., None]
        e = (x - deq) ** 2
        err = (e * weight).sum(-1) if weight is not None else e.sum(-1)
        if best_err is None:
            best_err, best_s, best_z = err, s, z
        else:
            better = err < best_err
            best_err = np.where(better, err, best_err)
            best_s, best_z = np.where(better, s, best_s), np.where(better, z, best_z)
    return best_s, best_z


def _finish(q: np.ndarray, scale: np.ndarray, zero: np.ndarray, bits: int, block: int, k: int,
            sym: bool) -> BlockQuant:
    return BlockQuant(q.astype(np.uint8), scale.astype(np.float32), None if sym else zero.astype(np.uint8),
                      bits, block, k)


def quantize_rtn(w: np.ndarray, bits: int, block: int, sym: bool, *, hdiag: np.ndarray | None = None,
                 clip: bool = False) -> BlockQuant:
    """Round to nearest; with `clip`, per-block clipping chosen by the error weighted with hdiag = E[x_k^2]."""
    x = _blocks(w, block)
    weight = None
    if hdiag is not None:
        d = np.zeros(x.shape[1] * block)
        d[: w.shape[0]] = hdiag
        weight = d.reshape(1, x.shape[1], block)
    s, z = _best_ranges(x, weight, bits, sym, CLIP_RATIOS if clip else (1.0,))
    return _finish(_round(x, s, z, bits), s, z, bits, block, w.shape[0], sym)


def quantize_gptq(w: np.ndarray, hessian: np.ndarray, bits: int, block: int, sym: bool) -> BlockQuant:
    """GPTQ with one range per block, chosen (clip search) on the block's weights as updated so far."""
    k, n = w.shape
    nb = -(-k // block)
    kp = nb * block
    W = np.zeros((n, kp))
    W[:, :k] = w.T
    H = np.zeros((kp, kp))
    H[:k, :k] = hessian
    dead = np.diag(H) <= 0
    H[dead, dead] = 1.0
    W[:, dead] = 0.0
    H += np.eye(kp) * GPTQ_DAMP * float(np.mean(np.diag(H)))
    hdiag = np.diag(H).copy()
    try:
        hinv = np.linalg.cholesky(np.linalg.inv(H)).T  # upper Cholesky factor of H^-1
    except np.linalg.LinAlgError:
        return quantize_rtn(w, bits, block, sym, hdiag=hdiag[:k], clip=True)
    q = np.zeros((n, kp))
    scale = np.zeros((n, nb))
    zero = np.zeros((n, nb))
    lazy = max(GPTQ_LAZY // block, 1) * block
    for i1 in range(0, kp, lazy):
        i2 = min(i1 + lazy, kp)
        W1 = W[:, i1:i2].copy()
        E1 = np.zeros_like(W1)
        h1 = hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            col = i1 + i
            if col % block == 0:
                g = col // block
                s, z = _best_ranges(W1[:, i:i + block][:, None, :], hdiag[col:col + block][None, None, :],
                                    bits, sym, CLIP_RATIOS)
                scale[:, g], zero[:, g] = s[:, 0], z[:, 0]
            g = col // block
            c = W1[:, i]
            qc = _round(c[:, None], scale[:, g], zero[:, g], bits)[:, 0]
            deq = (qc - zero[:, g]) * scale[:, g]
            q[:, col] = qc
            err = (c - deq) / h1[i, i]
            W1[:, i:] -= np.outer(err, h1[i, i:])
            E1[:, i] = err
        W[:, i2:] -= E1 @ hinv[i1:i2, i2:]
    return _finish(q.reshape(n, nb, block), scale, zero, bits, block, k, sym)


def output_error(w: np.ndarray, bq: BlockQuant, hessian: np.ndarray | None) -> float:
    """Relative output error of the layer: tr(E^T H E) / tr(W^T H W) with E = W - deq(W) (H = E[x x^T])."""
    e = w.astype(np.float64) - bq.dequantize()
    if hessian is None:
        return float((e ** 2).sum() / max((w.astype(np.float64) ** 2).sum(), 1e-30))
    num = float(np.einsum("kn,kj,jn->", e, hessian, e))
    den = float(np.einsum("kn,kj,jn->", w, hessian, w))
    return num / max(den, 1e-30)


# ------------------------------------------------------------------------------------------------ packing
def pack(bq: BlockQuant) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """MatMulNBits inputs B, scales, zero_points (None when symmetric)."""
    n, nb, blk = bq.q.shape
    if bq.bits == 8:
        packed = bq.q.copy()
        zp = bq.zero.copy() if bq.zero is not None else None
    else:
        packed = (bq.q[..., 0::2] | (bq.q[..., 1::2] << 4)).astype(np.uint8)
        zp = None
        if bq.zero is not None:
            z = bq.zero
            if nb % 2:
                z = np.concatenate([z, np.zeros((n, 1), dtype=np.uint8)], axis=1)
            zp = (z[:, 0::2] | (z[:, 1::2] << 4)).astype(np.uint8)
    return np.ascontiguousarray(packed), np.ascontiguousarray(bq.scale), zp


def matmulnbits_node(name: str, a: str, out: str, bq: BlockQuant, n: int, *, accuracy_level: int,
                     bias: str | None = None) -> tuple[onnx.NodeProto, list[onnx.TensorProto]]:
    """A MatMulNBits node for `bq` and its initializers (named after the node)."""
    b, scales, zp = pack(bq)
    inits = [numpy_helper.from_array(b, f"{name}_B{bq.bits}"), numpy_helper.from_array(scales, f"{name}_scales")]
    inputs = [a, inits[0].name, inits[1].name]
    if zp is not None:
        inits.append(numpy_helper.from_array(zp, f"{name}_zero_points"))
        inputs.append(inits[-1].name)
    if bias is not None:
        inputs += [""] * (5 - len(inputs)) + [bias]
    attrs: dict[str, Any] = {"K": bq.k, "N": n, "bits": bq.bits, "block_size": bq.block}
    if accuracy_level:
        attrs["accuracy_level"] = accuracy_level
    node = helper.make_node("MatMulNBits", inputs, [out], name=name, domain="com.microsoft", **attrs)
    return node, inits
