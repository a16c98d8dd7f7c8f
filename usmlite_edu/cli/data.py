"""``usmlite-edu data fetch``: download, verify and unpack a corpus."""

from __future__ import annotations

import argparse
import logging

from usmlite_edu.speech import fetch
from usmlite_edu.speech.fetch import CORPUS_ARCHIVES


def add_parser(sub: argparse._SubParsersAction) -> None:
    d = sub.add_parser(
        "data",
        help="corpora: download and verify",
        description="Get the corpora the project trains and evaluates on.",
    )
    dsub = d.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    f = dsub.add_parser(
        "fetch",
        help="download, verify (md5) and unpack a corpus",
        description="Download, verify and unpack a corpus. Offline, the "
        "error message says which archive to place where by hand.",
    )
    f.add_argument("corpus", choices=sorted(CORPUS_ARCHIVES), help="which corpus")
    f.add_argument(
        "--to",
        required=True,
        metavar="DIR",
        help="folder to unpack into (created if missing); pass it as --data later",
    )
    f.add_argument("--base-url", metavar="URL", help="a mirror host replacing the default one")
    f.add_argument(
        "--timeout",
        type=float,
        default=30,
        metavar="SECONDS",
        help="seconds per network wait (default 30)",
    )
    f.add_argument(
        "--keep-archives", action="store_true", help="keep the downloaded archives after unpacking"
    )
    f.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    path = fetch.fetch(
        args.corpus,
        args.to,
        base_url=args.base_url,
        timeout=args.timeout,
        keep_archives=args.keep_archives,
    )
    print(f"{args.corpus} is ready in {path}")
    return 0
