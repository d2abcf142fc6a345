from __future__ import annotations

import numpy as np
import pytest
import torch

from ivideogpt.data.clips import (
    ClipBatch,
    ClipConfig,
    ClipDataset,
    collate_clips,
    make_loader,
    mixture_sampler,
    split_episodes,
)
from ivideogpt.data.store import EpisodeStore


def test_clip_config_validation():
    assert ClipConfig(2, 6, stride=2).clip_length == 8 and ClipConfig(2, 6, stride=2).span == 15
    for kwargs, field in [({"context_frames": 0}, "context_frames"), ({"stride": 0}, "stride"),
                          ({"val_fraction": 1.0}, "val_fraction"), ({"future_frames": -1}, "future_frames")]:
        with pytest.raises(ValueError, match=f"ClipConfig.{field}"):
            ClipConfig(**kwargs)


def test_every_clip_matches_the_episode_rows(make_dataset):
    root = make_dataset("ds", [10, 7], action_dim=2)
    ds = ClipDataset([root], ClipConfig(2, 3, val_fraction=0.0), "all")
    assert len(ds) == (10 - 4) + (7 - 4)  # every start position, stepping by one frame
    store = EpisodeStore(root)
    for i in range(len(ds)):
        clip = ds[i]
        source, e, start = ds.locate(i)
        ep = store[e]
        assert (source, int(clip.episode), int(clip.start)) == (0, e, start)
        assert torch.equal(clip.frames, torch.from_numpy(ep.frames[start : start + 5]))
        assert torch.equal(clip.actions, torch.from_numpy(ep.actions[start : start + 5]))
        assert clip.rewards.tolist() == list(range(start, start + 5))  # reward t == t in these episodes
        assert torch.equal(clip.dones, torch.from_numpy(ep.done[start : start + 5]))
        assert bool(clip.has_actions) and bool(clip.has_rewards)
    assert [ds.locate(i)[1:] for i in (0, 5, 6, 8)] == [(0, 0), (0, 5), (1, 0), (1, 2)]


def test_strided_clips_take_every_stride_th_frame_and_sum_rewards(make_dataset):
    root = make_dataset("video", [12], action_dim=None)
    ds = ClipDataset([root], ClipConfig(2, 2, stride=3, val_fraction=0.0), "all")
    assert len(ds) == 12 - 10 + 1  # a clip spans (4 - 1) * 3 + 1 = 10 frames
    ep = EpisodeStore(root)[0]
    clip = ds[2]
    assert torch.equal(clip.frames, torch.from_numpy(ep.frames[[2, 5, 8, 11]]))
    # row k sums the rewards of the steps since the previous clip frame: (0+1+2), (3+4+5), ...
    assert clip.rewards.tolist() == [0 + 1 + 2, 3 + 4 + 5, 6 + 7 + 8, 9 + 10 + 11]
    assert clip.dones.tolist() == [False, False, False, True]
    assert ds[0].rewards.tolist() == [0, 1 + 2 + 3, 4 + 5 + 6, 7 + 8 + 9]  # first row: the one step there is
    assert clip.actions.shape == (4, 0) and not bool(clip.has_actions)


def test_stride_with_actions_is_refused(make_dataset):
    root = make_dataset("ds", [12], action_dim=2)
    with pytest.raises(ValueError, match="has actions, so stride must be 1"):
        ClipDataset([root], ClipConfig(2, 2, stride=2), "all")


def test_split_is_by_episode_disjoint_complete_and_deterministic(make_dataset):
    train, val = split_episodes(20, 0.1, seed=0)
    assert len(val) == 2 and sorted(train + val) == list(range(20))
    assert (train, val) == split_episodes(20, 0.1, seed=0)
    assert val != split_episodes(20, 0.1, seed=1)[1]
    assert split_episodes(1, 0.5, 0) == ([0], [])  # a single episode goes to train
    assert split_episodes(3, 0.01, 0)[1] != [] and split_episodes(3, 0.99, 0)[0] != []
    root = make_dataset("ds", [6] * 20)
    cfg = ClipConfig(1, 1, val_fraction=0.25, split_seed=3)
    sets = {s: {e for _, e in ClipDataset([root], cfg, s).episodes} for s in ("train", "val", "all")}
    assert sets["train"].isdisjoint(sets["val"]) and sets["train"] | sets["val"] == set(range(20))
    assert len(sets["val"]) == 5 and sets["all"] == set(range(20))
    val_clip_episodes = {ClipDataset([root], cfg, "val").locate(i)[1] for i in range(5 * 5)}
    assert val_clip_episodes == sets["val"]  # clips never cross the split
    assert {e for _, e in ClipDataset([root], cfg, "val").episodes} == sets["val"]  # deterministic


def test_short_episodes_are_skipped_and_counted(make_dataset):
    root = make_dataset("ds", [3, 8, 4, 5, 2])
    with pytest.warns(UserWarning, match=r"skipped 3 episode\(s\) shorter than a clip \(5 frames\)"):
        ds = ClipDataset([root], ClipConfig(2, 3, val_fraction=0.0), "all")
    assert ds.skipped_episodes == 3 and [e for _, e in ds.episodes] == [1, 3] and len(ds) == 4 + 1
    with pytest.raises(ValueError, match=r"no clips: every episode .* shorter than a clip \(9 frames\)"), \
            pytest.warns(UserWarning):
        ClipDataset([root], ClipConfig(2, 7, val_fraction=0.0), "all")


def test_an_empty_split_is_told_apart_from_short_episodes(make_dataset):
    root = make_dataset("one", [20])  # one episode: the train split takes it, val holds none
    assert len(ClipDataset([root], ClipConfig(2, 3, val_fraction=0.1), "train")) == 16
    with pytest.raises(ValueError, match=r"'val' split .* holds no episode \(1 in all, val_fraction 0.1\)"):
        ClipDataset([root], ClipConfig(2, 3, val_fraction=0.1), "val")


def test_sources_must_share_image_size(make_dataset):
    a, b = make_dataset("a", [5], size=8), make_dataset("b", [5], size=16)
    with pytest.raises(ValueError, match="different image sizes"):
        ClipDataset([a, b], ClipConfig(1, 1), "train")


def test_actions_are_padded_across_sources(make_dataset):
    roots = [make_dataset("a2", [6], action_dim=2), make_dataset("a4", [6], action_dim=4),
             make_dataset("free", [6], action_dim=None)]
    cfg = ClipConfig(1, 2, val_fraction=0.0)
    ds = ClipDataset(roots, cfg, "all")
    assert ds.action_dim == 4 and ds.clips_per_source.tolist() == [4, 4, 4]
    batch = collate_clips([ds[0], ds[4], ds[8]])
    assert batch.actions.shape == (3, 3, 4)
    ep = EpisodeStore(roots[0])[0]
    assert torch.equal(batch.actions[0, :, :2], torch.from_numpy(ep.actions[:3]))
    assert not batch.actions[0, :, 2:].any() and not batch.actions[2].any()
    assert batch.has_actions.tolist() == [True, True, False] and batch.source.tolist() == [0, 1, 2]
    assert ClipDataset(roots, cfg, "all", action_dim=6)[0].actions.shape == (3, 6)
    with pytest.raises(ValueError, match="action_dim=3 is smaller than a source's"):
        ClipDataset(roots, cfg, "all", action_dim=3)


def test_mixture_weights_are_respected(make_dataset):
    big, small = make_dataset("big", [20] * 10), make_dataset("small", [4] * 2)
    ds = ClipDataset([big, small], ClipConfig(1, 1, val_fraction=0.0), "all")
    assert ds.clips_per_source.tolist() == [190, 6]
    n = 20000
    draws = np.array(list(mixture_sampler(ds, [0.8, 0.2], n, seed=0)))
    from_small = draws >= ds.source_offsets[1]
    assert abs(from_small.mean() - 0.2) < 0.015  # binomial std is 0.003
    counts = np.bincount(draws[from_small] - 190, minlength=6)  # uniform over the small source's clips
    assert counts.min() > 0.8 * counts.mean() and counts.max() < 1.2 * counts.mean()
    assert np.array_equal(draws, list(mixture_sampler(ds, [0.8, 0.2], n, seed=0)))
    assert not np.array_equal(draws, list(mixture_sampler(ds, [0.8, 0.2], n, seed=1)))
    sampler = mixture_sampler(ds, [0.8, 0.2], n, seed=0)
    sampler.set_epoch(1)
    assert not np.array_equal(draws, list(sampler)) and len(sampler) == n
    natural = np.array(list(mixture_sampler(ds, None, n, seed=0)))  # None: uniform over all clips
    assert abs((natural >= 190).mean() - 6 / 196) < 0.01


def test_mixture_weight_errors(make_dataset):
    a, b = make_dataset("a", [6, 6]), make_dataset("b", [6])
    ds = ClipDataset([a, b], ClipConfig(1, 1, val_fraction=0.5), "val")  # b's one episode is in train
    with pytest.raises(ValueError, match="2 non-negative numbers"):
        mixture_sampler(ds, [1.0], 10, seed=0)
    with pytest.raises(ValueError, match="non-negative numbers"):
        mixture_sampler(ds, [1.0, -1.0], 10, seed=0)
    with pytest.raises(ValueError, match=r"source\(s\) .*b'\] have a positive weight but no clips"):
        mixture_sampler(ds, [0.5, 0.5], 10, seed=0)
    assert set(mixture_sampler(ds, [1.0, 0.0], 50, seed=0)) <= set(range(len(ds)))


def test_loader_with_workers_yields_clip_batches(make_dataset):
    roots = [make_dataset("a", [8] * 3), make_dataset("b", [8] * 3, action_dim=None)]
    ds = ClipDataset(roots, ClipConfig(2, 2, val_fraction=0.0), "all")
    loader = make_loader(ds, batch_size=4, num_samples=12, weights=[0.5, 0.5], num_workers=1)
    batches = list(loader)
    assert len(batches) == 3 and all(isinstance(b, ClipBatch) for b in batches)
    b = batches[0].to("cpu")
    assert b.frames.shape == (4, 4, 8, 8, 3) and b.frames.dtype == torch.uint8
    assert b.actions.shape == (4, 4, 2) and b.actions.dtype == torch.float32
    assert b.rewards.shape == (4, 4) and b.dones.dtype == torch.bool
    assert b.has_actions.shape == (4,) and b.source.dtype == torch.int64
    assert torch.equal(b.has_actions, b.source == 0)
