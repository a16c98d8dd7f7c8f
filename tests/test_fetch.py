"""usmlite_edu.speech.fetch against a local HTTP server on 127.0.0.1 (no external network)."""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import io
import socket
import tarfile
import threading
import time
import zipfile
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from usmlite_edu.speech import fetch as F
from usmlite_edu.speech.corpora import load_corpus

REPO = Path(__file__).resolve().parents[1]
FSDD_PATH = "/" + F.CORPUS_ARCHIVES["fsdd"][0].path


class _Server:
    """Serves ``files`` (URL path -> bytes) with HTTP Range; ``cut`` paths send only half
    of the body on their first request, to exercise resuming."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.cut: set[str] = set()
        self.requests: list[tuple[str, str | None]] = []
        srv = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                rng = self.headers.get("Range")
                srv.requests.append((self.path, rng))
                body = srv.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                start = int(rng.split("=")[1].split("-")[0]) if rng else 0
                self.send_response(206 if rng else 200)
                if rng:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                if self.path in srv.cut:
                    srv.cut.discard(self.path)
                    self.wfile.write(body[start : len(body) // 2])
                    self.close_connection = True
                    return
                self.wfile.write(body[start:])

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.timeout = 5
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def server():
    s = _Server()
    yield s
    s.close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


WAV_HEAD = b"RIFF\x24\x00\x00\x00WAVE"


@cache
def _fsdd_zip(
    speakers=("george", "jackson", "lucas", "nicolas", "theo", "yweweler"),
    per_digit: int = 50,
    content: bytes = WAV_HEAD,
    extra: tuple[tuple[str, bytes], ...] = (),
    link: str | None = None,
) -> bytes:
    """A zip shaped like GitHub's archive of FSDD, with tiny placeholder 'recordings'
    (``content``), plus ``extra`` members and a symbolic-link member ``link``."""
    top = f"free-spoken-digit-dataset-{F.FSDD_COMMIT}/"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr(top + "README.md", "FSDD")
        z.writestr(top + "utils/fsdd.py", "print()")
        for name, data in extra:
            z.writestr(name, data)
        if link:
            info = zipfile.ZipInfo(top + link)
            info.external_attr = (0o120777 << 16) | 0
            z.writestr(info, "/etc/passwd")
        for spk in speakers:
            for d in range(10):
                for i in range(per_digit):
                    z.writestr(f"{top}recordings/{d}_{spk}_{i}.wav", content)
    return buf.getvalue()


def _tar(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            t.addfile(info)
    return buf.getvalue()


def _mini_libri_tar(subset: str) -> bytes:
    flac = next((REPO / "data_small" / "dev").rglob("*.flac")).read_bytes()
    base = f"LibriSpeech/{subset}/84/121123/"
    return _tar(
        {
            "LibriSpeech/README.TXT": b"fake",
            base + "84-121123.trans.txt": b"84-121123-0000 ONE TWO\n",
            base + "84-121123-0000.flac": flac,
        }
    )


def _use_fake_mini_librispeech(monkeypatch, server, archives: dict[str, bytes]) -> None:
    """Serve fake subsets and make the archive table expect their md5 sums."""
    table = []
    for a in F.CORPUS_ARCHIVES["mini-librispeech"]:
        data = archives[a.subset]
        server.files["/" + a.path] = data
        table.append(
            F.Archive(a.filename, a.path, a.host, hashlib.md5(data).hexdigest(), a.kind, a.subset)
        )
    monkeypatch.setitem(F.CORPUS_ARCHIVES, "mini-librispeech", tuple(table))


def test_fsdd_download_verify_extract(server, tmp_path):
    server.files[FSDD_PATH] = _fsdd_zip()
    out = F.fetch("fsdd", tmp_path / "fsdd", base_url=server.url, timeout=5)
    assert out == (tmp_path / "fsdd").resolve()
    wavs = list((out / "recordings").glob("*.wav"))
    assert len(wavs) == 3000
    assert sorted(p.name for p in out.iterdir()) == ["recordings"]  # only recordings/, no zip
    n = len(server.requests)
    F.fetch("fsdd", tmp_path / "fsdd", base_url=server.url)  # complete: no second download
    assert len(server.requests) == n


def test_fsdd_wrong_file_count_is_refused(server, tmp_path):
    server.files[FSDD_PATH] = _fsdd_zip(speakers=("jackson", "theo"), per_digit=3)
    with pytest.raises(F.FetchError, match="3,000") as info:
        F.fetch("fsdd", tmp_path, base_url=server.url, timeout=5)
    assert "60 recordings of 2 speakers" in str(info.value)
    assert not (tmp_path / "recordings").exists()
    assert list(tmp_path.glob("*.zip.bad"))


def test_librispeech_md5_verified_then_unpacked(server, tmp_path, monkeypatch):
    _use_fake_mini_librispeech(
        monkeypatch,
        server,
        {
            "train-clean-5": _mini_libri_tar("train-clean-5"),
            "dev-clean-2": _mini_libri_tar("dev-clean-2"),
        },
    )
    out = F.fetch("mini-librispeech", tmp_path, base_url=server.url, timeout=5)
    assert out == tmp_path.resolve() / "LibriSpeech"
    assert (out / "train-clean-5" / "84" / "121123" / "84-121123-0000.flac").is_file()
    assert not list(tmp_path.glob("*.tar.gz*"))  # archives removed after unpacking
    c = load_corpus("mini-librispeech", tmp_path, "dev")
    assert [u.text for u in c] == ["one two"] and len(c.utterances[0].load(16000)) > 0


def test_checksum_mismatch_is_refused(server, tmp_path):
    for a in F.CORPUS_ARCHIVES["mini-librispeech"]:
        server.files["/" + a.path] = _mini_libri_tar(a.subset)  # right shape, wrong bytes
    with pytest.raises(F.FetchError, match="checksum mismatch") as info:
        F.fetch("mini-librispeech", tmp_path, base_url=server.url, timeout=5)
    msg = str(info.value)
    assert "5df7d4e78065366204ca6845bb08f490" in msg and "train-clean-5.tar.gz" in msg
    assert not (tmp_path / "LibriSpeech").exists()
    assert (tmp_path / "train-clean-5.tar.gz.bad").is_file()


@pytest.mark.parametrize("evil", [{"../escape.txt": b"x"}, {"/tmp/abs.txt": b"x"}, "link"])
def test_unsafe_archive_members_are_refused(server, tmp_path, monkeypatch, evil):
    good = {"LibriSpeech/train-clean-5/a.txt": b"ok"}
    data = (
        _tar(good, links={"LibriSpeech/train-clean-5/l": "/etc/passwd"})
        if evil == "link"
        else _tar({**good, **evil})
    )
    _use_fake_mini_librispeech(monkeypatch, server, {"train-clean-5": data, "dev-clean-2": data})
    with pytest.raises(F.FetchError, match="refusing"):
        F.fetch("mini-librispeech", tmp_path / "out", base_url=server.url, timeout=5)
    assert not (tmp_path / "escape.txt").exists()
    assert not (tmp_path / "out" / "LibriSpeech").exists()  # nothing half-unpacked


def test_broken_transfer_resumes_with_range(server, tmp_path, monkeypatch):
    archives = {
        "train-clean-5": _mini_libri_tar("train-clean-5"),
        "dev-clean-2": _mini_libri_tar("dev-clean-2"),
    }
    _use_fake_mini_librispeech(monkeypatch, server, archives)
    server.cut.add("/" + F.CORPUS_ARCHIVES["mini-librispeech"][0].path)
    F.fetch("mini-librispeech", tmp_path, base_url=server.url, timeout=5)
    assert any(r and r.startswith("bytes=") for _, r in server.requests)
    assert (tmp_path / "LibriSpeech" / "train-clean-5").is_dir()


def test_unreachable_host_fails_fast_with_hand_placement(tmp_path, capsys):
    url = f"http://127.0.0.1:{_closed_port()}"
    t0 = time.monotonic()
    with pytest.raises(F.FetchError) as info:
        F.fetch("fsdd", tmp_path, base_url=url, timeout=5)
    assert time.monotonic() - t0 < 5
    msg = str(info.value)
    assert url + FSDD_PATH in msg and "offline" in msg
    assert str(tmp_path.resolve() / "recordings" / "0_jackson_0.wav") in msg
    # the one command line: `usmlite-edu data fetch` has fetch's options and exits 2
    from usmlite_edu import cli

    assert (
        cli.main(
            [
                "data",
                "fetch",
                "mini-librispeech",
                "--to",
                str(tmp_path),
                "--base-url",
                url,
                "--timeout",
                "5",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "train-clean-5.tar.gz" in err and "tar xzf" in err


def test_hand_placed_archive_needs_no_network(tmp_path):
    (tmp_path / F.CORPUS_ARCHIVES["fsdd"][0].filename).write_bytes(_fsdd_zip())
    out = F.fetch("fsdd", tmp_path, base_url=f"http://127.0.0.1:{_closed_port()}")
    assert len(list((out / "recordings").glob("*.wav"))) == 3000


def test_unknown_corpus():
    with pytest.raises(ValueError, match="mini-librispeech"):
        F.fetch("timit", "/nonexistent")


# --------------------------------------------- zip rules as for tar, limits, targets (issue 27)
@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"extra": (("x/recordings/../../evil.wav", b"x"),)}, "outside the target folder"),
        ({"extra": (("/abs/evil.wav", b"x"),)}, "outside the target folder"),
        ({"link": "recordings/l.wav"}, "is a link"),
        ({"content": b"junk junk junk"}, "is not a WAV file"),
    ],
)
def test_unsafe_or_junk_zips_are_refused_whole(server, tmp_path, kwargs, message, capsys):
    server.files[FSDD_PATH] = _fsdd_zip(**kwargs)
    from usmlite_edu import cli

    argv = ["data", "fetch", "fsdd", "--to", str(tmp_path / "d"), "--base-url", server.url]
    assert cli.main(argv) == 2
    err = capsys.readouterr()
    assert message in err.err and "is ready" not in err.out
    assert not (tmp_path / "d" / "recordings").exists() and not (tmp_path / "evil.wav").exists()


def test_member_and_size_limits_stop_a_zip_and_a_tar(server, tmp_path, monkeypatch):
    fsdd = F.CORPUS_ARCHIVES["fsdd"][0]
    server.files[FSDD_PATH] = _fsdd_zip()
    monkeypatch.setitem(F.CORPUS_ARCHIVES, "fsdd", (dataclasses.replace(fsdd, max_members=100),))
    with pytest.raises(F.FetchError, match="more than 100"):
        F.fetch("fsdd", tmp_path / "a", base_url=server.url, timeout=5)
    monkeypatch.setitem(F.CORPUS_ARCHIVES, "fsdd", (dataclasses.replace(fsdd, max_bytes=1000),))
    with pytest.raises(F.FetchError, match="more than the 0.0 MB"):
        F.fetch("fsdd", tmp_path / "b", base_url=server.url, timeout=5)
    assert not (tmp_path / "b" / "recordings").exists()
    many = {f"LibriSpeech/train-clean-5/f{i}.txt": b"x" for i in range(50)}
    _use_fake_mini_librispeech(
        monkeypatch, server, {"train-clean-5": _tar(many), "dev-clean-2": _tar(many)}
    )
    limited = tuple(
        dataclasses.replace(a, max_members=10) for a in F.CORPUS_ARCHIVES["mini-librispeech"]
    )
    monkeypatch.setitem(F.CORPUS_ARCHIVES, "mini-librispeech", limited)
    with pytest.raises(F.FetchError, match="more than 10 members"):
        F.fetch("mini-librispeech", tmp_path / "c", base_url=server.url, timeout=5)
    assert not (tmp_path / "c" / "LibriSpeech").exists()


def test_a_symlinked_target_and_a_file_as_target_are_refused(server, tmp_path):
    server.files[FSDD_PATH] = _fsdd_zip()
    outside = tmp_path / "outside"
    outside.mkdir()
    to = tmp_path / "to"
    to.mkdir()
    (to / "recordings").symlink_to(outside)
    with pytest.raises(F.FetchError, match="is a symbolic link"):
        F.fetch("fsdd", to, base_url=server.url, timeout=5)
    assert not any(outside.iterdir())
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(F.FetchError, match="is a file, not a folder"):
        F.fetch("fsdd", afile, base_url=server.url, timeout=5)


def test_a_full_disk_is_one_line(server, tmp_path, monkeypatch):
    server.files[FSDD_PATH] = _fsdd_zip()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(F, "_merge_into", full)
    with pytest.raises(F.FetchError, match="no space left on the device"):
        F.fetch("fsdd", tmp_path, base_url=server.url, timeout=5)
