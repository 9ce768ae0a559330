"""Fetching and unpacking corpus archives: resumable HTTP, sha256 verification, and extraction that cannot escape.

A 2.4 GB download over a flaky link must survive interruptions (HTTP Range resume from a `.part` file), must
never be trusted unverified (sha256; a mismatch is set aside as `.bad` rather than silently deleted or used), and
an archive must never write outside its target directory whatever its member names say.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import shutil
import socket
import tarfile
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from bifsmn_cli.console import info, progress
from bifsmn_cli.errors import UserError
from bifsmn_cli.fsutil import describe_os_error

_BLOCK = 1 << 20


class _Interrupted(Exception):
    """The transfer stopped part-way; what was received is kept in the `.part` file."""


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        exc = exc.reason if isinstance(exc.reason, BaseException) else exc
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return "timed out"
    if isinstance(exc, socket.gaierror):
        return "host name not found"
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def _open(url: str, offset: int, timeout: float) -> http.client.HTTPResponse:
    request = urllib.request.Request(url, headers={"User-Agent": "bifsmn", "Accept-Encoding": "identity"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    return urllib.request.urlopen(request, timeout=timeout)


def _transfer(url: str, part: Path, timeout: float) -> None:
    """Append the rest of `url` to `part`, or restart it if the server ignores Range."""
    offset = part.stat().st_size if part.exists() else 0
    try:
        response = _open(url, offset, timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # nothing left to send: the part file may be complete already
            return
        if exc.code == 404:
            raise UserError(
                f"{url}: HTTP 404 not found; check download.url or BIFSMN_MIRROR (the mirror must serve the "
                "archive under its official name)"
            ) from None
        raise UserError(f"{url}: HTTP {exc.code} {exc.reason}; check the URL or try again later") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = _reason(exc)
        if reason == "connection refused" or reason == "host name not found":
            raise UserError(
                f"{url}: {reason}; check download.url / BIFSMN_MIRROR and your network, then rerun"
            ) from None
        raise _Interrupted(reason) from None
    with response:
        if offset and response.status == 206:
            first = response.headers.get("Content-Range", "").removeprefix("bytes ").split("-")[0]
            if first != str(offset):  # a partial answer for some other range cannot be appended
                part.unlink()
                raise _Interrupted(f"the server answered range {first}- instead of {offset}-")
            mode = "ab"
        else:
            if offset:
                info(f"{url}: the server ignored the resume request; restarting the download")
            offset, mode = 0, "wb"
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        with (
            open(part, mode) as fh,
            progress(f"downloading {PurePosixPath(url).name}", total, "bytes") as bar,
        ):
            bar.advance(offset)
            while True:
                try:
                    block = response.read(_BLOCK)
                except (http.client.HTTPException, OSError) as exc:
                    raise _Interrupted(_reason(exc)) from None
                if not block:
                    break
                try:
                    fh.write(block)
                except OSError as exc:  # the disk, not the network: retrying would not help
                    raise describe_os_error(exc, part) from None
                bar.advance(len(block))
        if total is not None and part.stat().st_size < total:
            raise _Interrupted(f"connection closed after {part.stat().st_size} of {total} bytes")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    size = path.stat().st_size
    with open(path, "rb") as fh, progress(f"verifying {path.name}", size, "bytes") as bar:
        while block := fh.read(_BLOCK):
            digest.update(block)
            bar.advance(len(block))
    return digest.hexdigest()


def fetch(
    url: str,
    dest: Path,
    sha256: str | None,
    timeout: float = 60.0,
    retries: int = 4,
    retry_delay: float = 1.0,
) -> Path:
    """Download `url` to `dest` (via `dest.part`, resumed across retries and runs) and verify its sha256.

    An existing `dest` that still matches the checksum is reused without touching the network.
    """
    part = dest.with_name(dest.name + ".part")
    sha256 = sha256.lower() if sha256 else None
    if dest.exists():
        if sha256 is None or sha256_of(dest) == sha256:
            return dest
        dest.replace(part)  # no longer matches: treat it as a suspect part file, verified below
    attempt = 0
    while True:
        try:
            _transfer(url, part, timeout)
            break
        except _Interrupted as exc:
            attempt += 1
            if attempt > retries:
                kept = part.stat().st_size if part.exists() else 0
                raise UserError(
                    f"{url}: download interrupted ({exc}) after {retries} retries; {kept} bytes kept in {part}; "
                    "rerun the same command to resume"
                ) from None
            info(f"{url}: {exc}; resuming (retry {attempt} of {retries})")
            time.sleep(retry_delay * attempt)
    if sha256 is not None:
        got = sha256_of(part)
        if got != sha256:
            bad = part.with_name(dest.name + ".bad")
            part.replace(bad)
            raise UserError(
                f"{url}: sha256 mismatch (expected {sha256}, got {got}); the file was set aside as {bad}; "
                "delete it and rerun, or set download.sha256 if this mirror serves a different archive"
            )
    part.replace(dest)
    return dest


def _check_member(member: tarfile.TarInfo, target: Path, archive: Path) -> Path:
    """Where `member` may be written, or a UserError naming it if it would land outside `target`."""

    def refuse(why: str) -> UserError:
        return UserError(
            f"{archive}: refusing to extract member {member.name!r} ({why}); the archive is not safe to unpack"
        )

    name = PurePosixPath(member.name)
    if name.is_absolute() or member.name.startswith(("/", "\\")) or (name.parts and ":" in name.parts[0]):
        raise refuse("absolute path")
    if ".." in name.parts:
        raise refuse("path contains '..'")
    dest = target.joinpath(*name.parts) if name.parts else target
    # Resolve through links extracted earlier: `a -> .` followed by `a/b -> ..` must not climb out.
    parent = Path(os.path.realpath(dest.parent))
    if dest != target and not parent.is_relative_to(target):
        raise refuse("path goes through a link that leaves the target directory")
    if member.issym() or member.islnk():
        link = PurePosixPath(member.linkname)
        if link.is_absolute():
            raise refuse(f"link to absolute path {member.linkname!r}")
        base = parent if member.issym() else target
        resolved = Path(os.path.normpath(base.joinpath(*link.parts)))
        if not resolved.is_relative_to(target):
            raise refuse(f"link to {member.linkname!r} leaves the target directory")
    elif not (member.isfile() or member.isdir()):
        raise refuse("device, fifo or other special file")
    return dest


class _CountingReader:
    """Counts compressed bytes read so extraction can show progress against the archive size."""

    def __init__(self, fh: BinaryIO, bar: object) -> None:
        self._fh, self._bar = fh, bar

    def read(self, n: int = -1) -> bytes:
        data = self._fh.read(n)
        self._bar.advance(len(data))  # type: ignore[attr-defined]
        return data


def safe_extract(archive: Path, target: Path) -> int:
    """Extract a .tar.gz into `target` (created; must not exist), refusing any member that would escape it.

    Members are checked and written one by one while streaming, so the archive is read once. On any error the
    partial tree is removed. Returns the number of files written.
    """
    target = Path(os.path.abspath(target))
    tmp = Path(os.path.realpath(target.parent)) / f".{target.name}.extracting"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    files = 0
    try:
        with (
            open(archive, "rb") as raw,
            progress(f"extracting {archive.name}", archive.stat().st_size, "bytes") as bar,
            tarfile.open(fileobj=_CountingReader(raw, bar), mode="r|*") as tar,  # type: ignore[call-overload]
        ):
            for member in tar:
                dest = _check_member(member, tmp, archive)
                if member.isdir():
                    dest.mkdir(parents=True, exist_ok=True)
                elif member.issym():
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    dest.symlink_to(member.linkname)
                elif member.islnk():
                    source = tmp.joinpath(*PurePosixPath(member.linkname).parts)
                    if not source.is_file():
                        raise UserError(f"{archive}: member {member.name!r} links to a missing file")
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(source, dest)
                    files += 1
                else:
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    source = tar.extractfile(member)
                    assert source is not None
                    with open(dest, "wb") as out:
                        shutil.copyfileobj(source, out, _BLOCK)
                    files += 1
        tmp.rename(target)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise UserError(
            f"{archive}: cannot extract ({exc}); the archive is damaged: delete it and rerun to download it again"
        ) from None
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise describe_os_error(exc, target) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return files
