"""The speech_commands download path against a local HTTP server: resume, checksums, safe extraction, errors."""

from __future__ import annotations

import json
import random
import tarfile
from pathlib import Path

import pytest
from helpers import assert_user_error, closed_port_url, make_tar, sha, tar_directory, write_corpus

from bifsmn_cli.data.archives import fetch, safe_extract
from bifsmn_cli.errors import UserError

PAYLOAD = bytes(range(256)) * 400  # 100 KiB


def test_fetch_resumes_after_a_cut_connection(server, tmp_path):
    server.files["a.tar.gz"] = PAYLOAD
    server.cuts["a.tar.gz"] = [30_000]
    dest = fetch(server.url + "a.tar.gz", tmp_path / "a.tar.gz", sha(PAYLOAD), retries=2, retry_delay=0)
    assert dest.read_bytes() == PAYLOAD
    assert server.requests == [("a.tar.gz", None), ("a.tar.gz", "bytes=30000-")]
    assert not (tmp_path / "a.tar.gz.part").exists()


def test_fetch_resumes_across_runs_and_reuses_a_verified_file(server, tmp_path):
    server.files["a.tar.gz"] = PAYLOAD
    server.cuts["a.tar.gz"] = [12_345]
    with pytest.raises(
        UserError, match=r"download interrupted .* 12345 bytes kept in .*a.tar.gz.part; rerun"
    ):
        fetch(server.url + "a.tar.gz", tmp_path / "a.tar.gz", sha(PAYLOAD), retries=0)
    assert (tmp_path / "a.tar.gz.part").stat().st_size == 12_345
    fetch(server.url + "a.tar.gz", tmp_path / "a.tar.gz", sha(PAYLOAD), retries=0)
    assert server.requests[-1] == ("a.tar.gz", "bytes=12345-")
    assert (tmp_path / "a.tar.gz").read_bytes() == PAYLOAD
    count = len(server.requests)
    fetch(server.url + "a.tar.gz", tmp_path / "a.tar.gz", sha(PAYLOAD))
    assert len(server.requests) == count  # verified archive reused, no network


def test_fetch_restarts_when_the_server_ignores_range(server, tmp_path):
    server.files["a.tar.gz"] = PAYLOAD
    server.ignore_range.add("a.tar.gz")
    (tmp_path / "a.tar.gz.part").write_bytes(b"stale bytes from another file")
    fetch(server.url + "a.tar.gz", tmp_path / "a.tar.gz", sha(PAYLOAD), retries=0)
    assert (tmp_path / "a.tar.gz").read_bytes() == PAYLOAD
    assert server.requests == [("a.tar.gz", "bytes=29-")]


def test_fetch_checksum_mismatch_sets_the_file_aside(server, tmp_path):
    server.files["a.tar.gz"] = PAYLOAD
    with pytest.raises(
        UserError, match=r"sha256 mismatch \(expected 0{64}, got [0-9a-f]{64}\).*a.tar.gz.bad"
    ):
        fetch(server.url + "a.tar.gz", tmp_path / "a.tar.gz", "0" * 64)
    assert (tmp_path / "a.tar.gz.bad").read_bytes() == PAYLOAD
    assert not (tmp_path / "a.tar.gz").exists() and not (tmp_path / "a.tar.gz.part").exists()


def test_fetch_network_errors(server, tmp_path):
    with pytest.raises(UserError, match="a.tar.gz: HTTP 404 not found; check download.url or BIFSMN_MIRROR"):
        fetch(server.url + "a.tar.gz", tmp_path / "a.tar.gz", None)
    with pytest.raises(UserError, match="connection refused; check download.url / BIFSMN_MIRROR"):
        fetch(closed_port_url() + "a.tar.gz", tmp_path / "a.tar.gz", None)


def test_safe_extract_writes_a_normal_archive(tmp_path):
    archive = tmp_path / "ok.tar.gz"
    archive.write_bytes(
        make_tar({"./yes/a.wav": b"1", "no/b.wav": b"22"}, {"yes/alias.wav": ("a.wav", tarfile.SYMTYPE)})
    )
    assert safe_extract(archive, tmp_path / "out") == 2
    assert (tmp_path / "out/no/b.wav").read_bytes() == b"22"
    assert (tmp_path / "out/yes/alias.wav").read_bytes() == b"1"


@pytest.mark.parametrize(
    "members, links, why",
    [
        ({"yes/a.wav": b"1", "../evil.txt": b"x"}, None, r"'../evil.txt' \(path contains '..'\)"),
        ({"/tmp/evil.txt": b"x"}, None, r"'/tmp/evil.txt' \(absolute path\)"),
        ({}, {"yes/up": ("../../outside", tarfile.SYMTYPE)}, r"'yes/up' \(link to '../../outside' leaves"),
        ({}, {"hard": ("/etc/passwd", tarfile.LNKTYPE)}, r"'hard' \(link to absolute path"),
        # A link to inside, then a link through it that climbs out: caught by resolving the first link.
        ({}, {"a": (".", tarfile.SYMTYPE), "a/b": ("..", tarfile.SYMTYPE)}, r"'a/b' \(link to '..' leaves"),
    ],
)
def test_safe_extract_refuses_members_that_escape(tmp_path, members, links, why):
    archive = tmp_path / "bad.tar.gz"
    archive.write_bytes(make_tar(members, links))
    with pytest.raises(UserError, match=rf"bad.tar.gz: refusing to extract member {why}"):
        safe_extract(archive, tmp_path / "box" / "out")
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "box" / "out").exists()
    assert list((tmp_path / "box").iterdir()) == []  # the partial tree is gone


def test_safe_extract_damaged_archive(tmp_path):
    archive = tmp_path / "cut.tar.gz"
    archive.write_bytes(make_tar({"yes/a.wav": random.Random(0).randbytes(50_000)})[:20_000])
    with pytest.raises(UserError, match="cut.tar.gz: cannot extract .* the archive is damaged"):
        safe_extract(archive, tmp_path / "out")


def _pipeline(tmp_path: Path, url: str | None, sha256: str, version: str = "v0.01") -> list[str]:
    config = tmp_path / "p.yaml"
    config.write_text(
        f"name: t\nworkspace: {tmp_path / 'ws'}\ndownload:\n  source: speech_commands\n  version: {version}\n"
        f"  sha256: '{sha256}'\n" + (f"  url: {url}\n" if url else "")
    )
    return ["-q", "download", "-c", str(config)]


def test_cli_speech_commands_download_resumes_and_extracts(server, tmp_path, cli):
    write_corpus(tmp_path / "corpus", words=("yes", "no"), speakers=("a1", "b2"))
    (tmp_path / "corpus" / "validation_list.txt").write_text("yes/a1_nohash_0.wav\n")
    archive = tar_directory(tmp_path / "corpus")
    server.files["speech_commands_v0.01.tar.gz"] = archive
    server.cuts["speech_commands_v0.01.tar.gz"] = [len(archive) // 2]
    result = cli(*_pipeline(tmp_path, server.url, sha(archive)))
    assert result.returncode == 0, result.stderr
    assert server.requests[1] == ("speech_commands_v0.01.tar.gz", f"bytes={len(archive) // 2}-")
    download = tmp_path / "ws" / "download"
    corpus = json.loads((download / "corpus.json").read_text())
    assert corpus["root"] == "data" and corpus["words"] == {"no": 2, "yes": 2}
    assert (download / "data" / "validation_list.txt").exists()
    assert (download / "state" / "speech_commands_v0.01.tar.gz").stat().st_size == len(
        archive
    )  # kept for reuse
    manifest = json.loads((download / "manifest.json").read_text())
    assert manifest["outputs"]["data/"].startswith("tree:")


def test_cli_download_errors(server, tmp_path, cli):
    archive = make_tar({"yes/a.wav": b"1", "../evil.txt": b"x"})
    server.files["speech_commands_v0.02.tar.gz"] = archive
    # Every failure: exit 1, one line naming the URL or file and what to do.
    assert_user_error(  # the mirror given by the environment instead of download.url
        cli(*_pipeline(tmp_path, None, "0" * 64), env={"BIFSMN_MIRROR": server.url + "nothing"}),
        "nothing/speech_commands_v0.01.tar.gz: HTTP 404 not found",
        "download.url",
    )
    assert_user_error(
        cli(*_pipeline(tmp_path, closed_port_url(), "0" * 64)),
        "speech_commands_v0.01.tar.gz: connection refused; check download.url",
    )
    assert_user_error(
        cli(*_pipeline(tmp_path, server.url, "0" * 64, "v0.02")),
        "speech_commands_v0.02.tar.gz: sha256 mismatch",
        "speech_commands_v0.02.tar.gz.bad",
    )
    assert_user_error(
        cli(*_pipeline(tmp_path, server.url, sha(archive), "v0.02")),
        "refusing to extract member '../evil.txt'",
    )
    assert not (tmp_path / "ws" / "evil.txt").exists()
    assert_user_error(
        cli(*_pipeline(tmp_path, server.url, "xyz")), "download.sha256: expected 64 hexadecimal digits"
    )
