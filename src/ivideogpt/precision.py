"""The `precision` option of every command that rolls a world model out (torch-free, for config types).

"float32": everything in float32 (the default; cached and uncached rollouts sample identical codes).
"bfloat16-cache": float32 weights, keys and values cached in bfloat16: each decode step reads half the
    cache bytes, which are most of its time at batch >= 32 on a CPU; logits within bf16 rounding.
"bfloat16": transformer and tokenizer decoding in bfloat16: for GPUs and CPUs with bf16 matrix units
    (AMX), where batched matmuls run several times faster; samples differ from float32's.
`transformer.fast_decode.PRECISIONS` maps each to its decode settings; bench/rollout.py measures them.
"""

from typing import Literal

Precision = Literal["float32", "bfloat16-cache", "bfloat16"]
