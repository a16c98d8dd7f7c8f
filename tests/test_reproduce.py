"""The reduced-scale reproduction: the plan of siblings, and the ci run end to end.

Claims and tables from synthetic records: tests/test_claims.py; the statistics:
tests/test_stats.py."""

import json
import shutil

import jiwer
import pytest

from usmlite_edu.speech import configs, model, presets, runs
from usmlite_edu.training import claims, reproduce

pytestmark = pytest.mark.xdist_group("train")


def test_plan_every_row_every_seed_siblings_from_one_start():
    p = presets.get_preset("cpu")
    rc = p.reproduce
    rows = reproduce.plan(p)
    exps = {r.exp for r in rows}
    assert exps == {f"E{i}" for i in range(14)} | {f"B{i}" for i in range(4)} | {
        f"W{i}" for i in range(4)
    } | {"V0", "V2", "V4"}
    for exp in exps:  # every row runs every seed
        assert sorted(r.seed for r in rows if r.exp == exp) == [0, 1, 2], exp
    by_key = {r.key: r for r in rows}
    for r in rows:
        if r.kind == "pretrain":
            assert r.start is None and r.exp.startswith("W")
        elif r.kind == "ptq":  # E0 / E2 quantize B0, V2 quantizes V0
            assert (r.exp, r.start) in {("E0", "B0"), ("E2", "B0"), ("V2", "V0")}, r
        else:  # B0, V0, V4 and the QAT / pruning rows share W0; B1-B3 their own W
            assert r.start == ("W" + r.exp[1] if r.exp in ("B1", "B2", "B3") else "W0"), r
        if r.start:  # the start has the same seed and held-out speaker
            s = by_key[r.start_key]
            assert s.seed == r.seed and s.heldout_speaker == r.heldout_speaker
    assert {r.exp: r.kind for r in rows}["B0"] == "finetune"
    specs = {r.exp: r.spec for r in rows}
    assert specs["B0"] == "float" and specs["E7"] == "int2/gs24" and specs["E12"] == "int4+2:4"
    assert specs["E11"] == f"1:4/fs{rc.t_p}" and rc.t_p == 10  # floor: 0.5% of 100 < 10
    # every spec fits every layer of the preset (refused up front otherwise)
    from usmlite_edu.speech.model import build_model

    for r in rows:
        if not r.model:
            build_model(p.model, r.spec)
    # each row's start comes before it
    order = [r.key for r in rows]
    assert all(order.index(r.start_key) < order.index(r.key) for r in rows if r.start)
    # W1-W3 carry B1-B3's sizes; the fine-tuned B1-B3 take their start's model
    assert dict(by_key["W1_s0"].model) and not by_key["B1_s0"].model


def test_variational_noise_rows_every_seed_and_only_they_carry_the_noise():
    p = presets.get_preset("cpu")
    rc = p.reproduce
    rows = reproduce.plan(p)
    by_key = {r.key: r for r in rows}
    for seed in rc.seeds:
        v0, v2, v4 = (by_key[f"{e}_s{seed}"] for e in ("V0", "V2", "V4"))
        assert (v0.kind, v0.spec, v0.start) == ("finetune", "float", "W0")
        assert (v2.kind, v2.spec, v2.start) == ("ptq", "int4", "V0")
        assert (v4.kind, v4.spec, v4.start) == ("finetune", "int2", "W0")
        assert v0.heldout_speaker == v4.heldout_speaker == rc.heldout_for(seed)
    # V0 / V4 fine-tune with the noise; no other row has a training override (V2 does not
    # train: it quantizes V0, whose weights saw the noise)
    noisy = {r.exp for r in rows if r.train}
    assert noisy == {"V0", "V4"}
    for r in rows:
        if r.train:
            assert dict(r.train) == {"weight_noise_std": rc.vn_std}
            assert r.overrides == {"train.weight_noise_std": rc.vn_std}
    assert by_key["W1_s0"].overrides == {f"model.{k}": v for k, v in by_key["W1_s0"].model}
    assert by_key["B0_s0"].overrides == {}
    # the preset's value reaches the plan (validation: tests/test_presets.py)
    q = p.override({"reproduce.vn_std": 0.05})
    assert {dict(r.train)["weight_noise_std"] for r in reproduce.plan(q) if r.train} == {0.05}
    # the table order places them after the E rows, the W rows last
    order = list(reproduce.ORDER)
    assert order.index("E13") < order.index("V0") < order.index("V2") < order.index("V4")
    assert order.index("V4") < order.index("W0") and order[-4:] == ["W0", "W1", "W2", "W3"]


def test_a_resumed_record_must_match_the_rows_training_overrides(tmp_path):
    rows = {r.key: r for r in reproduce.plan("ci")}
    v0, b0 = rows["V0_s0"], rows["B0_s0"]
    rec = lambda row, **kw: {
        **{k: getattr(row, k) for k in ("kind", "spec", "start", "heldout_speaker")},
        "train": dict(row.train),
        "results": {"test": {"wer": 1.0, "utterances": []}},
        **kw,
    }
    reproduce._check_record(rec(v0), v0, tmp_path)
    reproduce._check_record(rec(b0), b0, tmp_path)
    old = rec(b0)
    del old["train"]  # a record written before rows had training overrides
    reproduce._check_record(old, b0, tmp_path)
    with pytest.raises(ValueError, match="another plan"):
        reproduce._check_record(rec(v0, train={"weight_noise_std": 0.5}), v0, tmp_path)
    with pytest.raises(ValueError, match="another plan"):
        reproduce._check_record(rec(v0, train={}), v0, tmp_path)


def test_each_seed_holds_out_another_speaker():
    rc = presets.get_preset("cpu").reproduce
    assert [rc.heldout_for(s) for s in rc.seeds] == ["theo", "jackson", "nicolas"]
    assert {r.heldout_speaker for r in reproduce.plan("cpu") if r.seed == 1} == {"jackson"}
    # four seeds wrap around; one speaker for all; none
    assert rc.replace(seeds=(0, 1, 2, 3)).heldout_for(3) == "theo"
    assert rc.replace(heldout_rotation=()).heldout_for(2) == "theo"
    assert rc.replace(heldout_speaker=None).heldout_for(1) is None
    with pytest.raises(ValueError, match="repeats a speaker"):
        rc.replace(heldout_rotation=("jackson", "theo"))
    with pytest.raises(ValueError, match="seeds must differ"):
        rc.replace(seeds=(0, 0))


def test_ci_plan_is_small_but_paired():
    rc = presets.get_preset("ci").reproduce
    assert len(rc.seeds) >= 2  # the fewest seeds that exercise the paired statistics
    assert rc.heldout_speaker is None  # data_small has no held-out speaker: dev and test


def test_only_runs_the_named_rows_and_their_starts():
    rows = reproduce._with_starts(reproduce.plan("ci"), ["E2", "B1"])
    assert sorted({r.exp for r in rows}) == ["B0", "B1", "E2", "W0", "W1"]
    rows = reproduce._with_starts(reproduce.plan("ci"), ["V2"])
    assert sorted({r.exp for r in rows}) == ["V0", "V2", "W0"]
    assert len(rows) == 3 * len(presets.get_preset("ci").reproduce.seeds)
    assert [r.exp for r in rows if r.seed == 0] == ["W0", "V0", "V2"]  # starts first


@pytest.mark.parametrize("target", [0.502, 0.335, 0.189])
def test_dense_baselines_hit_the_paper_ratios(target):
    over, r = reproduce.dense_baseline_config(configs.CPU, target)
    assert abs(r - target) < 0.03
    assert model.num_params(configs.CPU.replace(**over)) / model.num_params(
        configs.CPU
    ) == pytest.approx(r)


def test_pareto_front():
    pts = [(10, 5.0, "a"), (20, 4.0, "b"), (30, 6.0, "c"), (5, 50.0, "d")]
    assert [p[2] for p in reproduce._pareto(pts)] == ["d", "a", "b"]


@pytest.mark.slow
def test_ci_reproduction_end_to_end_and_resume(tmp_path, capsys):
    p = presets.get_preset("ci")
    rc = p.reproduce
    records = reproduce.run("ci", None, tmp_path)
    plan = reproduce.plan("ci")
    assert len(records) == len(plan) == 25 * len(rc.seeds)
    for name in ("table.md", "table.csv", "results.json", "plot.png", "claims.md"):
        assert (tmp_path / name).stat().st_size > 0
    table = (tmp_path / "table.md").read_text()
    assert all(f"| {e} |" in table for e in ["B0", "E0", "E7", "E13", "V0", "V2", "V4", "B3", "W0"])
    meta = json.loads((tmp_path / "results.json").read_text())
    run0 = meta["runs"][0]
    assert {"git_commit", "preset", "spec", "seed", "steps", "wall_time_s", "machine"} <= set(run0)
    b0 = [l for l in meta["summary"] if l["exp"] == "B0"][0]
    assert b0["seeds"] == len(rc.seeds) and b0["wer_test_lo"] <= b0["wer_test"] <= b0["wer_test_hi"]
    # siblings: B0 and E3 fine-tune seed 1's W0 for the same steps with the same schedule
    cfg = lambda key: json.loads((tmp_path / "runs" / key / "config.json").read_text())
    for key in ("B0_s1", "E3_s1"):
        c = cfg(key)
        assert c["init"] == str(tmp_path / "runs" / "W0_s1") and c["seed"] == 1
        assert c["train_config"]["steps"] == rc.finetune_steps
        assert c["train_config"]["schedule_offset"] == rc.pretrain_steps
        assert c["train_config"]["rewarm_steps"] == rc.finetune_steps // 10
    assert cfg("B1_s0")["init"] == str(tmp_path / "runs" / "W1_s0")
    # V0 / V4 fine-tune seed 1's W0 with variational noise; B0 and E4 without
    for key in ("V0_s1", "V4_s1"):
        c = cfg(key)
        assert c["init"] == str(tmp_path / "runs" / "W0_s1")
        assert c["train_config"]["weight_noise_std"] == rc.vn_std
        assert c["train_config"]["steps"] == rc.finetune_steps
    assert cfg("B0_s1")["train_config"]["weight_noise_std"] == 0
    assert cfg("E4_s1")["train_config"]["weight_noise_std"] == 0
    v = {r["key"]: r for r in meta["runs"] if r["exp"] in ("V0", "V2", "V4")}
    assert len(v) == 3 * len(rc.seeds)
    assert v["V0_s0"]["train"] == {"weight_noise_std": rc.vn_std} and v["V2_s0"]["train"] == {}
    assert v["V2_s1"]["start"] == "V0" and v["V2_s1"]["steps"] == 0
    assert {l["exp"] for l in meta["summary"]} >= {"V0", "V2", "V4"}
    # every hypothesis kept: dev and test of every row, and the WER recomputes from them
    for rec in records:
        for split in ("dev", "test"):
            res = rec["results"][split]
            utts = res["utterances"]
            assert len(utts) == res["n_utterances"] > 0
            refs = [u["ref"] or "<empty>" for u in utts]
            assert 100 * jiwer.wer(refs, [u["hyp"] for u in utts]) == pytest.approx(res["wer"])
    # PTQ rows quantize their seed's B0: same utterances, the row's own spec
    e2 = next(r for r in records if r["key"] == "E2_s1")
    assert e2["start"] == "B0" and e2["steps"] == 0 and e2["spec"] == "int4"
    text = (tmp_path / "claims.md").read_text()
    assert text.count("\n## C") == len(claims.CLAIMS)
    assert "## C23." in text and "V2 vs E2" in text and "hypothesis" in text
    assert {c["key"]: c["row"] for c in meta["claims"]}["C24"] == "V4"
    assert not next(c for c in meta["claims"] if c["key"] == "C25")["missing"]
    assert "dev: " in text and len(meta["claims"]) == len(claims.CLAIMS)
    # B0 is published for the notebooks: loadable, no optimizer checkpoints
    cfg0, spec, tok, params, meta0 = runs.load_run(tmp_path / "b0")
    assert str(spec) == "float" and not (tmp_path / "b0" / "checkpoints").exists()
    # a second run skips every row
    capsys.readouterr()
    reproduce.run("ci", None, tmp_path)
    assert capsys.readouterr().out.count("done already, skipped") == len(records)
    # the rows outlive the run directories (another session, another machine): a row
    # whose start is gone trains it again, and its record says whether it came out the same
    shutil.rmtree(tmp_path / "runs")
    gone = tmp_path / "rows" / "E3_s0.json"
    old = json.loads(gone.read_text())
    gone.unlink()
    capsys.readouterr()
    again = {r["key"]: r for r in reproduce.run("ci", None, tmp_path, only=["E3", "B0"])}
    out = capsys.readouterr().out
    assert "its start W0_s0 has no run directory: training it again" in out
    assert "[W0_s0] trained again" in out and "NOT the recorded start" not in out
    rebuilt = again["E3_s0"]["start_rebuilt"]["W0_s0"]
    w0 = next(r for r in records if r["key"] == "W0_s0")["results"]
    assert rebuilt == {k: [w0[k]["wer"], w0[k]["wer"]] for k in ("dev", "test")}
    assert again["E3_s0"]["results"]["test"]["utterances"] == old["results"]["test"]["utterances"]
    assert (tmp_path / "b0" / "params").is_dir(), "the published B0 is kept"
    assert not (tmp_path / "runs" / "W1_s0").exists(), "only the starts it needs"
    # a record of another plan is refused, not mixed in
    bad = tmp_path / "rows" / "E3_s0.json"
    rec = json.loads(bad.read_text())
    bad.write_text(json.dumps({**rec, "start": "B0"}))
    with pytest.raises(ValueError, match="another plan"):
        reproduce.run("ci", None, tmp_path)


def test_read_results_refuses_a_missing_or_old_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="usmlite-edu reproduce"):
        reproduce.read_results(tmp_path)
    (tmp_path / "results.json").write_text(json.dumps({"summary": [], "runs": []}))
    with pytest.raises(ValueError, match="older `usmlite-edu reproduce`"):
        reproduce.read_results(tmp_path)
    (tmp_path / "results.json").write_text(json.dumps({"claims": [], "runs": []}))
    (tmp_path / "rows").mkdir()
    assert reproduce.read_results(tmp_path) == {"claims": [], "runs": []}


@pytest.mark.parametrize("name", [n for n, p in presets.PRESETS.items() if p.reproduce])
def test_every_preset_plan_builds_every_row(name):
    """Each row's spec fits its model (e.g. E5-E7's group sizes divide every layer's
    input dimension), so a table of hours cannot stop at its first int2/gs row."""
    reproduce.check_plan(name)


def test_check_plan_refuses_a_group_size_that_does_not_divide_a_layer():
    """On AN4's 80 mel bins a group of 16 does not divide the subsampler's 360 inputs
    (though it divides the encoder's 96 and 384). The message names the preset, the row
    and the setting to change."""
    p = presets.get_preset("an4").override(["reproduce.group_sizes=(24,16,8)"])
    with pytest.raises(ValueError) as e:
        reproduce.check_plan(p)
    msg = str(e.value)
    assert "'an4'" in msg and "E6" in msg and "int2/gs16" in msg and "360" in msg
    assert "reproduce.group_sizes" in msg


def test_reproduce_refuses_an_unbuildable_plan_before_any_work(tmp_path):
    p = presets.get_preset("ci").override(["reproduce.group_sizes=(16,8,5)"])
    with pytest.raises(ValueError, match="group size 5"):
        reproduce.run(p, None, tmp_path / "out")
    assert not (tmp_path / "out").exists()
