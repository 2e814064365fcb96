"""xclip_hf.pipelines.failures: a failed batch retried video by video, the bad video reported with its error."""

from __future__ import annotations

import pytest

from xclip_hf.pipelines.failures import batch_then_each, each_video


def _score(video):
    if video.startswith("bad"):
        raise ValueError(f"cannot read {video}")
    return video.upper()


def test_a_failed_batch_is_retried_video_by_video():
    calls = []
    batch = lambda videos: calls.append(list(videos)) or [_score(v) for v in videos]  # noqa: E731
    assert batch_then_each(batch, _score, ["a", "b"]) == [("a", "A", None), ("b", "B", None)]
    out = batch_then_each(batch, _score, ["a", "bad1", "c"])
    assert [(v, r) for v, r, _ in out] == [("a", "A"), ("bad1", None), ("c", "C")]
    assert str(out[1][2]) == "cannot read bad1" and calls == [["a", "b"], ["a", "bad1", "c"]]


def test_a_batch_of_one_is_retried_only_when_asked():
    singles = []
    single = lambda video: singles.append(video) or _score(video)  # noqa: E731
    assert batch_then_each(lambda v: [_score(x) for x in v], single, ["bad"])[0][1] is None and singles == []
    assert batch_then_each(lambda v: [_score(x) for x in v], single, ["bad"], retry_one=True)[0][1] is None
    assert singles == ["bad"]


def test_other_errors_propagate_and_each_video_is_lazy():
    with pytest.raises(KeyError):
        list(each_video(lambda v: {}[v], ["a"]))
    seen = each_video(_score, ["bad", "never"])
    assert next(seen)[0] == "bad"  # the caller may stop here (on_bad_video="raise")
