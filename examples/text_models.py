"""TinyGPT: a small GPT-style byte-level decoder language model with a KV cache, exportable to plain ONNX.

I/O (the same in PyTorch and in the exported ONNX model):
    input_ids  int64   [B, S]                    bytes 0..255 at absolute positions P .. P+S-1
    past       float32 [B, L, 2, H, P, Dh]       keys (index 0) and values (index 1) of the P earlier positions,
                                                 per layer L and head H; P = 0 (an empty past) for a prompt
 -> logits     float32 [B, S, 256]               logits[:, t] predicts the byte after input_ids[:, t]
    present    float32 [B, L, 2, H, P+S, Dh]     the cache to feed as `past` to the next step

Positions start at P = past.shape[4]; query i (absolute position P+i) sees keys 0 .. P+i. P+S <= max_context (256).
Attention is written with explicit MatMul / Softmax (no fused SDPA), so it exports to plain ONNX ops and a decode
step (S = 1) is one M=1 MatMul per weight. Trained by scripts/train_text_decoder.py on CPython's stdlib source.

Factories: `decoder()` (d_model 384, 6 layers, 6 heads: the real model) and `decoder_tiny()` (64, 2, 2: tests).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

VOCAB = 256


@dataclass(frozen=True)
class GPTConfig:
    d_model: int = 384
    n_layers: int = 6
    n_heads: int = 6
    max_context: int = 256
    vocab: int = VOCAB

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads


DEFAULT = GPTConfig()
TINY = GPTConfig(d_model=64, n_layers=2, n_heads=2)
CONFIGS = {"default": DEFAULT, "tiny": TINY}


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.h, self.dh = cfg.n_heads, cfg.head_dim
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)

    def forward(self, x: torch.Tensor, past_kv: torch.Tensor, mask: torch.Tensor):
        # x [B, S, D]; past_kv [B, 2, H, P, Dh]; mask [S, P+S] (True = may attend)
        b, s, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=-1)
        q = q.reshape(b, s, self.h, self.dh).transpose(1, 2)  # [B, H, S, Dh]
        k = k.reshape(b, s, self.h, self.dh).transpose(1, 2)
        v = v.reshape(b, s, self.h, self.dh).transpose(1, 2)
        k = torch.cat([past_kv[:, 0].to(k.dtype), k], dim=2)  # [B, H, P+S, Dh]
        v = torch.cat([past_kv[:, 1].to(v.dtype), v], dim=2)
        att = torch.matmul(q, k.transpose(-2, -1)) * (1.0 / math.sqrt(self.dh))  # [B, H, S, P+S]
        att = att.masked_fill(~mask, float("-inf"))
        att = torch.softmax(att.float(), dim=-1).to(v.dtype)
        y = torch.matmul(att, v).transpose(1, 2).reshape(b, s, d)
        return self.proj(y), torch.stack([k, v], dim=1)  # present [B, 2, H, P+S, Dh]


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.mlp = nn.Sequential(nn.Linear(cfg.d_model, 4 * cfg.d_model), nn.GELU(),
                                 nn.Linear(4 * cfg.d_model, cfg.d_model))

    def forward(self, x: torch.Tensor, past_kv: torch.Tensor, mask: torch.Tensor):
        a, present = self.attn(self.ln1(x), past_kv, mask)
        x = x + a
        return x + self.mlp(self.ln2(x)), present


class TinyGPT(nn.Module):
    """Byte-level decoder LM; forward(input_ids [B,S] int64, past [B,L,2,H,P,Dh]) -> (logits, present)."""

    def __init__(self, cfg: GPTConfig = DEFAULT) -> None:
        super().__init__()
        if cfg.d_model % cfg.n_heads:
            raise ValueError(f"d_model {cfg.d_model} is not a multiple of n_heads {cfg.n_heads}")
        self.config = cfg
        self.tok = nn.Embedding(cfg.vocab, cfg.d_model)
        self.pos = nn.Embedding(cfg.max_context, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab, bias=False)
        self.apply(self._init)
        for name, p in self.named_parameters():  # GPT-2: scale residual projections by depth
            if name.endswith(("attn.proj.weight", "mlp.2.weight")):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * cfg.n_layers))

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, 0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def forward(self, input_ids: torch.Tensor, past: torch.Tensor):
        s = input_ids.shape[1]
        p = past.shape[4]
        q_pos = torch.arange(s, device=input_ids.device) + p  # absolute positions P .. P+S-1
        k_pos = torch.arange(s + p, device=input_ids.device)
        mask = k_pos.unsqueeze(0) <= q_pos.unsqueeze(1)  # [S, P+S]
        x = self.tok(input_ids) + self.pos(q_pos).unsqueeze(0)
        presents = []
        for i, block in enumerate(self.blocks):
            x, present = block(x, past[:, i], mask)
            presents.append(present)
        logits = self.lm_head(self.ln_f(x))
        return logits.float(), torch.stack(presents, dim=1).float()


def past_shape(model_or_config: TinyGPT | GPTConfig, batch: int = 1, length: int = 0) -> tuple[int, ...]:
    cfg = model_or_config.config if isinstance(model_or_config, TinyGPT) else model_or_config
    return (batch, cfg.n_layers, 2, cfg.n_heads, length, cfg.head_dim)


def empty_past(model_or_config: TinyGPT | GPTConfig, batch: int = 1) -> np.ndarray:
    """An empty KV cache (P = 0) for `batch` sequences: float32 [batch, L, 2, H, 0, Dh]."""
    return np.zeros(past_shape(model_or_config, batch), dtype=np.float32)


def decoder() -> TinyGPT:
    """The real model: d_model 384, 6 layers, 6 heads (10.8M parameters); weights from train_text_decoder.py."""
    torch.manual_seed(0)
    return TinyGPT(DEFAULT)


def decoder_tiny() -> TinyGPT:
    """A tiny one for fast tests: d_model 64, 2 layers, 2 heads."""
    torch.manual_seed(0)
    return TinyGPT(TINY)
