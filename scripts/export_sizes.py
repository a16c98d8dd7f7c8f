"""Packed file bytes beside the size accounting, for every row of the reduced-scale table.

For each row of ``usmlite_edu.training.reproduce.plan("cpu")`` (E0-E13 under their specs, B0-B3
dense float32, V0/V2/V4 under theirs), writes the packed file `usmlite-edu export`
writes and prints its bytes beside ``usmlite_edu.core.sizes``' exact figure and the paper's
estimate, then the bytes of each component. The weights are the committed B0's
(``results/cpu/b0``, the ``cpu`` preset with its 28-class tokenizer) under each spec as
post-training compression (the bytes of a fixed-rate format do not depend on the values,
so a QAT row's file has the same size); B1-B3 are freshly initialised models of their
smaller shapes. Without the committed B0, the ``cpu`` preset is initialised instead.
Each ``--spec-map FILE`` adds a row for B0's weights under that per-layer map (README
"Which layer gets which bits"), checked the same way: tensor data equal to
``sizes.model_size`` of the map, component by component.

    python scripts/export_sizes.py            # the README's "Export a packed model" tables
    python scripts/export_sizes.py --spec-map my_map.json   # plus a per-layer map's row
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def rows(b0: Path | None = None, spec_maps: tuple = ()) -> list[dict]:
    """One dict per plan row (then one per :class:`~usmlite_edu.core.specs.SpecMap`
    of ``spec_maps``, read from files): file, header and tensor-data
    bytes, the exact accounting (bytes and % of float32 B0), the paper-convention estimate
    and the paper's figure."""
    from usmlite_edu.core import sizes
    from usmlite_edu.core.specs import SpecMap
    from usmlite_edu.deploy import export
    from usmlite_edu.speech import model
    from usmlite_edu.speech.presets import model_config
    from usmlite_edu.speech.runs import load_run, read_config
    from usmlite_edu.training import reproduce

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
    todo = [
        (r.exp, r.spec)
        for r in reproduce.plan("cpu", vocab_size=cfg.vocab_size)
        if r.kind != "pretrain"
    ]
    todo += [(f"map {Path(m.source or 'map').name}", m) for m in spec_maps]
    seen, out = set(), []
    with tempfile.TemporaryDirectory() as tmp:
        for exp, spec in todo:
            if exp in seen:
                continue
            seen.add(exp)
            path = Path(tmp) / f"{len(seen)}.safetensors"
            if exp in dense:  # B1-B3: smaller dense float models
                small = cfg.replace(**dense[exp])
                params = model.init_params(small)
                info = export.write_packed(
                    params, "float", path, config=small, tokenizer=tok, train_config=tcfg
                )
                exact = sizes.model_size("float", small, reference=cfg)
                estimate = sizes.size_ratio("float", small, "paper", reference=cfg)
            else:
                if b0 is not None:
                    info = export.write_packed(b0, spec, path)
                else:
                    info = export.write_packed(model.init_params(cfg), spec, path, config=cfg)
                exact = info.exact
                estimate = sizes.size_ratio(spec, cfg, "paper")
            out.append(
                dict(
                    exp=exp,
                    spec=spec.source if isinstance(spec, SpecMap) else spec,
                    file=info.file_bytes,
                    header=info.header_bytes,
                    data=info.data_bytes,
                    exact=exact.total / 8,
                    exact_pct=exact.ratio,
                    file_pct=100 * info.file_bytes * 8 / exact.float_total,
                    estimate=estimate,
                    paper=paper.get(exp),
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
    ap.add_argument(
        "--spec-map",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="also a row for B0 under this per-layer spec map (JSON); repeatable",
    )
    args = ap.parse_args()
    from usmlite_edu.core.specs import SpecMap

    maps = tuple(SpecMap.load(p) for p in args.spec_map)  # before the chdir
    os.chdir(ROOT)  # the file records its source path: the same bytes from any clone
    print(format_tables(rows(args.b0, maps)))


if __name__ == "__main__":
    main()
