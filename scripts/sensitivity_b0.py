"""Per-layer sensitivity of the committed B0 and bit allocations under three size budgets.

    PYTHONPATH=. python scripts/sensitivity_b0.py --out results/sensitivity

Reads ``results/cpu/b0`` (seed 0's float B0 of the ``cpu`` reproduction; it held out
speaker ``theo``) and FSDD's *dev* split as the reproduction builds it (training
speakers' recordings 5-9, synthesis seed 0; never test or unseen). Then:

1. a fixed batch of ``--utts`` dev utterances (a seeded choice among those of at most
   ``--max-seconds``): the loss sensitivity of every compressible weight to every
   candidate spec (that weight alone compressed, post-training), and HAWQ-V2's
   ``Omega`` from ``--samples`` Hutchinson samples of each weight's Hessian trace;
2. for each sensitivity kind and each budget (the paper-convention sizes of uniform
   ``int2/gs72``, ``int4+2:4`` (E12) and ``int4``), the exact (dynamic programming) and
   the greedy allocation;
3. the exact allocations evaluated post-training (each weight compressed with its spec
   in the parameters, the float model run) on the whole dev split, against the uniform
   spec of the same size on the same utterances: paired bootstrap of the WER difference
   (:func:`usmlite_edu.core.stats.paired_difference`), on all 50 dev utterances and on those
   outside the sensitivity batch.

Writes ``sensitivity.json`` (everything, with every transcript) and ``README.md``
(the tables) in ``--out``; ``stage1.json`` caches the measurements (``--reuse``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from usmlite_edu.core import sizes, stats
from usmlite_edu.search import sensitivity as S
from usmlite_edu.speech import runs
from usmlite_edu.speech.presets import get_preset
from usmlite_edu.training import reproduce, train

BUDGET_SPECS = ("int2/gs72", "int4+2:4", "int4")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--b0", default="results/cpu/b0")
    ap.add_argument("--data", default="/work/shared/corpora/fsdd")
    ap.add_argument("--out", default="results/sensitivity")
    ap.add_argument("--utts", type=int, default=16)
    ap.add_argument("--max-seconds", type=float, default=5.0)
    ap.add_argument("--samples", type=int, default=32, help="Hutchinson samples")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--specs", default=",".join(S.DEFAULT_SPECS))
    ap.add_argument("--reuse", action="store_true", help="reuse cached measurements")
    ap.add_argument(
        "--render", action="store_true", help="only rewrite README.md from sensitivity.json"
    )
    args = ap.parse_args()
    t0 = time.time()
    out = Path(args.out)
    if args.render:
        (out / "README.md").write_text(render(json.loads((out / "sensitivity.json").read_text())))
        return
    out.mkdir(parents=True, exist_ok=True)

    run = runs.load_run(args.b0)
    cfg, tcfg, meta = runs.read_config(args.b0)
    heldout = meta.get("heldout_speaker")
    rc = get_preset(meta["preset"]).reproduce
    dev = reproduce.eval_sets(
        rc, args.data, cfg, run.tokenizer, tcfg, heldout=heldout, splits=("dev",)
    )["dev"]
    names = S.compressible_names(cfg)
    weights = S.get_weights(run.params, names)
    specs = S.check_specs(
        ["float", *args.specs.split(",")], {n: w.shape for n, w in weights.items()}
    )
    groups = S.group_layers(names, "layer")

    # the fixed batch: a seeded choice of short dev utterances
    short = [
        i for i, e in enumerate(dev.examples) if e.audio.size <= args.max_seconds * cfg.sample_rate
    ]
    rng = np.random.default_rng(args.seed)
    pick = sorted(rng.choice(short, size=min(args.utts, len(short)), replace=False).tolist())
    batch = jax.tree.map(jnp.asarray, S.fixed_batch(dev, pick))
    picked_ids = [dev.examples[i].uid for i in pick]
    trainer = train.get_trainer(cfg, "float", tcfg)
    key = jax.random.PRNGKey(0)  # unused: deterministic loss, no dropout
    loss_fn = jax.jit(lambda p: trainer.loss(p, None, batch, key, deterministic=True))

    # The measurements are cached in --out (stage1.json): --reuse skips them when the
    # cache was made with the same settings (e.g. to redo only the allocations).
    cache = out / "stage1.json"
    settings = dict(vars(args), batch_ids=picked_ids, specs=specs)
    if args.reuse and cache.exists() and json.loads(cache.read_text())["settings"] == settings:
        c = json.loads(cache.read_text())
        base, loss_s, est = c["base"], np.array(c["loss"]), np.array(c["est"])
        t_loss, t_hess = c["t_loss"], c["t_hess"]
        print(f"reusing the measurements in {cache}", flush=True)
    else:
        t = time.time()
        base, loss_s = S.loss_sensitivity(loss_fn, run.params, groups, specs)
        t_loss = time.time() - t
        print(f"loss sensitivity: {len(groups)} x {len(specs) - 1} in {t_loss:.0f} s", flush=True)
        t = time.time()
        f = lambda w: trainer.loss(
            S.with_weights(run.params, w), None, batch, key, deterministic=True
        )
        est = S.hutchinson_traces(f, weights, args.samples, args.seed)
        t_hess = time.time() - t
        print(f"Hessian traces: {args.samples} samples in {t_hess:.0f} s", flush=True)
        cache.write_text(
            json.dumps(
                dict(
                    settings=settings,
                    base=base,
                    loss=loss_s.tolist(),
                    est=est.tolist(),
                    t_loss=t_loss,
                    t_hess=t_hess,
                )
            )
        )
    traces = dict(zip(names, est.mean(0)))
    trace_se = dict(zip(names, est.std(0, ddof=1) / np.sqrt(len(est))))
    t = time.time()
    omega = S.hessian_sensitivity(traces, weights, groups, specs)
    t_hess += time.time() - t
    # the first-order term HAWQ-V2 assumes away (a gradient of 0 at a trained model)
    f1 = lambda w: trainer.loss(S.with_weights(run.params, w), None, batch, key, deterministic=True)
    grads = jax.jit(jax.grad(f1))(weights)
    first = S.first_order_sensitivity(grads, weights, groups, specs)
    grad_norms = {n: float(jnp.linalg.norm(g)) for n, g in grads.items()}

    # allocations
    size_bits = S.spec_sizes(cfg, groups, specs, "paper")
    budgets = {s: sizes.size_ratio(s, cfg, "paper") for s in BUDGET_SPECS}
    kinds = {"loss": loss_s, "hessian": omega}
    allocs = []
    for uni, pct in budgets.items():
        cap = S.budget_bits(cfg, groups, pct, "paper")
        for kind, cost in kinds.items():
            for method in ("exact", "greedy"):
                solve = S.allocate_exact if method == "exact" else S.allocate_greedy
                a = solve(cost, size_bits, cap)
                chosen = a.specs(specs)
                assign = {n: s for (g, members), s in zip(groups.items(), chosen) for n in members}
                allocs.append(
                    dict(
                        budget_spec=uni,
                        budget=pct,
                        kind=kind,
                        method=method,
                        cost=a.cost,
                        size_paper=S.size_of(cfg, assign, "paper"),
                        size_exact=S.size_of(cfg, assign, "exact"),
                        specs=dict(zip(groups, chosen)),
                        counts={s: chosen.count(s) for s in specs if chosen.count(s)},
                    )
                )

    # evaluation: exact allocations and uniform specs, PTQ, whole dev split
    t = time.time()

    def evaluate(assign):
        p = S.with_weights(run.params, S.compress_layers(weights, assign))
        return trainer.evaluate(p, None, dev, run.tokenizer)["transcripts"]

    uniform = {u: evaluate({n: u for n in names}) for u in budgets}
    float_tr = evaluate({})
    rest = set(u["id"] for u in float_tr) - set(picked_ids)
    comparisons = []
    for a in allocs:
        if a["method"] != "exact":
            continue
        members = {n for ms in groups.values() for n in ms}
        assign = {n: a["specs"][g] for g, ms in groups.items() for n in ms if n in members}
        a["transcripts"] = evaluate(assign)
        for subset, keep in (("dev", None), ("dev minus batch", rest)):
            sel = lambda tr, keep=keep: [u for u in tr if keep is None or u["id"] in keep]
            sa, sb = stats.score(sel(a["transcripts"])), stats.score(sel(uniform[a["budget_spec"]]))
            iv = stats.paired_difference([sa], [sb], seed=0)
            comparisons.append(
                dict(
                    budget_spec=a["budget_spec"],
                    kind=a["kind"],
                    subset=subset,
                    utterances=len(sa),
                    wer_alloc=sa.wer,
                    wer_uniform=sb.wer,
                    diff=iv.estimate,
                    lo=iv.lo,
                    hi=iv.hi,
                )
            )
    t_eval = time.time() - t
    wall = time.time() - t0
    float_wer = stats.score(float_tr).wer

    rec = dict(
        b0=args.b0,
        b0_git_commit=meta.get("git_commit"),
        git_commit=runs.git_commit(),
        machine=runs.machine_info(),
        split="dev",
        heldout_speaker=heldout,
        batch_ids=picked_ids,
        args=vars(args),
        specs=specs,
        grouping="layer",
        groups=groups,
        base_loss=base,
        loss_sensitivity=loss_s.tolist(),
        traces=traces,
        trace_se=trace_se,
        trace_samples=est.tolist(),
        hessian_sensitivity=omega.tolist(),
        first_order=first.tolist(),
        grad_norms=grad_norms,
        spearman_first_order_loss=S.spearman(loss_s[:, 1:], first[:, 1:]),
        spearman_first_plus_omega_loss=S.spearman(loss_s[:, 1:], (first + omega)[:, 1:]),
        clipped_traces=int(sum(t < 0 for t in traces.values())),
        spearman_all=S.spearman(loss_s[:, 1:], omega[:, 1:]),
        spearman_per_spec={
            s: S.spearman(loss_s[:, k], omega[:, k]) for k, s in enumerate(specs) if k
        },
        size_bits_paper=size_bits.tolist(),
        budgets=budgets,
        allocations=allocs,
        float_wer=float_wer,
        float_transcripts=float_tr,
        uniform={u: dict(wer=stats.score(tr).wer, transcripts=tr) for u, tr in uniform.items()},
        comparisons=comparisons,
        time_s=dict(loss=t_loss, hessian=t_hess, evaluation=t_eval, total=wall),
    )
    (out / "sensitivity.json").write_text(json.dumps(rec, indent=1, default=runs.json_default))
    (out / "README.md").write_text(render(rec))
    print(render(rec))


def _table(rec, key, fmt) -> list[str]:
    specs = rec["specs"][1:]
    lines = ["| layer | " + " | ".join(f"`{s}`" for s in specs) + " |"]
    lines.append("|---|" + "---:|" * len(specs))
    for g, row in zip(rec["groups"], rec[key]):
        lines.append(f"| {g} | " + " | ".join(fmt(v) for v in row[1:]) + " |")
    return lines


def _short(commit: str) -> str:
    return commit[:10] + ("-dirty" if commit.endswith("-dirty") else "")


def _reading(c: dict) -> str:
    """What the interval of allocation - uniform allows."""
    if c["hi"] < 0:
        return "allocation better"
    if c["lo"] > 0:
        return "uniform better"
    return "inconclusive"


def role_summary(rec: dict) -> list[str]:
    """Both kinds per role, averaged over the blocks (a summary of the per-layer tables)."""
    specs = rec["specs"][1:]
    roles: dict[str, list[int]] = {}
    for i, g in enumerate(rec["groups"]):
        roles.setdefault(g.split(".", 1)[1] if g.startswith("b") else g, []).append(i)
    L = [
        "Per role, mean over the blocks: loss increase / Omega "
        "(the per-layer values are in the tables above):",
        "",
        "| role (layers) | " + " | ".join(f"`{s}`" for s in specs) + " |",
        "|---|" + "---:|" * len(specs),
    ]
    loss, om = np.array(rec["loss_sensitivity"]), np.array(rec["hessian_sensitivity"])
    for r, idx in roles.items():
        cells = [
            f"{loss[idx, k].mean():+.3f} / {om[idx, k].mean():.1e}"
            for k in range(1, len(specs) + 1)
        ]
        L.append(f"| {r} ({len(idx)}) | " + " | ".join(cells) + " |")
    return L


def render(rec: dict) -> str:
    m = rec["machine"]
    t = rec["time_s"]
    L = [
        "# Per-layer sensitivity of B0 and bit allocation (post-training, dev split)",
        "",
        f"Written by `scripts/sensitivity_b0.py` (commit {_short(rec['git_commit'])}) from "
        f"`{rec['b0']}` on the FSDD dev split (held-out speaker {rec['heldout_speaker']}, "
        f"{len(rec['float_transcripts'])} utterances; B0 float WER "
        f"{rec['float_wer']:.2f}%). Processor: {m.get('processor')}, {m.get('cpus')} cores. "
        f"Wall time {t['total']:.0f} s (loss sensitivity {t['loss']:.0f} s, Hessian "
        f"traces {t['hessian']:.0f} s, evaluation {t['evaluation']:.0f} s).",
        "",
        f"Fixed batch: {len(rec['batch_ids'])} dev utterances of at most "
        f"{rec['args']['max_seconds']} s (seed {rec['args']['seed']}); its float CTC loss "
        f"{rec['base_loss']:.4f} per label token. Every weight is its own group "
        "(`b<block>.<module>.<layer>`; `frontend.proj` is the input projection).",
        "",
        "## Loss sensitivity: CTC loss increase with only this layer compressed",
        "",
        *_table(rec, "loss_sensitivity", lambda v: f"{v:+.4f}"),
        "",
        f"## Hessian sensitivity (HAWQ-V2): Omega = tr(H)/n * ||Q(W)-W||^2, "
        f"{rec['args']['samples']} Hutchinson samples",
        "",
        *_table(rec, "hessian_sensitivity", lambda v: f"{v:.2e}"),
        "",
        "Hessian trace estimates per layer (mean +- standard error over samples; a "
        "negative estimate is clipped to 0 in Omega):",
        "",
        "| layer | tr(H) | s.e. |",
        "|---|---:|---:|",
    ]
    for g, members in rec["groups"].items():
        for n in members:
            L.append(f"| {g} | {rec['traces'][n]:.2f} | {rec['trace_se'][n]:.2f} |")
    L += ["", *role_summary(rec)]
    L += [
        "",
        f"Spearman rank correlation between the two kinds over every (layer, spec): "
        f"**{rec['spearman_all']:.2f}**; per spec: "
        + ", ".join(f"`{s}` {r:.2f}" for s, r in rec["spearman_per_spec"].items())
        + ".",
        "",
        f"{rec['clipped_traces']} of {len(rec['traces'])} trace estimates are negative "
        "(clipped to 0 in Omega). HAWQ-V2's Omega keeps only the second-order term of "
        "`dL = g.dW + 1/2 dW^T H dW`, assuming a gradient of 0 at the trained weights. "
        "The first-order term `g.(Q(W)-W)` on this batch ranks the loss sensitivities with "
        f"Spearman **{rec['spearman_first_order_loss']:.2f}**; first-order + Omega: "
        f"{rec['spearman_first_plus_omega_loss']:.2f}. Gradient norm per layer on the batch: "
        f"median {np.median(list(rec['grad_norms'].values())):.3g}, "
        f"largest {max(rec['grad_norms'].values()):.3g} "
        f"(`{max(rec['grad_norms'], key=rec['grad_norms'].get)}`).",
        "",
        "## Allocations (paper-convention size budget)",
        "",
        "| budget | kind | method | summed sensitivity | size paper % | size exact % | "
        "specs chosen (count) |",
        "|---|---|---|---:|---:|---:|---|",
    ]
    for a in rec["allocations"]:
        counts = ", ".join(f"`{s}` {c}" for s, c in a["counts"].items())
        L.append(
            f"| {a['budget']:.2f}% (= `{a['budget_spec']}`) | {a['kind']} | {a['method']} | "
            f"{a['cost']:.4g} | {a['size_paper']:.2f} | {a['size_exact']:.2f} | {counts} |"
        )
    L += [
        "",
        "## Exact allocations against the uniform spec of the same size (PTQ, dev)",
        "",
        "WER difference allocation - uniform, points, with the 95% paired bootstrap "
        "interval over utterances (one seed: B0 seed 0). *dev minus batch* leaves out "
        "the utterances the sensitivities were measured on.",
        "",
        "| budget | kind | utterances | WER allocation | WER uniform | difference [95% CI] "
        "| reading |",
        "|---|---|---|---:|---:|---|---|",
    ]
    for c in rec["comparisons"]:
        L.append(
            f"| `{c['budget_spec']}` | {c['kind']} | {c['subset']} ({c['utterances']}) | "
            f"{c['wer_alloc']:.2f} | {c['wer_uniform']:.2f} | "
            f"{c['diff']:+.2f} [{c['lo']:+.2f}, {c['hi']:+.2f}] | {_reading(c)} |"
        )
    L += [
        "",
        "Per-layer choices of the exact allocations:",
        "",
        "| layer | "
        + " | ".join(
            f"{a['budget_spec']} {a['kind']}" for a in rec["allocations"] if a["method"] == "exact"
        )
        + " |",
        "|---|" + "---|" * sum(a["method"] == "exact" for a in rec["allocations"]),
    ]
    for g in rec["groups"]:
        L.append(
            f"| {g} | "
            + " | ".join(f"`{a['specs'][g]}`" for a in rec["allocations"] if a["method"] == "exact")
            + " |"
        )
    L += [
        "",
        "This is post-training compression of one float model on the dev split: not "
        "the QAT of issue 16 (training with a per-layer spec map), and not test/unseen "
        "or three seeds, which are left for that training.",
        "",
    ]
    return "\n".join(L)


if __name__ == "__main__":
    main()
