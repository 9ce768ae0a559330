"""The QEMU insn plugin that bench finds or builds (bifsmn_cli.bench.qemu_plugin), without network or root.

qemu-aarch64 and apt-get are stand-ins (shell scripts on PATH): the version parsing and cache key, a cached
plugin used as it is (apt never asked), every "cannot" path with its one-line reason, and the whole build offline:
the deb-src lists derived from a stand-in /etc/apt, the private apt invocations, the header taken out of the
source tarball and qemu_insn.c compiled against it into the cache. The stand-in header declares the few plugin
API functions qemu_insn.c calls with QEMU 7.2's signatures; the real download (24 MB from Debian's mirror) is
not exercised by any test: it needs the network.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from bifsmn_cli.bench import qemu_plugin
from bifsmn_cli.bench.qemu_plugin import QemuVersion, Unavailable

DEBIAN = "qemu-aarch64 version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)"
# The declarations qemu_insn.c uses, as QEMU 7.2's include/qemu/qemu-plugin.h has them.
STUB_HEADER = """\
#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#define QEMU_PLUGIN_EXPORT __attribute__((visibility("default")))
#define QEMU_PLUGIN_VERSION 1
typedef uint64_t qemu_plugin_id_t;
typedef struct qemu_info_t qemu_info_t;
struct qemu_plugin_tb;
struct qemu_plugin_insn;
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
void qemu_plugin_register_vcpu_insn_exec_inline(struct qemu_plugin_insn *insn, enum qemu_plugin_op op, void *ptr,
                                                uint64_t imm);
void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void *userdata);
void qemu_plugin_outs(const char *string);
"""


def _script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


@pytest.fixture
def tools(tmp_path, monkeypatch) -> Path:
    """A directory first on PATH, for the stand-ins."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    return bin_dir


def _qemu(bin_dir: Path, version: str = DEBIAN) -> str:
    return str(_script(bin_dir / "qemu-aarch64", f'echo "{version}"\necho "Copyright (c) 2003-2022"\n'))


def _apt_dir(tmp_path: Path) -> Path:
    apt = tmp_path / "etc-apt"
    (apt / "sources.list.d").mkdir(parents=True, exist_ok=True)
    (apt / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm\nComponents: main\n"
    )
    (apt / "sources.list").write_text(
        "deb http://deb.debian.org/debian-security bookworm-security main\n# x\n"
    )
    return apt


def _orig_tarball(path: Path, header: str | None) -> None:
    with tarfile.open(path, "w:xz") as tar:
        members = {"qemu-7.2.0/README.rst": "QEMU\n"}
        if header is not None:
            members["qemu-7.2.0/include/qemu/qemu-plugin.h"] = header
        for name, text in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(text.encode())
            tar.addfile(info, io.BytesIO(text.encode()))


def _fake_apt(bin_dir: Path, tarball: Path | None, log: Path) -> None:
    """apt-get that logs its arguments; `source` copies `tarball` into the current directory (or fails)."""
    fetch = (
        f"cp {tarball} ./qemu_7.2+dfsg.orig.tar.xz; exit 0"
        if tarball
        else 'echo "E: Unable to find a source package for qemu" >&2; exit 100'
    )
    _script(
        bin_dir / "apt-get",
        f'echo "$@" >> {log}\n'
        'for a in "$@"; do case "$a" in Dir::Etc::SourceParts=*) cat "${a#*=}"/* >> '
        + str(log)
        + ";; esac; done\n"
        'case " $* " in *" update "*) exit 0;; *" source "*) ' + fetch + ";; esac\nexit 1\n",
    )


def test_version_key_and_source_version(tools):
    v = qemu_plugin.qemu_version(_qemu(tools))
    assert v == QemuVersion("7.2.22", "1:7.2+dfsg-7+deb12u18+b3")
    assert v.key == "7.2.22-debian-1_7.2+dfsg-7+deb12u18+b3"
    assert v.source_version == "1:7.2+dfsg-7+deb12u18"  # the binary-only rebuild's source
    assert QemuVersion("8.2.1", None).key == "8.2.1"
    with pytest.raises(Unavailable, match="printed no version"):
        qemu_plugin.qemu_version(str(_script(tools / "q", "echo hello\n")))


def test_a_cached_plugin_is_used_without_apt(tools, tmp_path):
    qemu = _qemu(tools)
    cached = qemu_plugin.cached_path(qemu_plugin.qemu_version(qemu), tmp_path / "cache")
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"\x7fELF plugin")
    log = tmp_path / "apt.log"
    _fake_apt(tools, None, log)
    assert qemu_plugin.find_or_build(qemu, tmp_path / "cache") == (cached, False)
    assert not log.exists()  # apt was never asked


def test_cache_root_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert qemu_plugin.cache_root() == tmp_path / "x" / "bifsmn"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert qemu_plugin.cache_root() == tmp_path / "home" / ".cache" / "bifsmn"


def test_what_cannot_build_says_why(tools, tmp_path):
    cache = tmp_path / "cache"
    with pytest.raises(Unavailable, match=r"is QEMU 9\.1\.0, not Debian's build.*set bench.qemu_plugin"):
        qemu_plugin.find_or_build(_qemu(tools, "qemu-aarch64 version 9.1.0"), cache)
    qemu = _qemu(tools)
    log = tmp_path / "apt.log"
    _fake_apt(tools, None, log)  # deb-src unreachable: apt has no source package
    with pytest.raises(Unavailable) as err:
        qemu_plugin.find_or_build(qemu, cache, apt=_apt_dir(tmp_path))
    assert "cannot fetch Debian's source of qemu=1:7.2+dfsg-7+deb12u18 with apt" in str(err.value)
    assert "E: Unable to find a source package for qemu" in str(err.value) and "\n" not in str(err.value)
    empty = tmp_path / "no-apt"
    (empty / "sources.list.d").mkdir(parents=True)
    with pytest.raises(Unavailable, match="no apt sources"):
        qemu_plugin.find_or_build(qemu, cache, apt=empty)
    tarball = tmp_path / "orig.tar.xz"
    _orig_tarball(tarball, None)
    _fake_apt(tools, tarball, log)
    with pytest.raises(Unavailable, match="holds no include/qemu/qemu-plugin.h"):
        qemu_plugin.find_or_build(qemu, cache, apt=_apt_dir(tmp_path))
    _orig_tarball(tarball, "#error this plugin API is not supported\n")
    with pytest.raises(Unavailable, match="cannot compile the QEMU insn plugin .*not supported"):
        qemu_plugin.find_or_build(qemu, cache, apt=_apt_dir(tmp_path))
    assert not list(cache.rglob("*.so")) and not list(cache.rglob("*.tmp"))  # nothing half-written


def test_build_offline_into_the_cache(tools, tmp_path):
    """The whole build with apt-get and the source tarball stood in for; the second call finds the cache."""
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("no C compiler")
    qemu, log, tarball = _qemu(tools), tmp_path / "apt.log", tmp_path / "orig.tar.xz"
    _orig_tarball(tarball, STUB_HEADER)
    _fake_apt(tools, tarball, log)
    said: list[str] = []
    path, built = qemu_plugin.find_or_build(qemu, tmp_path / "cache", said.append, apt=_apt_dir(tmp_path))
    assert (
        built
        and path
        == tmp_path / "cache" / "qemu-plugins" / "7.2.22-debian-1_7.2+dfsg-7+deb12u18+b3" / "libinsn.so"
    )
    assert len(said) == 1 and "building the QEMU insn plugin" in said[0]
    assert path.read_bytes()[:4] == b"\x7fELF"
    symbols = subprocess.run(["nm", "-D", "--defined-only", str(path)], capture_output=True, text=True).stdout
    assert "qemu_plugin_install" in symbols and "qemu_plugin_version" in symbols
    calls = log.read_text()
    # deb-src entries from both kinds of apt source file, apt's state kept in a private directory
    assert (
        "Types: deb-src" in calls
        and "deb-src http://deb.debian.org/debian-security bookworm-security" in calls
    )
    assert "Dir::State::Lists=" in calls and "/var/lib/apt" not in calls
    assert "source --download-only qemu=1:7.2+dfsg-7+deb12u18" in calls
    log.write_text("")
    assert qemu_plugin.find_or_build(qemu, tmp_path / "cache", apt=_apt_dir(tmp_path)) == (path, False)
    assert log.read_text() == ""
