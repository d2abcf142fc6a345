from __future__ import annotations

import itertools

import imageio.v3 as iio
import numpy as np
import pytest
from PIL import Image

from ivideogpt.data.preview import PreviewConfig, choose_episodes, write_preview
from ivideogpt.data.store import EpisodeStore
from ivideogpt.data.videos import VideoImportConfig, import_videos, natural_key
from ivideogpt.media import add_label, hstack_videos, save_video, tile_videos


def _frames(num_frames: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """Smooth moving gradients: survive lossy codecs well enough to compare after a round trip."""
    t, y, x = np.meshgrid(np.arange(num_frames), np.arange(height), np.arange(width), indexing="ij")
    r = (x * 255 // max(width - 1, 1) + 20 * t + seed) % 256
    return np.stack([r, y * 255 // max(height - 1, 1), np.full_like(r, 128)], axis=-1).astype(np.uint8)


@pytest.fixture
def video_folder(tmp_path):
    src = tmp_path / "videos"
    src.mkdir()
    iio.imwrite(src / "clip.mp4", _frames(30, 48, 80), plugin="FFMPEG", fps=30, macro_block_size=1)
    iio.imwrite(src / "anim.gif", _frames(9, 40, 40), duration=1000 / 30, loop=0)
    (src / "frames").mkdir()
    for i in range(12):  # natural order: frame2 before frame10
        Image.fromarray(_frames(12, 20, 30)[i]).save(src / "frames" / f"frame{i}.png")
    (src / "broken.mp4").write_text("not a video")
    (src / "notes.txt").write_text("ignored")
    return src


def test_import_videos_gif_and_frame_folder(tmp_path, video_folder, capsys):
    out = import_videos(VideoImportConfig(video_folder, tmp_path / "ds", size=16, fps=10, folder_fps=10))
    store = EpisodeStore(out)
    meta = store.meta
    assert (meta.source, meta.action_dim, meta.fps, meta.image_size) == ("video-import", None, 10, 16)
    assert meta.extra["files"] == ["anim.gif", "clip.mp4", "frames"]
    assert len(meta.extra["skipped"]) == 1 and meta.extra["skipped"][0].startswith("broken.mp4: unreadable")
    assert store.lengths == [3, 10, 12]  # 9 frames at 30 fps -> 3 at 10 fps; 30 -> 10; folder kept
    for i in range(3):
        ep = store[i]
        assert ep.frames.shape[1:] == (16, 16, 3) and ep.actions is None and ep.rewards is None
    printed = capsys.readouterr().out
    assert "imported 3 video(s), 25 frames" in printed and "skipped 1" in printed
    folder = np.stack([np.asarray(Image.fromarray(f).resize((16, 16), Image.Resampling.LANCZOS))
                       for f in _frames(12, 20, 30)[:, :, 5:25]])  # center crop of the 30-wide frames
    np.testing.assert_array_equal(store[2].frames, folder)  # frames in natural, not string, order


def test_import_options(tmp_path, video_folder):
    cfg = VideoImportConfig(video_folder, tmp_path / "ds", 8, "none", fps=20, max_frames=4, min_frames=4)
    store = EpisodeStore(import_videos(cfg))
    # the 9-frame GIF at 30 fps gives 6 frames at 20 fps, all three capped at 4; 20 fps resamples folders too
    assert store.lengths == [4, 4, 4] and store.meta.extra["crop"] == "none"
    with pytest.raises(FileExistsError, match="not empty"):
        import_videos(cfg)
    cfg.min_frames, cfg.max_frames, cfg.overwrite = 7, None, True
    store = EpisodeStore(import_videos(cfg))
    assert store.lengths == [20, 24] and any("anim.gif: 6 frame(s), fewer than min_frames=7" in s
                                             for s in store.meta.extra["skipped"])


def test_import_center_crop_versus_squash(tmp_path):
    src = tmp_path / "src"
    (src / "wide").mkdir(parents=True)
    frame = np.zeros((20, 60, 3), np.uint8)
    frame[:, 20:40] = 255  # a white square in the middle of black margins
    for i in range(2):
        Image.fromarray(frame).save(src / "wide" / f"{i}.png")
    center = EpisodeStore(import_videos(VideoImportConfig(src, tmp_path / "c", 10, "center")))[0].frames
    squash = EpisodeStore(import_videos(VideoImportConfig(src, tmp_path / "s", 10, "none")))[0].frames
    assert center.min() == 255  # only the white square is left
    assert squash[:, :, 0].max() == 0 and squash[:, :, 5].min() == 255  # black margins squashed in


def test_import_errors(tmp_path, video_folder):
    with pytest.raises(ValueError, match="does not exist"):
        import_videos(VideoImportConfig(tmp_path / "missing", tmp_path / "ds"))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("x")
    with pytest.raises(ValueError, match="has no video files"):
        import_videos(VideoImportConfig(tmp_path / "empty", tmp_path / "ds"))
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.mp4").write_bytes(b"\x00" * 100)
    (bad / "b.gif").write_text("GIF?")
    with pytest.raises(ValueError, match=r"no usable video .*2 skipped.*\n  a.mp4: unreadable.*\n  b.gif: "):
        import_videos(VideoImportConfig(bad, tmp_path / "ds"))
    assert not (tmp_path / "ds").exists()  # a failed import leaves no folder behind
    (bad / "one").mkdir()
    Image.fromarray(_frames(1, 8, 8)[0]).save(bad / "one" / "0.png")
    with pytest.raises(ValueError, match=r"(?s)3 skipped.*\n  one: 1 frame\(s\), fewer than min"):
        import_videos(VideoImportConfig(bad, tmp_path / "ds"))
    assert not (tmp_path / "ds").exists()  # also when the files open but are too short
    with pytest.raises(ValueError, match="different frame rates .*set fps"):  # 30 fps videos, 10 fps folder
        import_videos(VideoImportConfig(video_folder, tmp_path / "ds"))
    with pytest.raises(ValueError, match="VideoImportConfig.crop"):
        VideoImportConfig(video_folder, tmp_path / "ds", crop="square")
    with pytest.raises(ValueError, match=r"max_frames \(2\) must be >= min_frames \(3\)"):
        VideoImportConfig(video_folder, tmp_path / "ds", max_frames=2, min_frames=3)


def test_natural_key():
    names = ["f10.png", "f2.png", "F1.png", "f1b.png"]
    assert sorted(names, key=natural_key) == ["F1.png", "f1b.png", "f2.png", "f10.png"]


def test_tile_and_hstack_layout():
    a, b, c = _frames(3, 4, 5), _frames(2, 4, 5, seed=7), _frames(1, 4, 5, seed=9)
    grid = tile_videos([a, b, c], cols=2, pad=1, pad_value=0)
    assert grid.shape == (3, 2 * 5 + 1, 2 * 6 + 1, 3)
    assert np.array_equal(grid[:, 1:5, 1:6], a) and np.array_equal(grid[:2, 1:5, 7:12], b)
    assert np.array_equal(grid[2, 1:5, 7:12], b[-1])  # the shorter video holds its last frame
    assert np.array_equal(grid[0, 6:10, 1:6], c[0]) and not grid[:, 6:10, 7:12].any()  # empty cell
    assert hstack_videos([a, b], pad=0).shape == (3, 4, 10, 3)
    with pytest.raises(ValueError, match="different frame sizes"):
        tile_videos([a, _frames(3, 5, 5)], cols=2)
    with pytest.raises(TypeError, match="uint8"):
        tile_videos([a.astype(np.float32)], cols=1)
    labelled = add_label(a, "truth")
    assert labelled.shape == (3, 16, 5, 3) and np.array_equal(labelled[:, 12:], a) and labelled[:, :12].any()


@pytest.mark.parametrize(
    ("suffix", "scale", "size"), [(".gif", 2, (30, 42)), (".mp4", 2, (30, 42)), (".mp4", 1, (16, 22))]
)
def test_save_video_round_trip(tmp_path, suffix, scale, size):
    frames = _frames(6, 15, 21)  # odd sides: the mp4 writer pads them to even
    path = save_video(tmp_path / f"v{suffix}", frames, fps=5, scale=scale)
    read = {"plugin": "pillow", "mode": "RGB"} if suffix == ".gif" else {"plugin": "FFMPEG"}
    back = iio.imread(path, **read)
    assert back.shape == (6, *size, 3)
    expected = frames.repeat(scale, 1).repeat(scale, 2)
    back = back[:, : expected.shape[1], : expected.shape[2]].astype(int)  # without the mp4's padding
    assert np.abs(back - expected).mean() < 8  # GIF palettes and H.264 are lossy, but close
    assert [p.name for p in tmp_path.iterdir()] == [f"v{suffix}"]  # no temp file left
    with pytest.raises(ValueError, match="suffix '.avi'"):
        save_video(tmp_path / "v.avi", frames, fps=5)


def test_preview_writes_a_readable_gif(make_dataset):
    root = make_dataset("ds", [5, 9, 6, 7, 8], action_dim=2)
    path = write_preview(PreviewConfig(root, episodes=3, max_frames=4, stride=2, scale=2))
    assert path == root / "preview.gif"
    video = iio.imread(path, plugin="pillow", mode="RGB")
    cell_h, cell_w = 12 + 16, 16  # label strip + 2x upscaled 8x8 frames
    assert video.shape == (4, cell_h + 4, 3 * (cell_w + 2) + 2, 3)  # 3 episodes in one row, <= 4 frames each
    assert choose_episodes(5, 9, seed=0) == [0, 1, 2, 3, 4]
    chosen = choose_episodes(100, 4, seed=0)
    assert len(set(chosen)) == 4 and all(24 <= b - a <= 26 for a, b in itertools.pairwise(chosen))
    with pytest.raises(ValueError, match="PreviewConfig.out"):
        PreviewConfig(root, out=root / "p.png")
