"""Write environment.yml (conda) from requirements.txt, so both list the same pins.

Run with ``make lock`` after changing requirements.txt; tests/test_setup.py checks they agree.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def pins(text: str) -> list[str]:
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]


def main() -> None:
    reqs = pins((ROOT / "requirements.txt").read_text())
    lines = [
        "# Conda environment for usmlite_edu. Generated from requirements.txt by",
        "# scripts/write_environment.py (make lock): the pip pins below are the same.",
        "name: usmlite_edu",
        "channels:",
        "  - conda-forge",
        "dependencies:",
        "  - python=3.11",
        "  - pip",
        "  - pip:",
        *[f"      - {r}" for r in reqs],
        "      - -e .",
    ]
    (ROOT / "environment.yml").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
