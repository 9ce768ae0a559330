"""The QEMU instruction-counting plugin bench counts aarch64 instructions with: found in a per-user cache, or built.

Debian's qemu-user ships no TCG plugins, and a plugin must be compiled against the plugin API (qemu-plugin.h) of
the QEMU that loads it. So, for Debian's qemu-aarch64, the header comes from Debian's source package of exactly
that version (apt's deb-src, in a private list directory: no root, nothing installed, the system's apt state
untouched), and `qemu_insn.c` (ours: it prints the "insns: N" line of QEMU's tests/plugin/insn.c, without glib)
is compiled against it with the system's C compiler. The result is cached per QEMU version under
$XDG_CACHE_HOME/bifsmn/qemu-plugins/ (default ~/.cache), so the download (about 24 MB) and the build (a few
seconds) happen once per machine and QEMU version.

Whatever prevents it (a QEMU that is not Debian's, no apt-get, no deb-src access, no C compiler) is an
`Unavailable` carrying one line that says what and what to do; bench then reports the instruction counts as not
measured, with that line.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bifsmn_cli.errors import UserError
from bifsmn_cli.fsutil import atomic_path

PLUGIN_SOURCE = Path(__file__).with_name("qemu_insn.c")
PLUGIN_NAME = "libinsn.so"
HEADER = "include/qemu/qemu-plugin.h"
APT_SOURCES = Path("/etc/apt")
SOURCE_PACKAGE = "qemu"
TIMEOUT_S = 600


class Unavailable(Exception):
    """The plugin cannot be found or built here; str() is the one-line reason."""


@dataclass(frozen=True)
class QemuVersion:
    """`qemu-aarch64 --version`: the upstream version and, for Debian's build, its package version."""

    upstream: str
    debian: str | None

    @property
    def key(self) -> str:
        """A directory name per build of QEMU (its plugin API)."""
        raw = f"{self.upstream}-debian-{self.debian}" if self.debian else self.upstream
        return re.sub(r"[^A-Za-z0-9.+-]", "_", raw)

    @property
    def source_version(self) -> str:
        """The source package's version: a binary-only rebuild (+bN) has its parent's source."""
        return re.sub(r"\+b\d+$", "", self.debian or "")


def qemu_version(qemu: str) -> QemuVersion:
    try:
        done = subprocess.run([qemu, "--version"], capture_output=True, text=True, timeout=60)
    except OSError as exc:
        raise Unavailable(f"{qemu}: cannot run it ({exc.strerror})") from None
    found = re.search(r"version (\S+)", done.stdout)
    if done.returncode != 0 or found is None:
        raise Unavailable(f"{qemu} --version printed no version ({done.stdout.strip()[:80]!r})")
    debian = re.search(r"\(Debian ([^)\s]+)\)", done.stdout)
    return QemuVersion(found.group(1), debian.group(1) if debian else None)


def cache_root() -> Path:
    """$XDG_CACHE_HOME/bifsmn, or ~/.cache/bifsmn."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "bifsmn"


def cached_path(version: QemuVersion, root: Path | None = None) -> Path:
    return (root or cache_root()) / "qemu-plugins" / version.key / PLUGIN_NAME


def find_or_build(
    qemu: str,
    root: Path | None = None,
    say: Callable[[str], None] | None = None,
    apt: Path = APT_SOURCES,
) -> tuple[Path, bool]:
    """(the plugin for `qemu`, whether it was built now), cached under `root` (default cache_root()); `say(line)`
    hears what a build is doing; `apt` is where the system's apt sources are."""
    version = qemu_version(qemu)
    path = cached_path(version, root)
    if path.is_file():
        return path, False
    if version.debian is None:
        raise Unavailable(
            f"{qemu} is QEMU {version.upstream}, not Debian's build, so its plugin source cannot be fetched with "
            "apt; build QEMU's tests/plugin/insn.c for it and set bench.qemu_plugin"
        )
    compiler = next((c for c in ("cc", "gcc", "clang") if shutil.which(c)), None)
    if compiler is None:
        raise Unavailable(
            "no C compiler (cc, gcc or clang) to build the QEMU insn plugin; apt-get install gcc"
        )
    if shutil.which("apt-get") is None:
        raise Unavailable("no apt-get to fetch QEMU's source for its insn plugin; set bench.qemu_plugin")
    if say:
        say(
            f"building the QEMU insn plugin for qemu {version.debian} (Debian source, once) into {path.parent}"
        )
    with tempfile.TemporaryDirectory(prefix="bifsmn-qemu-") as tmp:
        header = fetch_header(version, Path(tmp), apt)
        build(compiler, header, path)
    return path, True


def deb_src_lists(apt: Path = APT_SOURCES) -> tuple[list[str], list[str]]:
    """The system's apt sources as deb-src: (deb822 .sources texts, one-line .list entries)."""
    parts = []
    for f in sorted((apt / "sources.list.d").glob("*.sources")):
        parts.append(re.sub(r"(?m)^Types:.*$", "Types: deb-src", f.read_text()))
    lines = []
    for f in [apt / "sources.list", *sorted((apt / "sources.list.d").glob("*.list"))]:
        if f.is_file():
            lines += [
                "deb-src " + line.strip()[4:]
                for line in f.read_text().splitlines()
                if line.startswith("deb ")
            ]
    return parts, lines


def _apt(args: list[str], work: Path) -> str | None:
    """apt-get on a private list and cache directory (no root, no change to the system's apt state); returns
    its last error line, or None when it succeeded."""
    options = [
        "-o", "Dir::Etc::SourceList=/dev/null", "-o", f"Dir::Etc::SourceParts={work / 'parts'}",
        "-o", f"Dir::State::Lists={work / 'lists'}", "-o", f"Dir::Cache={work / 'cache'}",
    ]  # fmt: skip
    cmd = ["apt-get", "-q", *options, *args]
    try:
        done = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return f"no answer within {TIMEOUT_S} s"
    errors = [ln.strip() for ln in (done.stderr + done.stdout).splitlines() if ln.startswith(("E:", "Err"))]
    if done.returncode == 0 and not any(e.startswith("E:") for e in errors):
        return None
    return (errors or (done.stderr.strip().splitlines() or [f"exit {done.returncode}"]))[-1]


def fetch_header(version: QemuVersion, work: Path, apt: Path = APT_SOURCES) -> Path:
    """qemu-plugin.h of Debian's source package `qemu` at `version`, extracted into `work`."""
    parts, lines = deb_src_lists(apt)
    if not parts and not lines:
        raise Unavailable(f"{apt}: no apt sources to derive deb-src entries from; set bench.qemu_plugin")
    for d in ("parts", "lists/partial", "cache/archives/partial"):
        (work / d).mkdir(parents=True, exist_ok=True)
    for i, text in enumerate(parts):
        (work / "parts" / f"src{i}.sources").write_text(text)
    if lines:
        (work / "parts" / "src.list").write_text("\n".join(lines) + "\n")
    # One unreachable source fails `update` but may not matter: only the source package's absence counts.
    update = _apt(["update"], work)
    wanted = f"{SOURCE_PACKAGE}={version.source_version}"
    failed = _apt(["source", "--download-only", wanted], work)
    if failed:
        raise Unavailable(
            f"cannot fetch Debian's source of {wanted} with apt ({update or failed}); without deb-src access, "
            "build QEMU's tests/plugin/insn.c and set bench.qemu_plugin"
        )
    tarballs = sorted(work.glob(f"{SOURCE_PACKAGE}_*.orig.tar.*"))
    if not tarballs:
        raise Unavailable(f"apt fetched no {SOURCE_PACKAGE}_*.orig.tar.* for {version.source_version}")
    out = work / "include" / "qemu-plugin.h"
    out.parent.mkdir()
    with tarfile.open(tarballs[0], "r|*") as tar:  # one pass over a stream: the tarball is large
        for member in tar:
            if member.isfile() and member.name.endswith("/" + HEADER):
                out.write_bytes(tar.extractfile(member).read())
                return out
    raise Unavailable(f"{tarballs[0].name} holds no {HEADER}; set bench.qemu_plugin")


def build(compiler: str, header: Path, dest: Path) -> None:
    """Compile qemu_insn.c against `header` into `dest` (atomically: a cache never holds half a plugin)."""
    try:
        with atomic_path(dest) as tmp:
            cmd = [compiler, "-std=c11", "-O2", "-fPIC", "-shared", f"-I{header.parent}", str(PLUGIN_SOURCE)]
            done = subprocess.run([*cmd, "-o", str(tmp)], capture_output=True, text=True, timeout=TIMEOUT_S)
            tmp.chmod(0o755)
            if done.returncode != 0:
                lines = done.stderr.strip().splitlines() or ["no message"]
                first = next((ln.strip() for ln in lines if "error" in ln), lines[-1])
                raise Unavailable(
                    f"cannot compile the QEMU insn plugin against this QEMU's plugin API ({first}); build QEMU's "
                    "tests/plugin/insn.c and set bench.qemu_plugin"
                )
    except (OSError, UserError) as exc:  # the cache directory cannot be written
        raise Unavailable(f"cannot write the plugin cache ({exc}); set XDG_CACHE_HOME elsewhere") from None
