# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 13 · Deep dive (optional, after 07): the reduced-scale Tables 1-3 and the paper's claims
#
# Notebook 07 loaded the dense model B0, quantized it without training and fine-tuned
# `int4+2:4` with Algorithm 1. `usmlite-edu reproduce` did that for every row of the
# paper's Tables 1-3, at our scale and with every seed of its plan, and kept what it
# found in `results/cpu` (committed). This notebook reads it: the table, every WER
# recomputed from the stored transcripts, and each of the paper's claims as a paired
# difference with its 95% interval and verdict, then what may make a 2M-parameter model
# agree or disagree with the paper. It is an optional deep dive after notebook 07: no
# later notebook needs it. It trains nothing and loads no model, so fast mode
# (`USMLITE_FAST=1`) changes nothing in it.
#
# **After this notebook you will be able to**
#
# * read the reduced-scale Tables 1-3 (`table.md`, `table.csv`, `results.json`) and check
#   that the three agree;
# * recompute every WER of the table from the stored transcripts, without the models
#   (WER as in §4.2: greedy CTC decoding, no language model);
# * read each of the paper's claims as a paired difference (same seed, same utterances)
#   with its 95% bootstrap interval and the fixed rule that gives its verdict, and say
#   why pairing narrows the interval;
# * explain why a 2M-parameter model on spoken digits can agree or disagree with a
#   2B-parameter USM, table by table, and what the paper's own hypothesis (variational
#   noise) predicts;
# * find the rows' Pareto frontier, weigh one word of an evaluation set in WER points,
#   and measure how much the verdicts depend on the margin of their rule.

# %% [markdown] tags=["header"]
# [![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/usmlite-edu/usmlite_edu/blob/main/notebooks/13_reproducing_tables_1_3.ipynb) [![Launch on Binder](https://mybinder.org/badge_logo.svg)](https://mybinder.org/v2/gh/usmlite-edu/usmlite_edu/main?labpath=notebooks%2F13_reproducing_tables_1_3.ipynb)
#
# * **Before you start:** Notebook 07; paired bootstrap intervals (explained inside). Optional: no later notebook needs it.
# * **Reading time:** about 45 min (its text at 120 words a minute, 5 min an exercise).
# * **Running time:** 6 s in fast mode; 6 s in full mode (AMD EPYC (cpu family 25, model 17, stepping 1), 2 cores shared with other jobs; `python scripts/time_notebooks.py`). Fast mode (`USMLITE_FAST=1`) uses tiny sizes; full mode is what the figures in the text describe.

# %% tags=["colab"]
# Colab only (elsewhere this cell does nothing): clone the repository, install the
# package and work in the clone's notebooks/ folder, as in a local checkout.
import os
import subprocess
import sys

if "google.colab" in sys.modules:
    CLONE = "/content/usmlite_edu"
    if not os.path.isdir(CLONE):
        subprocess.run(
            ["git", "clone", "--depth", "1", "https://github.com/usmlite-edu/usmlite_edu", CLONE],
            check=True,
        )
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", CLONE], check=True)
    sys.path.insert(0, CLONE)  # an editable install is seen by new kernels only
    os.chdir(f"{CLONE}/notebooks")

# %%
# %matplotlib inline
from usmlite_edu.course.notebook_setup import setup

# The same set-up cell opens every notebook of the series (usmlite_edu/course/notebook_setup.py):
# it reads USMLITE_FAST (1 = tiny sizes and few steps, what the test command uses), seeds
# NumPy and JAX, sets matplotlib defaults and finds the checkout's data_small/ and results/.
# compilation_cache=True calls usmlite_edu.enable_compilation_cache(): a *global* JAX
# setting for this whole kernel, which keeps compiled XLA programs on disk so that running
# a notebook again skips recompiling (USMLITE_JAX_CACHE=0 turns it off).
env = setup(seed=0, compilation_cache=True)
FAST, SEED, rng, key = env.fast, env.seed, env.rng, env.key
print(env.summary())

# %%
# This notebook's imports, and the reproduction it reads.
import csv
import json
import os
import textwrap
import time
from pathlib import Path

import jiwer
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Image, Markdown, display

from usmlite_edu.core import stats
from usmlite_edu.course import answers
from usmlite_edu.speech import configs
from usmlite_edu.training import claims, reproduce

REPO = env.repo or Path.cwd()  # the clone (outside one, the working directory)
# The output of `usmlite-edu reproduce --preset cpu ... --out results/cpu` ($USMLITE_RESULTS: another).
RESULTS = Path(os.environ.get("USMLITE_RESULTS") or REPO / "results" / "cpu").expanduser()
# read and checked by the library: a missing or outdated folder says what to run
RESULTS_JSON = reproduce.read_results(RESULTS)
PRESET = RESULTS_JSON["preset"]  # the preset the reproduction ran (cpu: B0 of notebook 07)
SUMMARY = {line["exp"]: line for line in RESULTS_JSON["summary"]}  # row -> its table line
RECORDS = {(r["exp"], r["seed"]): r for r in RESULTS_JSON["runs"]}  # (row, seed) -> its run
# the reproduction's settings as it ran them (seeds, steps, group sizes, T_p, ...)
rc = configs.config_from_dict(configs.ReproConfig, RESULTS_JSON["config"])
print(
    f"results {RESULTS}: preset {PRESET!r} on {RESULTS_JSON['config']['corpus']!r}, "
    f"{len(SUMMARY)} rows, {len(RECORDS)} runs"
)

# %% [markdown]
# ## 1. The reduced-scale Tables 1-3
#
# `usmlite-edu reproduce` ran every row of the paper's three tables at our scale, each
# with every seed of its plan (`rc.seeds`), as siblings (notebook 07, section 1). Per
# seed `s`:
#
# * **W0_s** (and **W1_s-W3_s**, the starts of the dense B1-B3 with about 50% / 33% /
#   19% of B0's parameters, as the paper's 1B / 600M / 300M are of its 2B): trained
#   from scratch, the pre-trained checkpoints;
# * **B0_s** and every QAT or pruning row (**E1, E3-E13**): W0_s fine-tuned for the
#   same `rc.finetune_steps` steps, each with its compression on from step 1 (B1-B3
#   from W1-W3, in float);
# * **E0 / E2**: int8 / int4 PTQ of B0_s, no training;
# * **V0, V2, V4**, not rows of the paper: B0 and E4 fine-tuned with variational noise
#   (V0, V4) and int4 PTQ of V0 (V2), which test the paper's own explanation of its
#   failures (the paper's section 5.4; the end of section 5 here).
#
# Each row's WER is its mean over seeds, with a 95% bootstrap interval (seeds
# resampled, then each seed's utterances) and δ, the smallest difference its
# evaluation set can detect. The W rows close the table: they are starting points,
# not rows of the paper. Here is its `table.md`, as written:

# %%
display(Markdown((RESULTS / "table.md").read_text()))

# %% [markdown]
# The same numbers are in `table.csv` (for a spreadsheet) and in `results.json`'s
# `summary` (for code), which also keeps every run's metadata: git commit, spec,
# seed, held-out speaker, steps, wall time, machine. The check reads the CSV with the
# standard library and asserts that the three files agree, and that every row ran
# every seed of the plan.

# %%
with open(RESULTS / "table.csv", newline="") as f:
    table_rows = list(csv.DictReader(f))
table_md = (RESULTS / "table.md").read_text()
assert [r["exp"] for r in table_rows] == list(SUMMARY)
for r in table_rows:
    line = SUMMARY[r["exp"]]
    assert abs(float(r["wer_test"]) - line["wer_test"]) < 1e-9
    assert abs(float(r["size_paper"]) - line["size_paper"]) < 1e-9
    assert f"| {r['exp']} |" in table_md and f"{line['wer_test']:.2f}" in table_md
runs_per_exp = {e: sum(1 for (x, _) in RECORDS if x == e) for e in SUMMARY}
assert all(runs_per_exp[e] == SUMMARY[e]["seeds"] for e in SUMMARY)
PLAN_SEEDS = list(RESULTS_JSON["config"]["seeds"])
short = [e for e in SUMMARY if SUMMARY[e]["seeds"] != len(PLAN_SEEDS)]
assert not short, f"rows {short} did not run every seed of the plan {PLAN_SEEDS}"
print(
    f"table.md, table.csv and results.json agree on {len(table_rows)} rows, each with "
    f"{len(PLAN_SEEDS)} seeds ({len(RECORDS)} runs, commit {RESULTS_JSON['git_commit'][:12]})"
)

# %% [markdown]
# ## 2. Every WER from its transcripts
#
# A WER in the table is a summary; the evidence is in `rows/`: one JSON file per row
# and seed (`rows/E12_s1.json`, ...) that keeps, for every split it was evaluated on,
# every utterance's `{"id", "ref", "hyp"}`. Anyone can recompute the numbers from
# them, without the models. The corpus WER of one row, seed and split is `jiwer.wer`
# over its references and hypotheses (the word errors of all utterances summed,
# divided by all reference words), times 100; an empty reference counts as the one
# word `<empty>` (`decoding.wer_cer`). The check does it for every file and split and
# compares with the WER the reproduction recorded.

# %%
ROWS = {}  # (exp, seed) -> the row's full record, transcripts included
checked_wers = 0
for path in sorted((RESULTS / "rows").glob("*_s*.json")):
    rec = json.loads(path.read_text())
    ROWS[(rec["exp"], rec["seed"])] = rec
    for split, res in rec["results"].items():
        if not (isinstance(res, dict) and "wer" in res):
            continue  # params, model_config
        refs = [u["ref"] if u["ref"].strip() else "<empty>" for u in res["utterances"]]
        hyps = [u["hyp"] for u in res["utterances"]]
        wer = 100.0 * jiwer.wer(refs, hyps)
        assert abs(wer - res["wer"]) < 1e-9, (path.name, split, wer, res["wer"])
        assert len(refs) == res["n_utterances"] > 0
        assert res["wer"] == RECORDS[(rec["exp"], rec["seed"])]["results"][split]["wer"]
        checked_wers += 1
assert set(ROWS) == set(RECORDS), "one row file per run of results.json"
ROW_SPLITS = [s for s in reproduce.SPLITS if any(s in r["results"] for r in ROWS.values())]
print(
    f"{checked_wers} WERs ({len(ROWS)} row files x splits {ROW_SPLITS}) recomputed with "
    "jiwer from the transcripts: every one equals the recorded WER"
)

# %% [markdown]
# `plot.png` puts every row but the W starts on the paper's axes: WER against the size
# ratio (log scale), with 95% interval bars and the Pareto frontier of the means (no
# other row is both smaller and better); one panel per split we judge (test, and
# unseen where a speaker was held out), the paper's on the last panel. The paper's
# frontier runs B0 -> E12: the joint model sits at the knee.

# %%
display(Image(filename=str(RESULTS / "plot.png")))

# %% [markdown]
# ## 3. Checking the paper's claims: paired differences
#
# A claim of the paper compares two rows: "int4 + 2:4 costs only a marginal
# regression" is E12 against B0. `usmlite_edu.training.claims.CLAIMS` lists such comparisons
# (C1-C22 from the paper's sections 5.1-5.3; C23-C25 test its section 5.4 hypothesis), and
# `claims.judge` measures each on the rows' transcripts as a **paired difference**
# (`usmlite_edu/core/stats.py`):
#
#     D = (1/S) * sum_s (WER_row,s - WER_base,s)      WER points; positive: the row makes more errors
#
# over the S seeds both rows ran. It is paired twice over:
#
# * **by seed.** Seed `s` of a row and seed `s` of its baseline started from the same
#   W0_s, saw the training data in the same order with the same dropout, held out the
#   same speaker and were evaluated on the same utterances; `WER_row,s - WER_base,s`
#   compares two systems that differ only in their compression. The per-seed
#   differences are printed beside `D`: how far two seeds of one comparison land apart.
# * **by utterance.** The 95% interval is a paired bootstrap: 2,000 times, for each
#   seed, draw that seed's utterances with replacement, *the same draw for both rows*,
#   recompute both WERs on the drawn utterances and average the seeds' differences;
#   the interval runs from the 2.5th to the 97.5th percentile of those averages
#   (`stats.paired_difference`). Seeds are not resampled: the interval covers which
#   utterances happened to be in the evaluation set, given the trained models.
#
# Why pair the utterances? Much of what varies from one evaluation set to another is
# the utterances themselves: a mumbled digit or a clipped recording is hard for every
# row. Resampled independently for the two rows, a hard utterance drawn twice for one
# row and not at all for the other moves `D` although neither system changed. Drawn
# together, it adds its errors to both sides, and they cancel: the interval measures
# only where the two systems *disagree*. The more two systems' errors fall on the same
# utterances (siblings from the same W0 often do), the narrower the paired interval
# is than an unpaired one; a cell below measures both on one claim.
#
# **The verdict** of a claim is a fixed rule on the interval `[lo, hi]` of `D` and the
# margin `m` (`stats.EQUIVALENCE_MARGIN`), quoted from `usmlite_edu/core/stats.py`:
#
# | kind | the paper says | *reproduced* when | *not reproduced* when |
# |---|---|---|---|
# | `worse` | the row is worse | `lo > 0` | `hi < m` |
# | `better` | the row is better | `hi < 0` | `lo > -m` |
# | `no_worse` | nearly free: at most a marginal regression | `hi < m` | `lo >= m` |
# | `same` | no real difference | `-m < lo, hi < m` | `lo >= m` or `hi <= -m` |
#
# "checked in this order; *inconclusive* otherwise, i.e. when the interval allows both
# readings. A direction (`worse` / `better`) is reproduced when the interval lies on
# the paper's side of 0, and not reproduced when it excludes a change of the margin's
# size in the paper's direction [...]. A nearly-free claim is a non-inferiority test:
# the row may be better than its baseline." The margin is one WER point, absolute: the
# paper calls differences of up to 0.4 point "marginal" and reads 1.1 points as real
# (the docstring of `stats.py` gives the reasoning), and "at our B0's WER one point is a
# large relative change: read a reproduced 'nearly free' as 'costs less than one WER
# point'".
#
# Two more rules, from `usmlite_edu/training/claims.py`: verdicts are given on *test* and
# *unseen* (the held-out speakers) separately, while *dev*, "the split on which recipes
# are chosen", is shown and never judged; and "on a split where B0's mean WER is above
# `MAX_WORKING_WER`, B0 does not recognise speech, and every verdict on that split is
# *inconclusive*" (comparisons between broken models say nothing about the paper).
# `claims.md` renders all of it as text; `results.json["claims"]` holds the same numbers
# for code: per claim its rows, kind, seeds, and per split the interval (`estimate`,
# `lo`, `hi`, `se`, `per_seed`), the verdicts and the reasons for any verdict that is
# not the interval's.
#
# The cell below reads that list and defines `show_claim(key_or_words, extra_rows)`,
# which prints a claim (by key, `"C17"`, or by words of its title, `"1:4 few-shot is"`):
# what the paper says and its numbers, the rule, the rows' mean WERs, `D` with its 95%
# interval per split, the per-seed differences, and the verdict with its reason.

# %%
MARGIN = stats.EQUIVALENCE_MARGIN  # the margin of the verdict rules, in WER points
CLAIMS = {c["key"]: c for c in RESULTS_JSON["claims"]}  # what the reproduction judged
PAPER = {c.key: c for c in claims.CLAIMS}  # the paper's side: statement, kind, WERs, notes
D_SPLITS = [
    s for s in ("test", "unseen", "dev") if any(s in c["differences"] for c in CLAIMS.values())
]
JUDGED = [s for s in D_SPLITS if s in claims.JUDGED_SPLITS]
SHOWN = set()  # the claims shown so far


def find_claim(key_or_words):
    if key_or_words.upper() in CLAIMS:
        return key_or_words.upper()
    hits = [k for k, c in CLAIMS.items() if key_or_words.lower() in c["title"].lower()]
    assert len(hits) == 1, f"{key_or_words!r} matches {[CLAIMS[k]['title'] for k in hits]}"
    return hits[0]


def fmt_wer(line, s):
    if line.get(f"wer_{s}") is None:
        return "-"
    return f"{line[f'wer_{s}']:.2f} [{line[f'wer_{s}_lo']:.2f}, {line[f'wer_{s}_hi']:.2f}]"


def fmt_d(d):
    return f"{d['estimate']:+.2f} [{d['lo']:+.2f}, {d['hi']:+.2f}]"


def show_claim(key_or_words, extra_rows=()):
    key = find_claim(key_or_words)
    c, p = CLAIMS[key], PAPER.get(key)
    SHOWN.add(key)
    print(f"{key}. {c['title']}" + (f" (section {p.section})" if p else ""))
    if p is not None:
        if p.paper_row is None:
            figures = f"no figure for {p.row} (the paper's hypothesis, not its result)"
        else:
            figures = (
                f"{p.row} {p.paper_row:g} vs {p.base} {p.paper_base:g} "
                f"({p.paper_row - p.paper_base:+.1f} points)"
            )
        print(f"  the paper: {p.statement}; {figures}")
    print(f"  rule ({c['kind']}, m = {MARGIN:g}): {claims._rule(c['kind'], MARGIN)}")
    print(
        f"\n  {'row':4s} {'spec':14s} "
        + " ".join(f"{s + ' WER [95%]':>23s}" for s in D_SPLITS)
        + "  size"
    )
    for e in dict.fromkeys([c["row"], c["base"], *extra_rows]):
        l = SUMMARY.get(e)
        if l is None:
            print(f"  {e:4s} (not in this table)")
            continue
        wers = " ".join(f"{fmt_wer(l, s):>23s}" for s in D_SPLITS)
        print(f"  {e:4s} {l['spec']:14s} {wers}  {l['size_paper']:.1f}%")
    if c["missing"]:
        print(f"\n  not judged: no record of {', '.join(c['missing'])}\n")
        return {}
    print(f"\n  D = WER({c['row']}) - WER({c['base']}), mean over seeds {c['seeds']}:")
    for s in D_SPLITS:
        d = c["differences"].get(s)
        if d is None:
            continue
        per = ", ".join(f"{x:+.2f}" for x in d["per_seed"])
        if s in JUDGED:
            v = c["verdicts"].get(s, "not judged")
            why = c["reasons"].get(s)
            tail = f"-> {v.upper()}" + (f" ({why})" if why else "")
        else:
            tail = "(not judged: recipes are chosen on dev)"
        print(f"  {s:7s} D = {fmt_d(d):24s} per seed {per:22s} {tail}")
    if p is not None and p.note:
        print(textwrap.fill(p.note, 100, initial_indent="  note: ", subsequent_indent="  "))
    print()
    return c["verdicts"]


print(f"{len(CLAIMS)} claims; margin {MARGIN:g} WER point; verdicts on {', '.join(JUDGED)}")
for k, c in CLAIMS.items():
    verdicts = "  ".join(f"{s}: {c['verdicts'].get(s, '-'):15s}" for s in JUDGED)
    print(f"  {k:4s} {verdicts} {c['title']}")

# %% [markdown]
# **The check** recomputes every verdict from the transcripts: `claims.judge` on the
# row files (the same function, defaults and random seed the reproduction used, so the
# same intervals to the last digit), and then each verdict from its interval with
# `stats.verdict`, the rule of the table above.

# %%
t0 = time.time()
again = {j.claim.key: j for j in claims.judge(list(ROWS.values()))}
assert set(again) == set(CLAIMS) == set(PAPER), "results.json judges the library's claims"
for key, c in CLAIMS.items():
    j, p = again[key], PAPER[key]
    assert (c["row"], c["base"], c["kind"]) == (p.row, p.base, p.kind)
    assert tuple(c["seeds"]) == j.seeds and c["verdicts"] == j.verdicts
    assert set(c["differences"]) == set(j.differences)
    for s, d in c["differences"].items():
        iv = j.differences[s]
        assert np.allclose(
            [d["estimate"], d["lo"], d["hi"]], [iv.estimate, iv.lo, iv.hi], atol=1e-9
        )
        assert len(d["per_seed"]) == len(c["seeds"])
        assert abs(np.mean(d["per_seed"]) - d["estimate"]) < 1e-9, "D is the mean of the seeds'"
    for s, v in c["verdicts"].items():
        d = c["differences"][s]
        if s in c["reasons"]:  # the working-recognizer rule
            assert v == "inconclusive" and SUMMARY["B0"][f"wer_{s}"] > claims.MAX_WORKING_WER
        else:
            assert v == stats.verdict(d["lo"], d["hi"], c["kind"], MARGIN), (key, s)
print(
    f"{len(CLAIMS)} claims re-judged from {len(ROWS)} row files in {time.time() - t0:.1f} s: "
    "the same intervals and verdicts as results.json"
)

# %% [markdown]
# One picture of all of them: for every claim, `D` with its 95% interval on each
# judged split, the margin band `±m` and the zero line, coloured by verdict. Read a
# `worse` claim as "is the bar right of 0?", a `better` claim as "left of 0?", a
# `no_worse` claim as "does the bar stay left of `+m`?", and a `same` claim as "is the
# bar inside the band?".

# %%
VERDICT_COLOUR = {
    "reproduced": "tab:green",
    "not reproduced": "tab:red",
    "inconclusive": "tab:gray",
}
SPLIT_MARK = {"test": "o", "unseen": "s"}
keys = list(CLAIMS)
fig, ax = plt.subplots(figsize=(9, 0.3 * len(keys) + 1.6))
ax.axvspan(-MARGIN, MARGIN, color="tab:blue", alpha=0.12, lw=0)
ax.axvline(0.0, color="k", lw=0.8)
shift = (
    dict(zip(JUDGED, np.linspace(-0.18, 0.18, len(JUDGED))))
    if len(JUDGED) > 1
    else {s: 0.0 for s in JUDGED}
)
plotted = 0
for i, k in enumerate(keys):
    for s in JUDGED:
        d = CLAIMS[k]["differences"].get(s)
        if d is None:
            continue
        colour = VERDICT_COLOUR[CLAIMS[k]["verdicts"].get(s, "inconclusive")]
        ax.hlines(i + shift[s], d["lo"], d["hi"], color=colour, lw=2)
        ax.plot(d["estimate"], i + shift[s], SPLIT_MARK.get(s, "o"), color=colour, ms=4)
        plotted += 1
ax.set_yticks(
    range(len(keys)),
    [f"{k} {CLAIMS[k]['row']} vs {CLAIMS[k]['base']} ({CLAIMS[k]['kind']})" for k in keys],
    fontsize=8,
)
ax.invert_yaxis()
reach = max(
    (
        abs(v)
        for c in CLAIMS.values()
        for d in c["differences"].values()
        for v in (d["lo"], d["hi"])
    ),
    default=0.0,
)
if reach > 15 * MARGIN:  # a few large differences: linear around the margin, logarithmic beyond
    ax.set_xscale("symlog", linthresh=2 * MARGIN)
ax.set_xlabel("D = WER(row) - WER(base), WER points, with its 95% paired interval")
handles = [plt.Line2D([], [], color=c, lw=2, label=v) for v, c in VERDICT_COLOUR.items()]
handles += [
    plt.Line2D([], [], color="k", ls="", marker=SPLIT_MARK.get(s, "o"), label=s) for s in JUDGED
]
handles.append(
    plt.Rectangle((0, 0), 1, 1, color="tab:blue", alpha=0.12, label=f"margin ±{MARGIN:g}")
)
ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
ax.set_title(f"The paper's claims at our scale ({PRESET}, {len(PLAN_SEEDS)} seeds)")
plt.show()
assert plotted == sum(s in c["differences"] for c in CLAIMS.values() for s in JUDGED)
print(f"{plotted} intervals plotted ({len(keys)} claims x {', '.join(JUDGED)})")

# %% [markdown]
# **Paired against unpaired, measured.** C17 compares E12 with B0, two siblings of
# the same W0. The cell scores their test transcripts (`stats.score`: word errors and
# reference words per utterance) and computes `D`'s interval twice with the same
# number of resamples: paired, as the verdicts do (`stats.paired_difference`), and
# unpaired, drawing each row's utterances independently. It also prints how strongly
# the two rows' per-utterance errors go together (their correlation over seed 0's
# utterances): the stronger, the more pairing narrows the interval.

# %%
demo = CLAIMS[find_claim("C17")]
per_seed = lambda e: [
    stats.score(ROWS[(e, s)]["results"]["test"]["utterances"]) for s in demo["seeds"]
]
a_sc, b_sc = per_seed(demo["row"]), per_seed(demo["base"])
paired = stats.paired_difference(a_sc, b_sc)


def unpaired_interval(a, b, resamples=stats.DEFAULT_RESAMPLES, seed=0):
    # the same bootstrap, but the two rows' utterances drawn independently
    rng = np.random.default_rng(seed)
    total = np.zeros(resamples)
    for sa, sb in zip(a, b):
        ia = rng.integers(0, len(sa), size=(resamples, len(sa)))
        ib = rng.integers(0, len(sb), size=(resamples, len(sb)))
        wa = 100.0 * sa.errors[ia].sum(1) / sa.words[ia].sum(1)
        wb = 100.0 * sb.errors[ib].sum(1) / sb.words[ib].sum(1)
        total += wa - wb
    return np.quantile(total / len(a), [0.025, 0.975])


lo_u, hi_u = unpaired_interval(a_sc, b_sc)
ea, eb = a_sc[0].errors, b_sc[0].errors
corr = float(np.corrcoef(ea, eb)[0, 1]) if ea.std() > 0 and eb.std() > 0 else float("nan")
print(f"{demo['row']} - {demo['base']} on test, seeds {demo['seeds']}: D = {paired.estimate:+.2f}")
print(
    f"  paired   95% interval [{paired.lo:+.2f}, {paired.hi:+.2f}]  width {paired.hi - paired.lo:.2f}"
)
print(f"  unpaired 95% interval [{lo_u:+.2f}, {hi_u:+.2f}]  width {hi_u - lo_u:.2f}")
print(f"  correlation of the two rows' per-utterance errors (seed {demo['seeds'][0]}): {corr:.2f}")
assert abs(paired.estimate - demo["differences"]["test"]["estimate"]) < 1e-9
assert abs(paired.lo - demo["differences"]["test"]["lo"]) < 1e-9

# %% [markdown]
# ## 4. Why a reduced-scale result may differ
#
# Before reading the verdicts, what separates our setting from the paper's, and
# which way each difference pushes:
#
# * **Size.** 2M parameters instead of 2B. A small model trained briefly from scratch
#   may not have the heavy-tailed weights and outlier channels of a large pre-trained
#   one, so low-bit PTQ can hurt less (the paper's own explanation of its int4 PTQ and
#   int2 failures is another one: the variational noise of section 5's last part).
#   Conversely, a small model has less redundancy, so pruning (1:4 especially) can hurt
#   *more*.
# * **Training length.** W0 trains for `rc.pretrain_steps` steps (the preset's
#   `train.steps` when unset), and every row fine-tunes it for `rc.finetune_steps`
#   steps (the paper: 200k steps of fine-tuning, batch 2,048, from a model pre-trained
#   far longer). Short fine-tuning favours compressions the starting weights already
#   tolerate (int8, 2:4) and penalises those that need to re-learn (int2, 1:4).
#   Fine-tuning continues W0's decaying learning rate, which suits the first kind more
#   than the second.
# * **Task.** Ten digit words, no language model, one held-out speaker per seed.
#   Digits are easy to tell apart, so a small model reaches low WER, and one
#   substituted digit in a test set of a few hundred words moves the WER by a fraction
#   of a point; on the unseen speakers, WER measures speaker generalisation as much as
#   compression.
# * **Few-shot.** `T_p` is a floor of `rc.few_shot_floor` mask updates (the paper:
#   1k of 200k steps), so "few-shot" here is a handful of updates.
# * **Noise.** Every row ran every seed, and every claim is judged on a paired
#   interval: a difference the evaluation set cannot resolve gives an interval that
#   allows both readings, and the verdict *inconclusive*. The next cell prints the
#   run's settings and the smallest difference B0's evaluation sets can detect.

# %%
held = {s: RECORDS[("B0", s)].get("heldout_speaker") for s in PLAN_SEEDS}
for (e, s), r in RECORDS.items():
    assert r.get("heldout_speaker") == held[s] == rc.heldout_for(s), (e, s)
ft_rows = [e for e in SUMMARY if RECORDS[(e, PLAN_SEEDS[0])]["kind"] == "finetune"]
assert all(SUMMARY[e]["steps"] == rc.finetune_steps for e in ft_rows)
print(f"seeds {PLAN_SEEDS}; held-out speaker per seed: {held}")
print(
    f"W0 trained {RECORDS[('W0', PLAN_SEEDS[0])]['steps']} steps from scratch; B0, B1-B3, E1, "
    f"E3-E13, V0 and V4 fine-tuned {rc.finetune_steps} steps from their W; few-shot "
    f"T_p = {rc.t_p} (paper: 200k steps of fine-tuning, T_p = 1k)"
)
print(
    "smallest difference B0's evaluation sets can detect: "
    + ", ".join(f"{s} {v:.2f}" for s, v in RESULTS_JSON["detectable"].items())
    + f" WER points; margin of the verdicts {MARGIN:g}"
)
print(
    "B0's seeds: "
    + ", ".join(
        f"{s} WER {SUMMARY['B0'][f'wer_{s}']:.2f} (seed sd {SUMMARY['B0'][f'wer_{s}_sd'] or 0:.2f})"
        for s in D_SPLITS
    )
)

# %% [markdown]
# ## 5. The claims, table by table
#
# Each part below says what the paper found and what its rows teach, then prints its
# claims with `show_claim` (section 3): the paper's figures, the rule, the rows' mean
# WERs, `D` with its 95% interval on every split, the per-seed differences and the
# verdict.

# %% [markdown]
# ### Table 1, int8: PTQ and QAT keep the float WER (C1, C2)
#
# With 255 levels per channel, int8 rounding perturbs each weight by well under 1% of
# its channel's range. The paper finds no cost with or without training (4.2 vs 4.1).
# What this row teaches: **8 bits is a free 4x**, and PTQ suffices; QAT matters only
# below 8 bits. Both are `no_worse` claims: reproduced when the whole interval stays
# below `+m`. E0 is int8 PTQ of the same seed's B0, so its per-seed differences come
# from rounding alone; E1 is a sibling fine-tuned from W0 with int8 on, so they also
# include what fine-tuning with the quantizer changed.

# %%
show_claim("C1")
show_claim("C2")

# %% [markdown]
# ### Table 1, int4: PTQ fails and QAT recovers (C3-C5)
#
# 15 levels per channel are too coarse for the paper's weights: int4 PTQ (E2)
# collapses to 86.7% WER, while int4 QAT (E3) recovers 4.3% by letting the weights
# adapt to the grid through the straight-through estimator (§3.2, notebook 03). What
# these rows teach: **below 8 bits, train with the quantizer in the loop**. At our
# scale E2 may already be close to B0 (see the PTQ bars of notebook 07, section 2); C3
# and C4 are then not reproduced *because PTQ does not fail*, which says the small
# model is easy to quantize, not that QAT does not help. C5 asks the other half: is
# int4 QAT nearly free?

# %%
show_claim("C3")
show_claim("C4")
show_claim("C5")

# %% [markdown]
# ### Table 1, int2: fails without sub-channels and improves with more (C6-C10)
#
# Even with QAT, a 4-level grid per channel is too coarse (E4: 99.9). Sub-channel
# quantization (§3.2, notebook 04) gives every group of inputs its own scale and zero
# point: 16 / 32 / 64 groups bring the WER to 45.2 / 32.0 / 12.3, at 1-4% extra
# size. We keep the paper's *group sizes* rather than counts (our layers are narrower:
# see `rc.group_sizes`). What these rows teach: **the finer the scales, the lower the
# error**, a size/accuracy trade you pay in float32 scales. C7-C9 compare neighbouring
# group sizes: each is a `better` claim between two siblings.

# %%
for k in ("C6", "C7", "C8", "C9", "C10"):
    show_claim(k)

# %% [markdown]
# ### Table 2, sparsity: 2:4 is nearly free, 1:4 is not, few-shot helps 1:4 (C11-C16)
#
# 2:4 removes half the weights, but only the smaller of each group of four, and
# fine-tuning re-balances the rest: the paper loses 0.3 points (E8: 4.4). 1:4 keeps
# a quarter, and loses much more (E10: 11.7). With 1:4 the choice of the single kept
# weight matters more, so letting the mask follow the weights for the first 1k steps
# (few-shot, E11) helps: 10.6 (§5.2). What these rows teach: **2:4 is the safe
# pattern** (and the one sparse tensor cores accelerate); beyond it, sparsity alone
# costs accuracy. Our few-shot is a handful of mask updates (`rc.t_p`), so a small or
# absent few-shot gain would not be a surprise; C13 is a `same` claim (one-shot and
# few-shot 2:4 do not differ beyond the margin).

# %%
for k in ("C11", "C12", "C13", "C14", "C15", "C16"):
    show_claim(k)

# %% [markdown]
# ### Table 3, int4 + 2:4 (C17-C22)
#
# The paper's headline (§5.3): quantization alone fails at int2, sparsity alone at
# 1:4, but int4 + 2:4 together reach 9.4% of B0's size at 4.4% WER, level with or
# better than a dense float model with half of B0's parameters (B1, 1B: 4.5% WER at
# 50.2%). The paper reads this as "compress a big model rather than train a small
# one", but the comparison with B1 rests on a 0.1-point gap (4.4 vs 4.5), inside what
# the paper itself calls marginal: it supports *no worse than B1*, not *better*. At our
# scale the B rows are dense models with 50% / 33% / 19% of our B0's parameters, each
# fine-tuned from its own W like B0. C19 tests that weaker reading (its note says why);
# read its verdict before drawing the lesson. C20 and C21 compare the joint model with
# the best quantization-only and sparsity-only rows.

# %%
show_claim("C17")
show_claim("C18")
show_claim("C19", ["B2", "B3"])
for k in ("C20", "C21", "C22"):
    show_claim(k)

# %% [markdown]
# ### The paper's hypothesis: variational noise (C23-C25)
#
# The paper does not only report its failures (int4 PTQ, E2; int2 without
# sub-channels, E4): its section 5.4 suggests why, "we do not enable global
# variational noise (VN) during fine-tuning", i.e. that Gaussian noise added to the
# weights during fine-tuning (Graves 2011) would have made them robust to a coarse
# grid. The paper does not measure it. C23-C25 test *that hypothesis*, with rows the
# paper does not have: V0 is B0 fine-tuned with weight noise of standard deviation
# `rc.vn_std` on every kernel, V2 is int4 PTQ of V0, and V4 is E4 (int2 QAT) fine-tuned
# with the same noise. C23 (V2 better than E2) and C24 (V4 better than E4) ask whether
# the noise helps the compressed models; C25 whether it costs the float model nothing.
# There is no paper figure for a V row ("n/a"): a verdict here says whether the
# hypothesis holds at our scale, not whether a result of the paper reproduces. If E2
# and E4 do not fail at our scale in the first place, there is little for the noise to
# recover, and C23 / C24 can hardly be reproduced whatever the hypothesis's merit at 2B.
#
# The other explanation in `results/cpu/README.md`, **outlier weights**, is a separate, measured
# experiment, not a conclusion of this table: `scripts/ptq_outliers.py` (output in
# `results/ptq_outliers/`) injects outlier features into a B0 of ours in a way that
# leaves the float model's outputs unchanged, and int4 PTQ then breaks. It shows that
# outliers are *sufficient* to break PTQ at our scale; whether USM-2B has them is not
# measured there, and none of these three claims depends on it.

# %%
for k in ("C23", "C24", "C25"):
    show_claim(k, ["B0"] if k != "C25" else [])

# %%
assert SHOWN == set(CLAIMS), f"not shown: {sorted(set(CLAIMS) - SHOWN)}"
for s in JUDGED:
    got = [c["verdicts"][s] for c in CLAIMS.values() if s in c["verdicts"]]
    assert all(v in stats.VERDICTS for v in got)
    print(f"{s:7s} " + ", ".join(f"{v}: {got.count(v)}" for v in stats.VERDICTS))
print(f"all {len(CLAIMS)} claims shown")


# %% [markdown]
# ## Exercises
#
# Each exercise has answer slots, variables marked `# ANSWER` that hold `...` until you
# write your answer in their place, and a check cell: `[skipped]` while a slot holds
# `...`, `[correct]` when your answer agrees with what the code measures, a failure with a
# hint when it does not. In the instructor edition a worked solution (collapsed) follows
# each check.

# %% [markdown]
# **Exercise 1 (the Pareto frontier).** Look at `plot.png` and the table: which rows
# are on *our* Pareto frontier on test (no other row is both smaller, in the paper's
# convention, and lower in mean test WER)? As in `plot.png`, the pre-trained starts
# W0-W3 are left out and the V rows are in. Write their names as a set of strings,
# e.g. `{"B0", "E12"}`. The check compares with `reproduce._pareto`, which drew the
# frontier in `plot.png`. Is E12 on it? Is the paper's frontier the same shape?

# %%
my_frontier = {"E3", "E5", "V4"}  # ANSWER: a set of row names, e.g. {"B0", "E12"}

# %%
answers.check_pareto_frontier(
    "Exercise 1 (the Pareto frontier)",
    my_frontier,
    SUMMARY,
    hint="walk from the smallest row to the largest and keep a row only if its test WER is "
    "below every smaller row's; read size_paper and wer_test in SUMMARY",
)

# %% jupyter={"source_hidden": true} tags=["solution"]
# Solution: our frontier and the paper's, from the smallest model to the largest
frontier = answers.pareto_rows(SUMMARY)
paper_frontier = {  # the paper's rows (the V rows have no paper figure)
    e
    for _, _, e in reproduce._pareto(
        [
            (r["paper_size"], r["paper_wer"], e)
            for e, r in SUMMARY.items()
            if r["paper_wer"] is not None and e[0] != "W"
        ]
    )
}
by_size = lambda s, key: sorted(s, key=lambda e: SUMMARY[e][key])
print(
    "ours: ",
    " -> ".join(
        f"{e} ({SUMMARY[e]['size_paper']:.1f}%, {SUMMARY[e]['wer_test']:.2f}%)"
        for e in by_size(frontier, "size_paper")
    ),
)
print(
    "paper:",
    " -> ".join(
        f"{e} ({SUMMARY[e]['paper_size']:.1f}%, {SUMMARY[e]['paper_wer']:.1f}%)"
        for e in by_size(paper_frontier, "paper_size")
    ),
)

# %% [markdown] jupyter={"source_hidden": true} tags=["solution"]
# **Discussion.** Our frontier is read from *mean* test WERs whose 95% intervals overlap
# almost everywhere (section 1's table): rows one or two tenths of a point apart swap
# places from seed to seed, so a different set of seeds could draw a different frontier.
# The paper's frontier is a clean staircase because its test set is large (its gaps are
# real); ours mostly says that at this scale nearly every spec costs less than the noise
# on test. The robust reading is the paired claims of sections 3 and 5, not membership
# of the frontier: whether E12 is on it or not depends on a few utterances.


# %% [markdown]
# **Exercise 2 (what one word weighs).** A corpus WER sums the word errors of all
# utterances and divides by all their reference words (section 2). Seed 0's B0 was
# evaluated on a few dozen test utterances of a few digits each: how many WER points
# does *one* word error (a digit substituted, deleted or inserted) add to that seed's
# test WER? Count what you need in the transcripts,
# `ROWS[("B0", 0)]["results"]["test"]["utterances"]` (each `{"id", "ref", "hyp"}`), and
# write your answer in WER points. Then compare it with the margin of the verdicts and
# with the smallest difference the evaluation sets can detect (section 4).

# %%
my_word_points = 100 / 199  # ANSWER: WER points that one word error adds (seed 0, test)

# %%
answers.check_word_points(
    "Exercise 2 (what one word weighs)",
    my_word_points,
    ROWS[("B0", 0)]["results"]["test"]["utterances"],
    rel_tol=0.02,
    hint="a WER point is a hundredth of the reference words of the whole set, not of one "
    "utterance: count the words of every reference of seed 0's test set",
)

# %% jupyter={"source_hidden": true} tags=["solution"]
# Solution: the words of every seed's test and unseen sets, and what one of them weighs
for s in PLAN_SEEDS:
    for split in ("test", "unseen"):
        res = ROWS[("B0", s)]["results"].get(split)
        if not isinstance(res, dict):
            continue
        words = sum(max(1, len(u["ref"].split())) for u in res["utterances"])
        print(
            f"seed {s} {split:7s}: {len(res['utterances']):3d} utterances, {words:3d} words; "
            f"one word = {100 / words:.2f} points of that seed's WER, "
            f"{100 / words / len(PLAN_SEEDS):.2f} of the mean over {len(PLAN_SEEDS)} seeds"
        )

# %% [markdown] jupyter={"source_hidden": true} tags=["solution"]
# **Discussion.** Seed 0's test set holds 48 utterances and 199 words, so one word error is
# half a WER point of that seed (the other seeds' test sets are as small), and a third of
# that, about 0.17 points, of a row's mean over three seeds. The verdicts' margin, one
# point, is two words of one seed; the smallest difference the test sets can detect
# (section 4, about 1.2 points) is a handful of words. A real difference of a few tenths
# of a point, like most of the paper's (4.1 vs 4.4), is a word or two here: the test
# intervals of section 5 cannot resolve it, which is why so many test verdicts are
# *inconclusive*. The unseen sets are larger (125 utterances, about 480 words: 0.21
# points a word) but each holds one speaker, so they measure that speaker as much as the
# compression.

# %% [markdown]
# **Exercise 3 (the margin is a choice).** The verdicts use a margin of `m` = 1 WER
# point, fixed before any result was seen (section 3). A reader who finds too many of
# them *inconclusive* proposes a margin of 2 points instead. Predict, then count: with
# `m = 2`, how many of the judged verdicts (every claim on test and on unseen, except
# those the working-recognizer rule decided) change? Apply
# `stats.verdict(lo, hi, kind, margin)` to each claim's interval,
# `CLAIMS[key]["differences"][split]`. Which way do they move, and why can no margin
# turn an *inconclusive* `worse` or `better` claim into *reproduced*?

# %%
my_changed = 17  # ANSWER: how many verdicts change when the margin is doubled

# %%
answers.check_margin_changes(
    "Exercise 3 (the margin is a choice)",
    my_changed,
    CLAIMS,
    2 * MARGIN,
    hint="compare, for every judged (claim, split), stats.verdict with the wider margin "
    "against the verdict recorded in CLAIMS[key]['verdicts'][split]; the rule table of "
    "section 3 says which verdicts depend on m",
)

# %% jupyter={"source_hidden": true} tags=["solution"]
# Solution: every verdict that moves, with the margin doubled and halved
WIDE = 2 * MARGIN
for margin in (WIDE, MARGIN / 2):
    moves = []
    for k, c in CLAIMS.items():
        for s, v in c["verdicts"].items():
            d = c["differences"][s]
            new = stats.verdict(d["lo"], d["hi"], c["kind"], margin)
            if s not in c["reasons"] and new != v:
                moves.append(
                    f"{k} {s} ({c['kind']}, [{d['lo']:+.2f}, {d['hi']:+.2f}]): {v} -> {new}"
                )
    print(f"m = {margin:g}: {len(moves)} verdicts change")
    for line in moves:
        print("   ", line)

# %% [markdown] jupyter={"source_hidden": true} tags=["solution"]
# **Discussion.** With `m = 2`, 17 of the 50 judged verdicts change, and every one of them
# was *inconclusive*: nine nearly-free or `same` claims become *reproduced* (C2 on both
# splits, C11, C12, C17, C18, C19 on test, C22 on both), because their intervals end below
# two points, and eight `worse` or `better` claims become *not reproduced*, because their
# intervals now exclude a change of the margin's size. A `worse` or `better` claim is
# *reproduced* by the sign of its interval alone (`lo > 0` or `hi < 0`), which no margin
# moves; the margin decides only how small a difference counts as "none". But a
# two-point margin makes "nearly free" mean "costs less than two points", more than
# B0's whole test WER: the table would then say what the evaluation sets cannot
# measure. Halved, to half a point (the paper's "marginal" is up to 0.4), it turns six
# decided verdicts into *inconclusive* ones instead: it asks for intervals our
# evaluation sets are too small to give (Exercise 2). A margin chosen after seeing the
# results could make the table say almost anything; that is why it is fixed, with its
# reasons, before them (`usmlite_edu/core/stats.py`), and printed beside every verdict.

# %% [markdown]
# ## Summary
#
# * **The table and its evidence.** `usmlite-edu reproduce` ran every row of Tables 1-3
#   as a sibling, fine-tuned from the same start for the same steps, and every row with
#   every seed of its plan. `table.md`, `table.csv` and `results.json` agree, and every
#   WER in them can be recomputed with `jiwer` from the transcripts in `rows/`, without
#   the models.
# * **A claim is a paired difference.** `D` is the mean over seeds of the two rows' WER
#   differences, its 95% interval a bootstrap that draws the same utterances for both
#   rows (hard utterances cancel, so it is narrower than an unpaired one), and its
#   verdict a fixed rule with a 1-point margin, given on test and on the unseen speakers
#   and never on dev, where recipes are chosen.
# * **The paper's tables.** Quantization (§5.1): int8 is free with or without training,
#   int4 PTQ collapses and QAT recovers it, int2 needs QAT and sub-channel scales.
#   Sparsity (§5.2): 2:4 is nearly free, 1:4 is not, and few-shot masks help 1:4.
#   The joint model (§5.3): int4 + 2:4, at 9.4% of B0's size, is *no worse* than the dense
#   B1 at under a fifth of its size, not *better* (C19).
# * **Reading a reduced-scale reproduction.** "Not reproduced" at 2M parameters, a few
#   hundred steps and a ten-word vocabulary is a fact about that setting, and
#   "inconclusive" says that the evaluation sets cannot tell. The reasons to expect
#   differences (outliers, variational noise, redundancy, training length, few-shot
#   length) are what to test next; C23-C25 test the paper's own, variational noise.
