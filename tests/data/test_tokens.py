import numpy as np
import pytest
import torch

from ivideogpt.data.tokens import TokenBatch, TokenShardError, TokenShardMeta, TokenShards, TokenShardWriter


def _meta() -> TokenShardMeta:
    return TokenShardMeta(context_frames=1, future_frames=3, context_tokens=16, future_tokens=4,
                          context_vocab_size=512, future_vocab_size=300, action_dim=2)


def _batch(b: int, seed: int) -> TokenBatch:
    g = torch.Generator().manual_seed(seed)
    return TokenBatch(
        context_codes=torch.randint(0, 512, (b, 1, 16), generator=g),
        future_codes=torch.randint(0, 300, (b, 3, 4), generator=g),
        actions=torch.randn(b, 4, 2, generator=g),
        rewards=torch.rand(b, 4, generator=g),
        dones=torch.zeros(b, 4, dtype=torch.bool),
        has_actions=torch.ones(b, dtype=torch.bool),
        has_rewards=torch.tensor([True] * (b - 1) + [False]),
    )


def test_round_trip(tmp_path):
    writer = TokenShardWriter(tmp_path / "shard", _meta())
    first, second = _batch(3, 0), _batch(2, 1)
    writer.add(first, np.zeros((3, 3)))
    writer.add(second, np.ones((2, 3)))
    writer.close()
    shards = TokenShards(tmp_path / "shard")
    assert len(shards) == 5
    got = shards.batch(np.array([3, 4]))
    assert torch.equal(got.context_codes, second.context_codes)
    assert torch.equal(got.future_codes, second.future_codes)
    assert torch.allclose(got.actions, second.actions)
    assert got.has_rewards.tolist() == [True, False]
    assert not (tmp_path / "shard.tmp").exists()


def test_moving_codes_round_trip_and_shards_without_them_read_as_unknown(tmp_path):
    writer = TokenShardWriter(tmp_path / "shard", _meta())
    first = _batch(2, 0)
    first.moving = torch.rand(2, 3, 4) < 0.5
    writer.add(first, np.zeros((2, 3)))
    with pytest.raises(TokenShardError, match="every batch of a shard or with none"):
        writer.add(_batch(1, 1), np.zeros((1, 3)))
    writer.close()
    assert torch.equal(TokenShards(tmp_path / "shard").batch(np.array([0, 1])).moving, first.moving)
    old = TokenShardWriter(tmp_path / "old", _meta())
    old.add(_batch(2, 0), np.zeros((2, 3)))
    old.close()
    assert not (tmp_path / "old" / "moving.npy").exists()
    batch = TokenShards(tmp_path / "old").batch(np.array([0, 1]))
    assert batch.moving is None and batch.split(2)[1].moving is None


def test_rejects_codes_out_of_range_and_wrong_shapes(tmp_path):
    writer = TokenShardWriter(tmp_path / "shard", _meta())
    bad = _batch(2, 0)
    bad.future_codes[0, 0, 0] = 300
    with pytest.raises(TokenShardError, match="future_codes outside"):
        writer.add(bad, np.zeros((2, 3)))
    wrong = _batch(2, 0)
    wrong.actions = torch.zeros(2, 4, 3)
    with pytest.raises(TokenShardError, match="actions has shape"):
        writer.add(wrong, np.zeros((2, 3)))


def test_truncated_shard_is_reported(tmp_path):
    writer = TokenShardWriter(tmp_path / "shard", _meta())
    writer.add(_batch(2, 0), np.zeros((2, 3)))
    writer.close()
    path = tmp_path / "shard" / "future.bin"
    path.write_bytes(path.read_bytes()[:-2])
    with pytest.raises(TokenShardError, match="future.bin: expected"):
        TokenShards(tmp_path / "shard")
    with pytest.raises(TokenShardError, match="no meta.json"):
        TokenShards(tmp_path)
    (tmp_path / "shard" / "meta.json").write_bytes(b"\x89PNG\r\n")  # another file under its name
    with pytest.raises(TokenShardError, match="meta.json: not valid JSON"):
        TokenShards(tmp_path / "shard")


def _read_all(root) -> TokenBatch:
    shards = TokenShards(root)
    return shards.batch(np.arange(len(shards)))


def test_a_writer_that_died_resumes_after_its_last_complete_batch(tmp_path):
    batches = [_batch(3, seed) for seed in range(4)]
    whole = TokenShardWriter(tmp_path / "whole", _meta())
    for i, batch in enumerate(batches):
        whole.add(batch, np.full((3, 3), i))
    whole.close()

    dead = TokenShardWriter(tmp_path / "shard", _meta())
    for i, batch in enumerate(batches[:2]):
        dead.add(batch, np.full((3, 3), i))
    # it dies while writing the third batch: codes half appended, a chunk file half written
    dead._context.write(b"\x01\x02\x03")
    dead._context.flush()
    (dead.partial / "chunks" / ".tmp-000002-abc.npz").write_bytes(b"half")
    assert not (tmp_path / "shard").exists()

    with pytest.raises(FileExistsError, match="interrupted tokenize .6 clips written.*--resume"):
        TokenShardWriter(tmp_path / "shard", _meta())
    other = _meta()
    other.future_vocab_size = 301
    with pytest.raises(TokenShardError, match="other settings .differing: future_vocab_size"):
        TokenShardWriter(tmp_path / "shard", other, resume=True)

    resumed = TokenShardWriter(tmp_path / "shard", _meta(), resume=True)
    assert resumed.meta.num_clips == 6
    for i, batch in enumerate(batches[2:], start=2):
        resumed.add(batch, np.full((3, 3), i))
    resumed.close()
    assert not resumed.partial.exists()
    got, want = _read_all(tmp_path / "shard"), _read_all(tmp_path / "whole")
    for name in ("context_codes", "future_codes", "actions", "rewards", "dones", "has_rewards"):
        assert torch.equal(getattr(got, name), getattr(want, name)), name
    index = [TokenShards(tmp_path / name).arrays["index"] for name in ("shard", "whole")]
    assert np.array_equal(*index)


def test_overwrite_starts_an_interrupted_shard_over(tmp_path):
    dead = TokenShardWriter(tmp_path / "shard", _meta())
    dead.add(_batch(3, 0), np.zeros((3, 3)))
    fresh = TokenShardWriter(tmp_path / "shard", _meta(), overwrite=True)
    assert fresh.meta.num_clips == 0
    fresh.add(_batch(2, 1), np.zeros((2, 3)))
    fresh.close()
    assert len(TokenShards(tmp_path / "shard")) == 2
