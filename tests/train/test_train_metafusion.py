"""train/metafusion.py (named test_train_metafusion.py beside tests/models/test_metafusion.py)."""
from dataclasses import replace

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from streamfuse.models.metafusion import MetaFusion  # noqa: E402
from tests.helpers.synthetic import blob_and_stripes, tiny_config  # noqa: E402
from train.config import read_config  # noqa: E402
from train.harness import REPO, fit, train  # noqa: E402
from train.metafusion import compute_losses, contrast_loss, downsample, draw_offsets, draw_scales, lr_size  # noqa: E402

CFG = read_config(REPO / "train" / "configs" / "metafusion.yaml")


def tiny_batch(n=2, size=24, seed=0):
    return blob_and_stripes(n, size, seed)


def test_walds_protocol_inputs():
    rng = np.random.default_rng(0)
    draws = [draw_scales(CFG, rng) for _ in range(200)]
    assert {r for r, _ in draws} == set(CFG.ir_scales)
    assert 0.3 < np.mean([v == 1.0 for _, v in draws]) < 0.8  # the visible is often at full size
    assert lr_size(96, 4) == 24 and lr_size(96, 2.4) == 40
    hr = torch.rand(2, 1, 96, 96)
    assert downsample(hr, 40).shape == (2, 1, 40, 40)
    assert downsample(hr, 96) is hr


def test_contrast_loss_prefers_keeping_the_contrast_of_the_sources():
    ir, vis = tiny_batch()
    offsets = draw_offsets(3, 8, np.random.default_rng(0))
    average = 0.5 * (ir + vis)  # keeps half of each source's local contrast
    stretched = ir + vis - 0.5  # keeps all of it
    assert contrast_loss(stretched, ir, vis, offsets, 3) < contrast_loss(average, ir, vis, offsets, 3)
    assert contrast_loss(average, ir, vis, offsets, 3) < contrast_loss(torch.full_like(ir, 0.5), ir, vis, offsets, 3)


@pytest.mark.parametrize("lam", [0.0, 0.005])
@pytest.mark.parametrize("scales", [(2.0, 1.0), (3.0, 1.5)])
def test_one_step_lowers_the_loss(lam, scales):
    torch.manual_seed(0)
    model = MetaFusion(channels=4, blocks=1).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    ir, vis = tiny_batch()
    offsets = draw_offsets(3, 4, np.random.default_rng(1))
    before = compute_losses(model, ir, vis, *scales, lam, offsets, 3)
    assert (before["contrast"] if lam else before["fuse"]).isfinite()
    opt.zero_grad()
    before["loss"].backward()
    opt.step()
    with torch.no_grad():
        after = compute_losses(model, ir, vis, *scales, lam, offsets, 3)
    assert after["loss"].item() < before["loss"].item()


def test_train_resume_and_ship(tmp_path):
    import onnxruntime as ort

    cfg = tiny_config("metafusion", tmp_path, steps=1, finetune_steps=1)
    run_dir, out = tmp_path / "run", tmp_path / "out"
    fit(cfg, "cpu", run_dir)
    record = train(replace(cfg, finetune_steps=2), "cpu", run_dir, out, resume=True)  # one more contrast step
    rows = (run_dir / "losses.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3"]
    assert rows[1].split(",")[4] == "nan" and rows[3].split(",")[4] != "nan"  # the contrast term: phase 2 only
    assert record["resumed_from"] == 2 and record["onnx"] == ["metafusion.onnx", "metafusion-x2.onnx", "metafusion-x4.onnx"]
    assert set(record["final_metrics"]) >= {"loss_x1", "contrast_x2", "sr_x4"}
    state = torch.load(out / "metafusion.pt", weights_only=True)
    model = MetaFusion(channels=4, blocks=1).freeze(2)
    model.load_state_dict(state)
    ir, vis = np.random.rand(1, 1, 20, 28).astype(np.float32), np.random.rand(1, 1, 40, 56).astype(np.float32)
    got = ort.InferenceSession(str(out / "metafusion-x2.onnx"), providers=["CPUExecutionProvider"]).run(
        ["fused"], {"ir": ir, "vis": vis})[0]
    with torch.no_grad():
        want = model.eval()(torch.from_numpy(ir), torch.from_numpy(vis)).numpy()
    assert np.abs(got - want).max() <= 1e-4
