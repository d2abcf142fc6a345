"""Key/value cache for incremental decoding: one preallocated buffer per layer, shared length.

Keys are stored AFTER rotary embedding, so a cached key carries the absolute position it was computed
at. That makes pruning the middle of a cache incorrect (later keys would keep stale positions, and
hidden states of later tokens still reflect the dropped ones). The only pruning offered is therefore
`truncate`, which keeps a prefix: exact, because a causal model's prefix never depends on what follows.
Sliding a long rollout (sampling.py) truncates back to the context frames and re-encodes the kept future
frames once per slide.
"""

from __future__ import annotations

from torch import Tensor


class KVCache:
    """Per-layer keys and values (B, H, capacity, head_dim), filled left to right.

    Buffers are allocated on the first `update`, with that call's batch size, dtype and device, so the
    cache follows autocast (bf16 keys under bf16 autocast) without being told.
    """

    def __init__(self, num_layers: int, capacity: int) -> None:
        if num_layers < 1 or capacity < 1:
            raise ValueError(f"KVCache: num_layers and capacity must be >= 1, got {num_layers}, {capacity}")
        self.num_layers = num_layers
        self.capacity = capacity  # most tokens the cache can hold
        self.length = 0  # tokens cached so far (the position of the next token)
        self._keys: list[Tensor | None] = [None] * num_layers
        self._values: list[Tensor | None] = [None] * num_layers

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
            self._keys[layer] = k.new_zeros(b, h, self.capacity, d)
            self._values[layer] = v.new_zeros(b, h, self.capacity, d)
        keys, values = self._keys[layer], self._values[layer]
        if keys.shape[0] != b:
            raise ValueError(f"KVCache: batch of {b} does not match the cached batch of {keys.shape[0]}")
        keys[:, :, self.length : end] = k
        values[:, :, self.length : end] = v
        return keys[:, :, :end], values[:, :, :end]

    def buffers(
        self, layer: int, batch: int, heads: int, head_dim: int, like: Tensor
    ) -> tuple[Tensor, Tensor]:
        """The whole preallocated key and value buffers (B, H, capacity, hd) of `layer`, for writing in place.

        The single-token decode step (fast_decode.py) writes position `length` itself and attends over the
        filled part; buffers not allocated yet are allocated with `like`'s dtype and device.
        """
        if self._keys[layer] is None:  # zeros: `step_static` reads (masked) unfilled slots, and 0 * NaN = NaN
            self._keys[layer] = like.new_zeros(batch, heads, self.capacity, head_dim)
            self._values[layer] = like.new_zeros(batch, heads, self.capacity, head_dim)
        keys, values = self._keys[layer], self._values[layer]
        if keys.shape[0] != batch or self.length >= self.capacity:
            raise ValueError(
                f"KVCache: a step of batch {batch} at position {self.length} does not fit the cache "
                f"(batch {keys.shape[0]}, capacity {self.capacity})"
            )
        return keys, values

    def advance(self, count: int) -> None:
        """Commit `count` tokens written by `update` in every layer."""
        if self.length + count > self.capacity:
            raise ValueError(f"KVCache.advance: {self.length} + {count} exceeds capacity {self.capacity}")
        self.length += count

    def truncate(self, length: int) -> None:
        """Forget every position from `length` on (keep the prefix [0, length))."""
        if not 0 <= length <= self.length:
            raise ValueError(f"KVCache.truncate: length must be in [0, {self.length}], got {length}")
        self.length = length

    def reset(self) -> None:
        """Empty the cache (buffers are kept for reuse)."""
        self.length = 0

    def select(self, index: Tensor) -> None:
        """Keep batch rows `index` (int (B',)), in place; repeats are allowed (one context, many samples)."""
        for i in range(self.num_layers):
            if self._keys[i] is not None:
                self._keys[i] = self._keys[i].index_select(0, index.to(self._keys[i].device))
                self._values[i] = self._values[i].index_select(0, index.to(self._values[i].device))
