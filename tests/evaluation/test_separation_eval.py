"""evaluation.separation: the metric path (oracle masks score high, the mixture scores NSDR 0)
and deterministic mixtures from folders of sources."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from device.frontend import STFTConfig
from tests.export.tiny_separation import easy_sources

pytest.importorskip("mir_eval", reason="mir_eval is a host dependency (make setup)")

from evaluation.separation import (apply_masks, bss_eval, build_mixtures,  # noqa: E402
                                   global_scores, oracle_masks)


def test_ideal_masks_score_high_and_the_mixture_scores_zero_nsdr():
    cfg = STFTConfig()
    mixes = [easy_sources(s, seconds=0.5) for s in (1, 2)]
    rows = {"mixture": [], "ibm": [], "irm": [], "swapped": []}
    for sources in mixes:
        mix = sources.sum(0)
        rows["mixture"].append({**bss_eval(sources, np.stack([mix, mix])), "length": len(mix)})
        for kind in ("ibm", "irm"):
            spec, masks = oracle_masks(sources, cfg, kind)
            est = apply_masks(spec, masks, cfg, len(mix))
            rows[kind].append({**bss_eval(sources, est), "length": len(mix)})
        rows["swapped"].append({**bss_eval(sources, est[::-1]), "length": len(mix)})
    ibm = global_scores(rows["ibm"], rows["mixture"])
    irm = global_scores(rows["irm"], rows["mixture"])
    assert global_scores(rows["mixture"], rows["mixture"])["gnsdr"] == 0.0
    # the sources share no band: an ideal mask separates them almost perfectly
    assert ibm["gsdr"] > 20 and irm["gsdr"] > 20 and ibm["gsir"] > 25
    assert ibm["gnsdr"] > 15
    # the metric notices the wrong order (the oracle rows do not search permutations)
    assert global_scores(rows["swapped"], rows["mixture"])["gsdr"] < -10


def test_global_scores_weight_mixtures_by_length():
    mix = [{"sdr": [0.0, 0.0], "sir": [0, 0], "sar": [0, 0], "length": n} for n in (100, 300)]
    est = [{"sdr": [4.0, 4.0], "sir": [0, 0], "sar": [0, 0], "length": 100},
           {"sdr": [8.0, 8.0], "sir": [0, 0], "sar": [0, 0], "length": 300}]
    assert global_scores(est, mix)["gnsdr"] == pytest.approx(7.0)


def test_mixtures_from_folders_are_deterministic_and_at_the_asked_snr(tmp_path):
    for name, seed in (("a", 1), ("b", 2)):
        (tmp_path / name / "sub").mkdir(parents=True)
        for i in range(3):
            s = easy_sources(seed * 10 + i, seconds=1.0)[0 if name == "a" else 1]
            sf.write(str(tmp_path / name / "sub" / f"{i}.wav"), s, 8000)
    folders = [tmp_path / "a", tmp_path / "b"]
    one = build_mixtures(folders, 4, 0.5, 0.0, seed=3, sample_rate=8000)
    two = build_mixtures(folders, 4, 0.5, 0.0, seed=3, sample_rate=8000)
    assert [m["files"] for m in one] == [m["files"] for m in two]
    for m in one:
        np.testing.assert_array_equal(m["mixture"], m["sources"].sum(0))
        e = np.mean(m["sources"].astype(np.float64) ** 2, axis=1)
        assert 10 * np.log10(e[0] / e[1]) == pytest.approx(0.0, abs=0.01)
    with pytest.raises(FileNotFoundError, match="no audio files"):
        build_mixtures([tmp_path / "a", tmp_path / "empty"], 1, 0.5, 0.0, 0, 8000)
