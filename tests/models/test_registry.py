"""The model registry (musicsep.models.registry): build errors name the key."""

from __future__ import annotations

import pytest
from tinymodels import TINY

from musicsep import MusicsepError
from musicsep.models.registry import build_model


def test_build_model_errors_name_the_key():
    with pytest.raises(MusicsepError, match=r"model: unknown model 'unet'.*blstm_mask"):
        build_model("unet")
    with pytest.raises(MusicsepError, match=r"model\.hiden: unknown argument of blstm_mask.*hidden"):
        build_model("blstm_mask", hiden=8)
    with pytest.raises(MusicsepError, match=r"model\.hidden: 'big' is not of type int"):
        build_model("blstm_mask", hidden="big")
    with pytest.raises(MusicsepError, match=r"model\.layers: True is not of type int"):
        build_model("blstm_mask", layers=True)
    with pytest.raises(MusicsepError, match=r"model\.unit_norm: 1 is not of type bool"):
        build_model("deep_clustering", unit_norm=1)
    with pytest.raises(MusicsepError, match=r"config\.model\.n_mel: unknown argument"):
        build_model("conditional_centroids", where="config.model", n_mel=16)
    with pytest.raises(MusicsepError, match=r"covariance.*'full'"):
        build_model("conditional_centroids", **TINY, covariance="full")
    with pytest.raises(MusicsepError, match=r"clustering.*'spectral'"):
        build_model("deep_clustering", **TINY, clustering="spectral")
    # what is right builds (an int where a float is expected included)
    model = build_model("conditional_centroids", **TINY | {"dropout": 0}, covariance="spherical")
    assert model.kwargs()["covariance"] == "spherical" and model.kwargs()["dim"] == 15
