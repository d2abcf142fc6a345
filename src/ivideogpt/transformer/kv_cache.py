"""Key/value cache for incremental decoding: one preallocated buffer per layer, shared length.

Keys are stored AFTER rotary embedding, so a cached key carries the absolute position it was computed
at. That makes pruning the middle of a cache incorrect (later keys would keep stale positions, and
hidden states of later tokens still reflect the dropped ones). The only pruning offered is therefore
`truncate`, which keeps a prefix: exact, because a causal model's prefix never depends on what follows.
Sliding a long rollout (sampling.py) truncates back to the context frames and re-encodes the kept future
frames once per slide.

Shared prefix: planning encodes one context and fans it out to many action samples (`select` with one
row repeated). Copying the context's keys into every row would make each decode step read them once per
row, and at batch 32+ that read is most of the step's time (bench/rollout.py's profile). Instead the
cached part becomes a shared prefix (1, H, P, hd) that every row attends to, read once per step, and the
rows store only what follows it. Rows then differ only after position P, so the prefix is never pruned:
`truncate` keeps at least P positions (sliding keeps the context, which is the prefix).
"""

from __future__ import annotations

import torch
from torch import Tensor


class KVCache:
    """Per-layer keys and values (B, H, capacity, head_dim), filled left to right.

    Buffers are allocated on the first `update`, with that call's batch size, dtype and device, so the
    cache follows autocast (bf16 keys under bf16 autocast) without being told; `dtype` stores them in
    another type instead (bf16 keys of a float32 model: half the bytes each decode step reads).
    """

    def __init__(self, num_layers: int, capacity: int, dtype: torch.dtype | None = None) -> None:
        if num_layers < 1 or capacity < 1:
            raise ValueError(f"KVCache: num_layers and capacity must be >= 1, got {num_layers}, {capacity}")
        self.num_layers = num_layers
        self.capacity = capacity  # most tokens the cache can hold
        self.dtype = dtype  # storage type of keys and values (None: that of the first `update`)
        self.length = 0  # tokens cached so far (the position of the next token)
        # per-row buffers (B, H, capacity - prefix_length, hd); position p lives at p - prefix_length
        self._keys: list[Tensor | None] = [None] * num_layers
        self._values: list[Tensor | None] = [None] * num_layers
        self.prefix_length = 0  # P: positions shared by every row (0: none)
        self._prefix: list[tuple[Tensor, Tensor]] = []  # per layer: keys, values (1, H, P, hd)

    def update(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Write this forward's keys/values (B, H, T, hd) of `layer` after the cached ones.

        Returns:
            Keys and values of every cached position plus the new ones, (B, H, length + T, hd). The shared
            `length` moves only on `advance`, once all layers have been updated.
        """
        b, h, t, d = k.shape
        end = self.length + t
        if end > self.capacity:
            raise ValueError(
                f"KVCache: {t} new tokens after {self.length} cached exceed its capacity of "
                f"{self.capacity}; allocate a larger cache or slide the window"
            )
        if self._keys[layer] is None:  # zeros, not empty: see `buffers`
            self._allocate(layer, b, h, d, k)
        keys, values = self._keys[layer], self._values[layer]
        if keys.shape[0] != b:
            raise ValueError(f"KVCache: batch of {b} does not match the cached batch of {keys.shape[0]}")
        p = self.prefix_length
        keys[:, :, self.length - p : end - p] = k
        values[:, :, self.length - p : end - p] = v
        if not p:  # the forward attends in its own dtype (a no-op unless `dtype` differs)
            return keys[:, :, :end].to(k.dtype), values[:, :, :end].to(v.dtype)
        prefix_keys, prefix_values = self._prefix[layer]  # a multi-token forward (a slide's re-encode) is
        expand = lambda t: t.expand(b, -1, -1, -1)  # rare: it may read the prefix once per row
        return (torch.cat([expand(prefix_keys), keys[:, :, : end - p]], 2).to(k.dtype),
                torch.cat([expand(prefix_values), values[:, :, : end - p]], 2).to(v.dtype))

    def buffers(
        self, layer: int, batch: int, heads: int, head_dim: int, like: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Per-row key and value buffers (B, H, capacity - prefix_length, hd) of `layer`, to write in place.

        The single-token decode step (fast_decode.py) writes position `length` (at `length - prefix_length`)
        itself and attends over the filled part and the shared prefix (`prefix`); buffers not allocated yet
        are allocated in the cache's `dtype` (else `like`'s) on `like`'s device.
        """
        if self._keys[layer] is None:
            self._allocate(layer, batch, heads, head_dim, like)
        keys, values = self._keys[layer], self._values[layer]
        if keys.shape[0] != batch or self.length >= self.capacity:
            raise ValueError(
                f"KVCache: a step of batch {batch} at position {self.length} does not fit the cache "
                f"(batch {keys.shape[0]}, capacity {self.capacity})"
            )
        return keys, values

    def _allocate(self, layer: int, batch: int, heads: int, head_dim: int, like: Tensor) -> None:
        """Zeroed buffers of `layer` in `dtype` (else like's) on like's device. Zeros, not empty:
        `step_static` reads (masked) unfilled slots, and 0 * NaN = NaN."""
        shape = (batch, heads, self.capacity - self.prefix_length, head_dim)
        self._keys[layer] = like.new_zeros(shape, dtype=self.dtype or like.dtype)
        self._values[layer] = like.new_zeros(shape, dtype=self.dtype or like.dtype)

    def prefix(self, layer: int) -> tuple[Tensor, Tensor] | None:
        """The shared prefix's keys and values (1, H, P, hd) of `layer`, or None without one."""
        return self._prefix[layer] if self.prefix_length else None

    def advance(self, count: int) -> None:
        """Commit `count` tokens written by `update` in every layer."""
        if self.length + count > self.capacity:
            raise ValueError(f"KVCache.advance: {self.length} + {count} exceeds capacity {self.capacity}")
        self.length += count

    def truncate(self, length: int) -> None:
        """Forget every position from `length` on (keep the prefix [0, length))."""
        if not self.prefix_length <= length <= self.length:
            raise ValueError(f"KVCache.truncate: length must be in [{self.prefix_length}, {self.length}] "
                             f"(the shared prefix is kept), got {length}")
        self.length = length

    def reset(self) -> None:
        """Empty the cache. Per-row buffers are kept for reuse, unless a shared prefix was cut from them:
        then they are dropped with it (they are short by the prefix) and allocated again on next use."""
        if self.prefix_length:
            self._keys, self._values = [None] * self.num_layers, [None] * self.num_layers
            self._prefix, self.prefix_length = [], 0
        self.length = 0

    def select(self, index: Tensor) -> None:
        """Keep batch rows `index` (int (B',)), in place; repeats are allowed.

        One row repeated (one context, many samples) makes what is cached a shared prefix (module
        docstring) instead of B' copies; later selects pick among the rows that follow it.
        """
        if self._keys[0] is None:
            return
        if not self.prefix_length and self.length and len(index) > 1 and bool((index == index[0]).all()):
            row, p = int(index[0]), self.length  # fan out: what is cached becomes the shared prefix
            self._prefix = [(k[row : row + 1, :, :p].clone(), v[row : row + 1, :, :p].clone())
                            for k, v in zip(self._keys, self._values, strict=True)]
            self._keys = [k.new_zeros(len(index), k.shape[1], self.capacity - p, k.shape[3])
                          for k in self._keys]
            self._values = [torch.zeros_like(k) for k in self._keys]
            self.prefix_length = p
            return
        for i in range(self.num_layers):
            self._keys[i] = self._keys[i].index_select(0, index.to(self._keys[i].device))
            self._values[i] = self._values[i].index_select(0, index.to(self._values[i].device))

    def materialize(self) -> None:
        """Copy the shared prefix into every row (whole (B, H, capacity, hd) buffers, no prefix): for the
        compiled static step, whose shapes are fixed."""
        if not self.prefix_length:
            return
        for i, (prefix_keys, prefix_values) in enumerate(self._prefix):
            b = self._keys[i].shape[0]
            self._keys[i] = torch.cat([prefix_keys.expand(b, -1, -1, -1), self._keys[i]], 2)
            self._values[i] = torch.cat([prefix_values.expand(b, -1, -1, -1), self._values[i]], 2)
        self._prefix, self.prefix_length = [], 0
