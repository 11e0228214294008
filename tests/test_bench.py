"""The bench command on tiny settings: its figures, their consistency, JSON, --save and its errors."""
import functools
import json

import pytest
import torch

from ablation.reference import bench, notebook
from ablation.cli import main

pytestmark = pytest.mark.fast

# Tiny settings: the 2-worker loader takes seconds to start and a 2048² matmul is slow on one core.
TINY = dict(workers=(0,), matmul_size=256, eval_images=256, log=lambda text: None)
RATES = ("reference_samples_per_s", "engine_samples_per_s", "multi_seed_samples_per_s")


@pytest.fixture(scope="module")
def figures(data_dir):
    return bench.run("cpu", batches=2, seeds=2, data_dir=data_dir, **TINY)


def test_figures_are_positive_and_complete(figures):
    for key in RATES + ("speedup_single", "speedup_multi", "flops_per_sample", "engine_gflops", "multi_seed_gflops",
                        "reference_gflops", "matmul_gflops", "matmul_gflops_all_cores", "matmul_share"):
        assert figures[key] > 0, key
    assert figures["seeds"] == 2 and figures["batches"] == 2 and figures["device"] == "cpu"
    assert figures["threads"] == torch.get_num_threads() and figures["params"] == 9_752
    assert list(figures["reference_samples_per_s_by_workers"]) == ["0"]
    assert figures["torch"] == torch.__version__


def test_ratios_are_the_quotients_of_the_rates(figures):
    ref = figures["reference_samples_per_s"]
    assert ref == max(figures["reference_samples_per_s_by_workers"].values())
    assert figures["speedup_single"] == pytest.approx(figures["engine_samples_per_s"] / ref, rel=1e-12)
    assert figures["speedup_multi"] == pytest.approx(figures["multi_seed_samples_per_s"] / ref, rel=1e-12)
    assert figures["engine_gflops"] == pytest.approx(figures["engine_samples_per_s"] * figures["flops_per_sample"] / 1e9)
    assert figures["matmul_share"] == pytest.approx(figures["engine_gflops"] / figures["matmul_gflops"])



def test_what_the_study_spends_is_measured_apart_for_the_seeds_network_and_the_final_steps(figures):
    from ablation.study.registry import FINAL_STEP, STEPS

    spent = figures["spending"]
    assert list(spent) == [bench.bench_step().name, FINAL_STEP] and figures["eval_images"] == 256
    seed_net, final = spent[bench.bench_step().name], spent[FINAL_STEP]
    assert seed_net["train_samples_per_s"] == figures["engine_samples_per_s"]  # the same measurement
    assert (seed_net["views"], final["views"]) == (1, 1 + len(STEPS[FINAL_STEP].tta))
    assert (seed_net["params"], final["params"]) == (9_752, STEPS[FINAL_STEP].params)
    for s in (seed_net, final):
        assert s["train_samples_per_s"] > 0 and s["eval_samples_per_s"] > 0
        assert s["train_seconds_per_epoch"] == pytest.approx(60_000 / s["train_samples_per_s"])
        assert s["eval_seconds_per_epoch"] == pytest.approx(10_000 / s["eval_samples_per_s"])
    text = bench.format_table(figures)
    assert f"{FINAL_STEP} ({final['params']:,} params, 5 views): train step {final['train_samples_per_s']:,.0f}" in text

def test_flops_per_image_are_a_few_mflop():
    # A 9,752-parameter convnet on 28x28 costs a few MFLOP per image forward and backward.
    assert 1e6 < bench.flops_per_sample(bench.bench_step(), torch.device("cpu")) < 1e8


def test_the_reference_loop_times_the_notebook_pipeline_with_the_public_notebooks_jitter():
    from torchvision import transforms

    jitter, rotate, to_tensor, norm = notebook.transforms_for(bench.bench_step(), True, **bench.PUBLIC_JITTER).transforms
    assert jitter.brightness == jitter.contrast == jitter.saturation == (0.9, 1.1) and jitter.hue == (-0.1, 0.1)
    assert rotate.degrees == [-7.0, 7.0] and rotate.fill == 0
    assert rotate.interpolation == transforms.InterpolationMode.NEAREST and isinstance(to_tensor, transforms.ToTensor)
    assert (tuple(norm.mean), tuple(norm.std)) == ((0.1307,), (0.3081,))


def test_table_shows_every_rate_and_ratio(figures):
    text = bench.format_table(figures)
    for key in RATES[1:]:
        assert f"{figures[key]:,.0f}" in text
        assert f"{figures[key] / figures['reference_samples_per_s']:.2f}" in text
    assert "reference loop, 0 workers" in text and "2 seeds in one pass" in text


def test_cli_json_and_save(data_dir, monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(bench, "run", functools.partial(bench.run, **TINY))
    save = tmp_path / "new" / "bench.json"
    argv = ["bench", "--json", "--batches", "2", "--seeds-per-pass", "2", "--device", "cpu", "--data-dir", str(data_dir)]
    assert main(argv + ["--save", str(save)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(save.read_text())
    assert printed["speedup_multi"] == pytest.approx(printed["multi_seed_samples_per_s"] / printed["reference_samples_per_s"])
    assert list(save.parent.iterdir()) == [save]  # no temporary file left behind


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_cuda_without_gpu_exits_2(capsys):
    assert main(["bench", "--device", "cuda"]) == 2
    assert "no CUDA GPU" in capsys.readouterr().err


def test_too_many_batches_exits_2(capsys):
    assert main(["bench", "--batches", "100000"]) == 2
    assert "--batches must be between 1 and" in capsys.readouterr().err


def test_against_another_checkout_alternates_the_two_and_gives_medians_and_ratios(tmp_path):
    """bench --against DIR: each side's bench in turn, which goes first alternating by round; the median of each
    figure per side and this side's over the other's."""
    (tmp_path / "ablation").mkdir()
    (tmp_path / "ablation" / "__main__.py").write_text("")
    order, rates = [], {"this": iter([300.0, 100.0, 200.0]), "other": iter([100.0, 50.0, 150.0])}

    def measure(tree, args):
        side = "other" if tree == tmp_path.resolve() else "this"
        order.append(side)
        rate = next(rates[side])
        return {"spending": {"net": {"train_samples_per_s": rate, "eval_samples_per_s": 2 * rate}}, "matmul_gflops": 100.0}

    c = bench.against(tmp_path, 3, ["--batches", "2"], log=lambda text: None, measure=measure)
    assert order == ["this", "other", "other", "this", "this", "other"]
    assert c["figures"]["net train step, images/s"] == {"this": 200.0, "other": 100.0, "ratio": 2.0}
    assert c["figures"]["net evaluation, images/s"]["ratio"] == 2.0
    assert c["figures"]["float32 matmul, GFLOP/s"]["ratio"] == 1.0
    assert "net train step, images/s" in bench.format_against(c) and "2.00x" in bench.format_against(c)


def test_against_a_folder_that_is_no_checkout_is_refused(tmp_path, capsys):
    assert main(["bench", "--against", str(tmp_path)]) == 2
    assert f"error: {tmp_path} holds no checkout of this project (no ablation/__main__.py)" in capsys.readouterr().err


def test_a_bench_that_fails_in_the_other_checkout_says_where_and_why(tmp_path):
    (tmp_path / "ablation").mkdir()
    (tmp_path / "ablation" / "__init__.py").write_text("")
    (tmp_path / "ablation" / "__main__.py").write_text("import sys; sys.exit('no bench here')")
    with pytest.raises(RuntimeError, match=rf"the bench in {tmp_path} failed \(1\): no bench here"):
        bench.bench_in(tmp_path, [])
