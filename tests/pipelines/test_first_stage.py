"""The tiny first stage: trained on the stand-in's training views, it reconstructs *held-out* subjects' views."""
import numpy as np
import pytest
import torch

from pipelines.first_stage import (FirstStageConfig, psnr_bars_db, collect_views, judge_heldout_psnr,
                                   load_first_stage, reconstruction_psnr, train_first_stage)


@pytest.mark.numerics
@pytest.mark.slow
def test_heldout_reconstruction_meets_each_datasets_bar(model_data):
    from model.diffusion.config import VAEConfig
    from model.diffusion.vae import AutoencoderKL

    # the recipe's 600 steps (the reference model's first stage). Measured on the stand-in under five CPU settings
    # (ATen avx512 / avx2 / default x 1 / 2 threads, 2026-12-03): FaceScape 26.21-26.33 dB, THuman 23.53-23.67 dB;
    # the bars (25 / 21 dB) sit 1.2 and 2.5 dB below the lowest. (At 450 steps FaceScape scored 25.26-25.41: no margin.)
    res = train_first_stage(model_data, FirstStageConfig(), log=lambda *_: None)
    assert judge_heldout_psnr(res.psnr_heldout)[0], res.psnr_heldout  # FaceScape 25 dB, THuman 21 dB
    assert res.psnr_heldout["facescape"] >= psnr_bars_db()["facescape"] == 25.0
    # the stored weights reproduce the figure independently of the training process
    tensors, cfg = load_first_stage(res.checkpoint)
    vae = AutoencoderKL(VAEConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg["vae"].items()}))
    vae.load_state_dict({k.removeprefix("first_stage_model."): v for k, v in tensors.items()})
    vae.eval()
    held = collect_views(model_data.storage_root, ("facescape",), 64)["heldout"]["facescape"]
    assert float(reconstruction_psnr(vae, held).mean()) == pytest.approx(res.psnr_heldout["facescape"], abs=1e-3)
    # the latent scale makes training latents unit-variance (SD's rule)
    train_x = torch.tensor(collect_views(model_data.storage_root, ("facescape", "thuman"), 64)["train"]["facescape"])
    with torch.no_grad():
        z = vae.encode(train_x.permute(0, 3, 1, 2).float() / 127.5 - 1, sample=False)
    assert float(z.std() * cfg["vae"]["scale_factor"]) == pytest.approx(1.0, abs=0.15)


def test_held_out_subjects_are_not_trained_on(model_data):
    data = collect_views(model_data.storage_root, ("facescape", "thuman"), 64)
    assert set(data["train"]) == {"facescape", "thuman"} and set(data["heldout"]) == {"facescape", "thuman"}
    # FaceScape 122 and THuman 2201 (with its person's other poses 2301, 2401) are held out: 1 FaceScape subject of
    # 4, 96 renders of THuman's 192
    assert len(data["heldout"]["thuman"]) == 96 and len(data["train"]["thuman"]) == 96
    assert data["train"]["facescape"].dtype == np.uint8 and data["train"]["facescape"].shape[1:] == (64, 64, 3)


def test_missing_views_are_a_clear_error(standin_settings, tmp_path):
    from tests.conftest import settings_for

    empty = settings_for(standin_settings.synthetic_root, tmp_path)
    with pytest.raises(ValueError, match="materialize the views assets"):
        train_first_stage(empty, FirstStageConfig(steps=3), log=lambda *_: None)
