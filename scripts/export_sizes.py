"""Packed file bytes beside the size accounting, for every row of the reduced-scale table.

For each row of ``usmlite_edu.reproduce.plan("cpu")`` (E0-E13 under their specs, B0-B3
dense float32, V0/V2/V4 under theirs), writes the packed file `usmlite-edu export`
writes and prints its bytes beside ``usmlite_edu.sizes``' exact figure and the paper's
estimate, then the bytes of each component. The weights are the committed B0's
(``results/cpu/b0``, the ``cpu`` preset with its 28-class tokenizer) under each spec as
post-training compression (the bytes of a fixed-rate format do not depend on the values,
so a QAT row's file has the same size); B1-B3 are freshly initialised models of their
smaller shapes. Without the committed B0, the ``cpu`` preset is initialised instead.

    python scripts/export_sizes.py            # the README's "Export a packed model" tables
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def rows(b0: Path | None = None) -> list[dict]:
    """One dict per plan row: file, header and tensor-data bytes, the exact accounting
    (bytes and % of float32 B0), the paper-convention estimate and the paper's figure."""
    from usmlite_edu import export, model, reproduce, sizes
    from usmlite_edu.presets import model_config
    from usmlite_edu.runs import load_run, read_config

    if b0 is not None and (b0 / "config.json").exists():
        run = load_run(b0)
        cfg, tok, tcfg = run.config, run.tokenizer, read_config(b0)[1]
    else:
        b0, cfg, tok, tcfg = None, model_config("cpu"), None, None
    paper = {r.exp: r.paper_ratio for r in sizes.PAPER_ROWS}
    dense = {
        exp: reproduce.dense_baseline_config(cfg, ratio)[0]
        for exp, ratio, _ in reproduce.DENSE_SIZES
    }
    seen, out = set(), []
    with tempfile.TemporaryDirectory() as tmp:
        for r in reproduce.plan("cpu", vocab_size=cfg.vocab_size):
            if r.exp in seen or r.kind == "pretrain":
                continue
            seen.add(r.exp)
            path = Path(tmp) / f"{r.exp}.safetensors"
            if r.exp in dense:  # B1-B3: smaller dense float models
                small = cfg.replace(**dense[r.exp])
                params = model.init_params(small)
                info = export.write_packed(
                    params, "float", path, config=small, tokenizer=tok, train_config=tcfg
                )
                exact = sizes.model_size("float", small, reference=cfg)
                estimate = sizes.size_ratio("float", small, "paper", reference=cfg)
            else:
                if b0 is not None:
                    info = export.write_packed(b0, r.spec, path)
                else:
                    info = export.write_packed(model.init_params(cfg), r.spec, path, config=cfg)
                exact = info.exact
                estimate = sizes.size_ratio(r.spec, cfg, "paper")
            out.append(
                dict(
                    exp=r.exp,
                    spec=r.spec,
                    file=info.file_bytes,
                    header=info.header_bytes,
                    data=info.data_bytes,
                    exact=exact.total / 8,
                    exact_pct=exact.ratio,
                    file_pct=100 * info.file_bytes * 8 / exact.float_total,
                    estimate=estimate,
                    paper=paper.get(r.exp),
                    parts=info.by_component(),
                )
            )
    return out


def format_tables(table: list[dict]) -> str:
    lines = [
        "| exp | spec | file bytes | header | tensor data | `sizes` exact | data - exact "
        "| file % of B0 | exact % | paper conv. % | paper % |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in table:
        paper = "" if r["paper"] is None else f"{r['paper']:.1f}"
        lines.append(
            f"| {r['exp']} | `{r['spec']}` | {r['file']:,} | {r['header']:,} | {r['data']:,} "
            f"| {r['exact']:,.0f} | {r['data'] - r['exact']:+,.0f} | {r['file_pct']:.2f} "
            f"| {r['exact_pct']:.2f} | {r['estimate']:.2f} | {paper} |"
        )
    lines += [
        "",
        "Tensor data by component (bytes in the file; each equals the exact accounting's):",
        "",
        "| exp | spec | values | scales | zero points | index | float32 |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in table:
        if not all(f == e for _, f, e in r["parts"]):
            raise AssertionError(f"{r['exp']}: file bytes differ from the accounting: {r['parts']}")
        cells = " | ".join(f"{f:,}" for _, f, _ in r["parts"])
        lines.append(f"| {r['exp']} | `{r['spec']}` | {cells} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--b0", type=Path, default=Path("results/cpu/b0"), help="run to export")
    args = ap.parse_args()
    os.chdir(ROOT)  # the file records its source path: the same bytes from any clone
    print(format_tables(rows(args.b0)))


if __name__ == "__main__":
    main()
