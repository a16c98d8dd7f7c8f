"""Download, verify and unpack the corpora: ``usmlite-edu data fetch CORPUS --to DIR``.

========================  ===============================================  ===================
corpus                    archives                                         verified by
========================  ===============================================  ===================
``fsdd``                  FSDD at the pinned commit 26eb9aa (GitHub zip)   file count: 3,000
                                                                           recordings, 6
                                                                           speakers
``an4``                   AN4, CMU Sphinx's WAV conversion                 SHA-256 of every
                          (``cmusphinx/an4`` at the pinned commit          file, combined
                          b567d13, GitHub zip)                             (:data:`AN4_DIGEST`)
``mini-librispeech``      openslr 31: train-clean-5, dev-clean-2           openslr's md5 sums
``librispeech-100``       openslr 12: train-clean-100, dev-clean,          openslr's md5 sums
                          test-clean
========================  ===============================================  ===================

FSDD publishes no checksums, and GitHub does not promise byte-identical zips over time,
so its archive is checked by content instead: exactly the pinned commit's 3,000
recordings of 6 speakers, or it is refused. AN4's zip is checked by content too, and more
strictly: the SHA-256 of every member it keeps (1,078 WAV files, the two transcriptions,
the licence), combined into one digest (:func:`an4_digest`), must equal
:data:`AN4_DIGEST`; only those members are unpacked, to ``DIR/an4`` (``etc/``, ``wav/``,
``LICENSE``: CMU's BSD-style licence travels with the copy). The digest was computed from
the copy of that commit the project was given; no live download could be made where it
was written, so the first real download is also the first check of the URL. Only ``recordings/`` is unpacked, to
``DIR/recordings``. LibriSpeech archives unpack to ``DIR/LibriSpeech/<subset>``; the md5
sums are openslr's own (``resources/12/md5sum.txt``, ``resources/31/md5sum.txt``).

Downloads stream to ``<archive>.part`` and resume (HTTP Range) once if the connection
breaks. A machine without internet fails at once, naming the URL and where to put the
files by hand; an archive already placed at ``DIR/<archive name>`` is used without any
download. Extraction refuses, for zip and tar alike, absolute paths, ``..``, links and
devices, more members or unpacked bytes than a margin over what the corpus holds
(``Archive.max_members``, ``max_bytes``), and a zip member that unpacks to more than it
declares; it unpacks into a temporary folder inside ``DIR`` first, so a refused archive
leaves nothing behind. A symbolic link where the corpus is to go (``DIR/recordings``) and
a ``DIR`` that is a file are refused; a full disk is one line.
``base_url`` replaces the host (a mirror such as ``https://openslr.elda.org``, or a local
test server).
"""

from __future__ import annotations

import errno
import functools
import hashlib
import http.client
import logging
import os
import re
import shutil
import tarfile
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.error import HTTPError, URLError
from urllib.parse import urlparse
from urllib.request import ProxyHandler, Request, build_opener

__all__ = [
    "fetch",
    "FetchError",
    "Archive",
    "CORPUS_ARCHIVES",
    "FSDD_COMMIT",
    "AN4_COMMIT",
    "AN4_DIGEST",
    "an4_digest",
]

log = logging.getLogger(__name__)

FSDD_COMMIT = "26eb9aaf76e81b692f806f9140c2d2777410d7a1"
FSDD_RECORDINGS = 3000
FSDD_SPEAKERS = 6
_FSDD_NAME = re.compile(r"^\d_[A-Za-z]+_\d+\.wav$")
AN4_COMMIT = "b567d132f43304e70a2b2eca6077f22255311812"
AN4_FILES = 1081  # 948 + 130 WAV files, two transcriptions, the licence
#: :func:`an4_digest` of the pinned commit's members (computed from its copy)
AN4_DIGEST = "f9a450623e467fb3db0602cdba3fa5002ffa58f95bddd184598165b42ce088ef"
_AN4_MEMBER = re.compile(
    r"^(?:etc/an4_(?:train|test)\.transcription"
    r"|wav/an4(?:_clstk|test_clstk)/[a-z0-9]+/[a-z0-9]+-[a-z0-9]+-[a-z]\.wav"
    r"|LICENSE)$"
)
_MAX_AN4_MEMBER = 4 << 20  # the longest AN4 utterance is well under 1 MB
_CHUNK = 1 << 20
_PROGRESS = 200 << 20  # log progress every 200 MB
_MAX_RECORDING = 10 << 20  # an FSDD recording is ~10 kB; refuse zip-bomb members


class FetchError(RuntimeError):
    """A download or verification failure; the message says what to do next."""


@dataclass(frozen=True)
class Archive:
    """One file to download: ``host + '/' + path``, saved as ``filename``."""

    filename: str
    path: str
    host: str
    md5: str | None
    kind: str  # "zip" (FSDD: recordings/ only), "an4-zip" or "tar.gz" (LibriSpeech layout)
    subset: str | None = None  # the LibriSpeech subset directory it unpacks to
    #: at most this many members and unpacked bytes: a margin over what the corpus holds,
    #: so that a zip bomb or a wrong archive stops before it fills the disk
    max_members: int = 100_000
    max_bytes: int = 16 << 30

    def url(self, base_url: str | None = None) -> str:
        return (base_url or self.host).rstrip("/") + "/" + self.path


_OPENSLR = "https://www.openslr.org"


def an4_digest(members: dict[str, str]) -> str:
    """One SHA-256 over ``{relative path: SHA-256 of its bytes}``, in path order: the
    identity of an AN4 copy whatever the zip around it."""
    h = hashlib.sha256()
    for rel in sorted(members):
        h.update(f"{rel}\t{members[rel]}\n".encode())
    return h.hexdigest()


def _slr(resource: int, subset: str, md5: str, members: int, gib: float) -> Archive:
    return Archive(
        f"{subset}.tar.gz",
        f"resources/{resource}/{subset}.tar.gz",
        _OPENSLR,
        md5,
        "tar.gz",
        subset,
        max_members=members,
        max_bytes=int(gib * (1 << 30)),
    )


CORPUS_ARCHIVES: dict[str, tuple[Archive, ...]] = {
    "fsdd": (
        Archive(
            f"free-spoken-digit-dataset-{FSDD_COMMIT[:7]}.zip",
            f"Jakobovski/free-spoken-digit-dataset/zip/{FSDD_COMMIT}",
            "https://codeload.github.com",
            None,
            "zip",
            max_members=10_000,  # 3,000 recordings and the repository's other files
            max_bytes=200 << 20,  # the recordings hold about 20 MB
        ),
    ),
    "an4": (
        Archive(
            f"an4-{AN4_COMMIT[:7]}.zip",
            f"cmusphinx/an4/zip/{AN4_COMMIT}",
            "https://codeload.github.com",
            None,
            "an4-zip",
            max_members=10_000,  # 1,081 kept files and the repository's others
            max_bytes=400 << 20,  # the kept files hold 93 MB
        ),
    ),
    "mini-librispeech": (
        _slr(31, "train-clean-5", "5df7d4e78065366204ca6845bb08f490", 4_000, 1.0),
        _slr(31, "dev-clean-2", "6d7ab67ac6a1d2c993d050e16d61080d", 3_000, 0.5),
    ),
    "librispeech-100": (
        _slr(12, "train-clean-100", "2a93770f6d5c6c964bc36631d331a522", 45_000, 10.0),
        _slr(12, "dev-clean", "42e2234ba48799c1f50f24a7926300a1", 5_000, 1.0),
        _slr(12, "test-clean", "32fa31d27d2e1cad72775fee3f4849a9", 5_000, 1.0),
    ),
}


def _by_hand(archive: Archive, url: str, to_dir: Path, others: list[str]) -> str:
    """Where to put the files when this machine cannot download them."""
    if archive.kind == "zip":
        return (
            f"download {url} (the FSDD repository at commit {FSDD_COMMIT[:7]}) and unpack "
            f"it so that {to_dir / 'recordings' / '0_jackson_0.wav'} exists, or put the zip "
            f"at {to_dir / archive.filename} and run this command again"
        )
    if archive.kind == "an4-zip":
        return (
            f"download {url} (the cmusphinx/an4 repository at commit {AN4_COMMIT[:7]}) and "
            f"put the zip at {to_dir / archive.filename}, then run this command again (it "
            f"checks the content and unpacks it to {to_dir / 'an4'})"
        )
    also = f" The corpus also needs {' and '.join(others)}, the same way." if others else ""
    return (
        f"download {url} (md5 {archive.md5}) and unpack it with "
        f"`tar xzf {archive.filename} -C {to_dir}` so that "
        f"{to_dir / 'LibriSpeech' / str(archive.subset)} exists, or put the archive at "
        f"{to_dir / archive.filename} and run this command again.{also}"
    )


# ------------------------------------------------------------------------------ download


def _opener(url: str):
    """Loopback URLs (tests, local mirrors) never go through a configured proxy."""
    host = urlparse(url).hostname or ""
    return (
        build_opener(ProxyHandler({}))
        if host in ("127.0.0.1", "localhost", "::1")
        else build_opener()
    )


def _md5(path: Path) -> str:
    h = hashlib.md5()  # noqa: S324 -- openslr publishes md5, not for security
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _download(url: str, part: Path, *, timeout: float, hand: str) -> None:
    """Stream ``url`` into ``part``, resuming once (HTTP Range) if the transfer breaks."""
    for attempt in (1, 2):
        have = part.stat().st_size if part.exists() else 0
        headers = {"User-Agent": "usmlite-edu-fetch/1"}
        if have:
            headers["Range"] = f"bytes={have}-"
        try:
            resp = _opener(url).open(Request(url, headers=headers), timeout=timeout)
        except HTTPError as e:
            if e.code == 416 and have:  # nothing left to send: the .part is complete
                return
            raise FetchError(f"{url} answered HTTP {e.code} {e.reason}; {hand}") from None
        except (URLError, OSError) as e:  # refused, DNS failure, timeout: offline, fail now
            reason = getattr(e, "reason", e)
            raise FetchError(
                f"cannot reach {url} ({reason}); this machine may be offline. By hand: {hand}"
            ) from None
        with resp:
            resumed = have > 0 and resp.status == 206
            length = resp.headers.get("Content-Length")
            total = (have if resumed else 0) + int(length) if length else None
            if total is not None:
                free = shutil.disk_usage(part.parent).free
                if free < 2.1 * (total - (have if resumed else 0)):
                    raise FetchError(
                        f"{url} is {total / 1e6:,.0f} MB and needs about twice "
                        f"that free in {part.parent} (download + unpacked); only "
                        f"{free / 1e6:,.0f} MB are free"
                    )
            if have and not resumed:
                log.info("server ignored the resume request; downloading %s again", url)
            try:
                with part.open("ab" if resumed else "wb") as out:
                    done, shown = out.tell(), out.tell()
                    for chunk in iter(functools.partial(resp.read, _CHUNK), b""):
                        out.write(chunk)
                        done += len(chunk)
                        if done - shown >= _PROGRESS:
                            shown = done
                            log.info(
                                "  %s: %s of %s MB",
                                part.name,
                                f"{done / 1e6:,.0f}",
                                f"{total / 1e6:,.0f}" if total else "?",
                            )
            except (OSError, http.client.HTTPException) as e:
                if attempt == 2:
                    raise FetchError(
                        f"download of {url} broke off twice ({e}); run the same "
                        f"command again to resume from {part}"
                    ) from None
                log.warning("download of %s broke off (%s); resuming", url, e)
                continue
        size = part.stat().st_size
        if total is None or size == total:
            return
        if attempt == 2:
            raise FetchError(
                f"download of {url} stopped at {size:,} of {total:,} bytes twice; "
                f"run the same command again to resume from {part}"
            )
        log.warning("download of %s stopped at %d of %d bytes; resuming", url, size, total)


def _obtain(
    archive: Archive, to_dir: Path, *, base_url: str | None, timeout: float, others: list[str]
) -> Path:
    """The verified archive file in ``to_dir``: already there, or downloaded now."""
    url = archive.url(base_url)
    hand = _by_hand(archive, url, to_dir, others)
    dest = to_dir / archive.filename
    if not dest.is_file():
        part = dest.with_name(dest.name + ".part")
        log.info("downloading %s -> %s", url, dest)
        _download(url, part, timeout=timeout, hand=hand)
        os.replace(part, dest)
    if archive.md5 is not None:
        got = _md5(dest)
        if got != archive.md5:
            bad = dest.with_name(dest.name + ".bad")
            os.replace(dest, bad)
            raise FetchError(
                f"checksum mismatch for {url}: md5 {got}, expected {archive.md5} "
                f"(openslr's published sum). The file was moved to {bad} and "
                f"will not be used; run the command again to re-download, or: "
                f"{hand}"
            )
    return dest


# ------------------------------------------------------------------------------ extract


def _safe_name(name: str) -> PurePosixPath | None:
    """``name`` as a relative path that cannot leave the target folder, or None."""
    p = PurePosixPath(name.replace("\\", "/"))
    if (
        p.is_absolute()
        or any(part in ("..", "") for part in p.parts)
        or not p.parts
        or re.match(r"^[A-Za-z]:", p.parts[0])
    ):
        return None
    return p


def _merge_into(src: Path, dst: Path) -> None:
    """Move the tree ``src`` onto ``dst``, replacing files, keeping other files of ``dst``.
    A symbolic link where a folder or file is to go is refused: it would send the corpus
    outside the target folder."""
    if dst.is_symlink():
        raise FetchError(
            f"{dst} is a symbolic link; the corpus is unpacked only into real folders "
            f"inside the target: remove the link (or choose another --to) and run again"
        )
    if not dst.exists():
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dst)
        return
    if src.is_dir() and dst.is_dir():
        for child in src.iterdir():
            _merge_into(child, dst / child.name)
        return
    if dst.is_dir():
        shutil.rmtree(dst)
    os.replace(src, dst)


def _extract_tar(archive: Path, tmp: Path, url: str, spec: Archive) -> None:
    try:
        _extract_tar_members(archive, tmp, url, spec)
    except (tarfile.TarError, EOFError, zlib.error) as e:
        raise FetchError(
            f"{archive} from {url} is not a readable .tar.gz ({e}); delete it "
            f"and run the command again"
        ) from None


def _extract_tar_members(archive: Path, tmp: Path, url: str, spec: Archive) -> None:
    members = unpacked = 0
    with tarfile.open(archive, "r:gz") as tf:
        for m in tf:
            members += 1
            unpacked += max(m.size, 0)
            if members > spec.max_members or unpacked > spec.max_bytes:
                raise FetchError(
                    f"refusing {archive.name} from {url}: more than {spec.max_members:,} "
                    f"members or {_mb(spec.max_bytes)} unpacked, far more than "
                    f"{spec.subset} holds; nothing was kept"
                )
            if _safe_name(m.name) is None:
                problem = "a path outside the target folder"
            elif m.issym() or m.islnk():
                problem = "a link"
            elif not (m.isfile() or m.isdir()):
                problem = "a device or special file"
            else:
                tf.extract(m, tmp, set_attrs=False, filter="data")
                continue
            raise FetchError(
                f"refusing {archive.name} from {url}: member {m.name!r} is "
                f"{problem}; nothing was unpacked"
            )


def _open_zip(archive: Path, url: str, spec: Archive) -> zipfile.ZipFile:
    """The zip, after the rules tar archives follow: no member outside the target (``..``,
    absolute), no links, at most ``spec.max_members`` members. Refused whole otherwise."""
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as e:
        os.replace(archive, archive.with_name(archive.name + ".bad"))
        raise FetchError(
            f"{archive.name} from {url} is not a zip archive ({e}); it was moved "
            f"aside; run the command again to re-download"
        ) from None
    infos = zf.infolist()
    problem = None
    if len(infos) > spec.max_members:
        problem = f"has {len(infos):,} members, more than {spec.max_members:,}"
    for info in infos:
        if problem:
            break
        if _safe_name(info.filename) is None:
            problem = f"member {info.filename!r} is a path outside the target folder"
        elif (info.external_attr >> 16) & 0o170000 == 0o120000:
            problem = f"member {info.filename!r} is a link"
    if problem:
        zf.close()
        raise FetchError(f"refusing {archive.name} from {url}: it {problem}; nothing was unpacked")
    return zf


def _copy_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, dst: Path, url: str) -> None:
    """Copy one member, refusing one that unpacks to more than it declares (a zip bomb)."""
    written = 0
    with zf.open(info) as src, dst.open("xb") as out:
        while chunk := src.read(_CHUNK):
            written += len(chunk)
            if written > info.file_size:
                raise FetchError(
                    f"refusing the archive from {url}: member {info.filename!r} unpacks to "
                    f"more than the {info.file_size:,} bytes it declares; nothing was kept"
                )
            out.write(chunk)


def _mb(n: int) -> str:
    return f"{n / (1 << 20):,.1f} MB"


def _check_total(picked, archive: Path, url: str, spec: Archive) -> None:
    total = sum(i.file_size for i in picked)
    if total > spec.max_bytes:
        raise FetchError(
            f"refusing {archive.name} from {url}: its files would unpack to {_mb(total)}, "
            f"more than the {_mb(spec.max_bytes)} the corpus needs; nothing was kept"
        )


def _extract_fsdd(archive: Path, tmp: Path, url: str, spec: Archive) -> None:
    """Unpack only ``*/recordings/{digit}_{speaker}_{index}.wav``, after counting them and
    checking that each is a WAV file."""
    zf = _open_zip(archive, url, spec)
    with zf:
        picked: dict[str, zipfile.ZipInfo] = {}
        for info in zf.infolist():
            parts = PurePosixPath(info.filename).parts
            if (
                info.is_dir()
                or len(parts) < 2
                or parts[-2] != "recordings"
                or len(parts) > 3
                or not _FSDD_NAME.match(parts[-1])
            ):
                continue
            if info.file_size > _MAX_RECORDING:
                raise FetchError(
                    f"refusing {archive.name} from {url}: member "
                    f"{info.filename!r} claims {info.file_size:,} bytes"
                )
            picked[parts[-1]] = info
        speakers = {n.split("_")[1] for n in picked}
        ok = len(picked) == FSDD_RECORDINGS and len(speakers) == FSDD_SPEAKERS
        if ok:
            _check_total(picked.values(), archive, url, spec)
            out_dir = tmp / "recordings"
            out_dir.mkdir(parents=True)
            for name, info in sorted(picked.items()):
                with zf.open(info) as src:
                    head = src.read(12)
                if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                    bad = archive.with_name(archive.name + ".bad")
                    os.replace(archive, bad)
                    raise FetchError(
                        f"refusing {archive.name} from {url}: {info.filename!r} is not a WAV "
                        f"file; it was moved to {bad}; nothing was unpacked"
                    )
                _copy_member(zf, info, out_dir / name, url)
    if not ok:
        bad = archive.with_name(archive.name + ".bad")
        os.replace(archive, bad)
        raise FetchError(
            f"{archive.name} from {url} holds {len(picked)} recordings of {len(speakers)} "
            f"speakers; the pinned FSDD commit {FSDD_COMMIT[:7]} has {FSDD_RECORDINGS:,} "
            f"of {FSDD_SPEAKERS}. It was moved to {bad} and will not be used; run the "
            f"command again to re-download, or fetch the right archive by hand: {url}"
        )


def _an4_members(zf: zipfile.ZipFile, archive: Path, url: str) -> dict[str, zipfile.ZipInfo]:
    """The members to keep, by their path below the zip's top folder; any other member
    (including ``..`` or absolute names, which never match) is ignored."""
    picked: dict[str, zipfile.ZipInfo] = {}
    for info in zf.infolist():
        parts = PurePosixPath(info.filename).parts
        if info.is_dir() or len(parts) < 2:
            continue
        rel = "/".join(parts[1:])
        if not _AN4_MEMBER.match(rel):
            continue
        if info.file_size > _MAX_AN4_MEMBER:
            raise FetchError(
                f"refusing {archive.name} from {url}: member {info.filename!r} claims "
                f"{info.file_size:,} bytes"
            )
        picked[rel] = info
    return picked


def _extract_an4(archive: Path, tmp: Path, url: str, spec: Archive) -> None:
    """Unpack AN4's kept members to ``tmp/an4`` after checking their combined digest."""
    zf = _open_zip(archive, url, spec)
    with zf:
        picked = _an4_members(zf, archive, url)
        _check_total(picked.values(), archive, url, spec)
        sums = {}
        for rel, info in picked.items():
            h = hashlib.sha256()
            with zf.open(info) as src:
                for chunk in iter(lambda src=src: src.read(_CHUNK), b""):
                    h.update(chunk)
            sums[rel] = h.hexdigest()
        ok = len(picked) == AN4_FILES and an4_digest(sums) == AN4_DIGEST
        if ok:
            for rel, info in sorted(picked.items()):
                dst = tmp / "an4" / rel
                dst.parent.mkdir(parents=True, exist_ok=True)
                _copy_member(zf, info, dst, url)
    if not ok:
        bad = archive.with_name(archive.name + ".bad")
        os.replace(archive, bad)
        raise FetchError(
            f"{archive.name} from {url} is not AN4 at the pinned commit {AN4_COMMIT[:7]}: "
            f"{len(picked)} of its members are AN4 files ({AN4_FILES:,} expected) and "
            f"their content digest differs. It was moved to {bad} and will not be used; "
            f"run the command again to re-download, or fetch the right archive by hand: {url}"
        )


# ------------------------------------------------------------------------------- public


def _complete(corpus: str, archive: Archive, to_dir: Path) -> bool:
    if archive.kind == "an4-zip":
        return (to_dir / ".usmlite-fetch" / f"{archive.filename}.done").is_file()
    if archive.kind == "zip":
        rec = to_dir / "recordings"
        return (
            rec.is_dir()
            and sum(1 for p in rec.glob("*.wav") if _FSDD_NAME.match(p.name)) >= FSDD_RECORDINGS
        )
    if (to_dir / ".usmlite-fetch" / f"{archive.filename}.done").is_file():
        return True
    # unpacked by hand (see the offline message): the subset folder with its transcripts
    subset = to_dir / "LibriSpeech" / str(archive.subset)
    return subset.is_dir() and next(subset.rglob("*.trans.txt"), None) is not None


def _unpack(archive: Archive, path: Path, to: Path, url: str) -> None:
    """Unpack into a temporary folder inside ``to``, then move the result into place."""
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=to) as tmp:
        log.info("unpacking %s", path)
        if archive.kind == "zip":
            _extract_fsdd(path, Path(tmp), url, archive)
        elif archive.kind == "an4-zip":
            _extract_an4(path, Path(tmp), url, archive)
        else:
            _extract_tar(path, Path(tmp), url, archive)
        for child in Path(tmp).iterdir():
            _merge_into(child, to / child.name)


def fetch(
    corpus: str,
    to_dir: str | os.PathLike[str],
    *,
    base_url: str | None = None,
    timeout: float = 30,
    keep_archives: bool = False,
) -> Path:
    """Download, verify and unpack ``corpus`` into ``to_dir``; return the corpus folder.

    Returns ``to_dir`` for FSDD (holding ``recordings/``), ``to_dir/an4`` for AN4 and
    ``to_dir/LibriSpeech`` for the LibriSpeech corpora: the folder to pass as ``data_dir`` to
    :func:`usmlite_edu.speech.corpora.load_corpus`. Parts already unpacked are not fetched again.
    Archives are deleted after unpacking unless ``keep_archives``.
    """
    if corpus not in CORPUS_ARCHIVES:
        raise ValueError(f"unknown corpus {corpus!r}; choose one of {', '.join(CORPUS_ARCHIVES)}")
    to = Path(to_dir).expanduser().resolve()
    if to.exists() and not to.is_dir():
        raise FetchError(f"--to {to} is a file, not a folder: choose a folder for the corpus")
    to.mkdir(parents=True, exist_ok=True)
    for archive in CORPUS_ARCHIVES[corpus]:
        if _complete(corpus, archive, to):
            log.info("%s: %s already unpacked in %s", corpus, archive.filename, to)
            continue
        url = archive.url(base_url)
        others = [
            a.url(base_url)
            for a in CORPUS_ARCHIVES[corpus]
            if a is not archive and not _complete(corpus, a, to)
        ]
        path = _obtain(archive, to, base_url=base_url, timeout=timeout, others=others)
        try:
            _unpack(archive, path, to, url)
        except OSError as e:
            if e.errno != errno.ENOSPC:
                raise
            raise FetchError(
                f"no space left on the device of {to} while unpacking {archive.filename}; "
                f"nothing was kept: free space (the corpus needs about "
                f"{_mb(archive.max_bytes)} at most) and run the command again"
            ) from None
        if archive.kind != "zip":
            marker = to / ".usmlite-fetch" / f"{archive.filename}.done"
            marker.parent.mkdir(exist_ok=True)
            check = f"sha256 {AN4_DIGEST}" if archive.kind == "an4-zip" else f"md5 {archive.md5}"
            marker.write_text(f"{url}\n{check}\n")
        if not keep_archives:
            path.unlink()
    return {"fsdd": to, "an4": to / "an4"}.get(corpus, to / "LibriSpeech")
