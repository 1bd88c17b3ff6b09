#!/usr/bin/env python3
"""Build the local Docker image that runs our QilbeeDB emulator (no image can be pulled here).

Two layers, both built locally:
1. a Debian bookworm root with python3, made by debootstrap from the machine's own apt
   mirror (read from /etc/apt/sources.list.d at run time; no host is written in the repo),
   imported as `qilbee-backup/debian-python:bookworm` once and reused;
2. the emulator on top: the engine package plus only the site-packages the emulator imports,
   tagged `qilbee-backup/emulator:<hash of that content>` and `qilbee-backup/emulator:test`.

Every image carries the label `org.qilbee-backup.test=1`, so tests clean up only their own.
Usage: build_emulator_image.py [--print-tag]
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import docker

LABEL = {"org.qilbee-backup.test": "1"}
BASE = "qilbee-backup/debian-python:bookworm"
APP = "qilbee-backup/emulator"
REPO_ROOT = Path(__file__).resolve().parent.parent


def debian_mirror() -> str:
    """The first Debian mirror URI the machine's apt sources name for bookworm."""
    for src in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        text = src.read_text()
        for stanza in text.split("\n\n"):
            uris = re.search(r"^URIs:\s*(\S+)", stanza, re.M)
            suites = re.search(r"^Suites:\s*(.+)$", stanza, re.M)
            if uris and suites and "bookworm" in suites.group(1).split() and "security" not in uris.group(1):
                return uris.group(1)
    for line in Path("/etc/apt/sources.list").read_text().splitlines() if Path("/etc/apt/sources.list").exists() else []:
        parts = line.split()
        if len(parts) >= 3 and parts[0] == "deb" and parts[2] == "bookworm":
            return parts[1]
    raise SystemExit("no Debian bookworm mirror found in /etc/apt/sources.list.d; cannot debootstrap")


def ensure_base(client: docker.DockerClient) -> None:
    try:
        client.images.get(BASE)
        return
    except docker.errors.ImageNotFound:
        pass
    if not shutil.which("debootstrap"):
        raise SystemExit("debootstrap is not installed (apt-get install -y debootstrap)")
    with tempfile.TemporaryDirectory(prefix="qilbee-rootfs-") as tmp:
        root = Path(tmp) / "root"
        print(f"debootstrap bookworm into {root} (a few minutes, once)", file=sys.stderr)
        subprocess.run(
            ["debootstrap", "--variant=minbase", "--include=python3", "bookworm", str(root), debian_mirror()],
            check=True, stdout=subprocess.DEVNULL,
        )
        # Trim what a runtime never needs: apt lists and caches, docs.
        for junk in ("var/cache/apt", "var/lib/apt/lists", "usr/share/doc", "usr/share/man"):
            shutil.rmtree(root / junk, ignore_errors=True)
        tarball = Path(tmp) / "rootfs.tar"
        subprocess.run(["tar", "-C", str(root), "-cf", str(tarball), "."], check=True)
        repo, tag = BASE.split(":")
        client.api.import_image_from_file(
            str(tarball), repository=repo, tag=tag,
            changes=[f'LABEL {k}="{v}"' for k, v in LABEL.items()] + ['CMD ["/bin/bash"]'],
        )


def emulator_site_packages() -> list[Path]:
    """What the emulator needs from site-packages: the distributions of the modules importing it
    loads, plus everything those distributions require (uvicorn imports its HTTP stack lazily)."""
    code = (
        "import sys, sysconfig, json\n"
        "import qilbee_backup.emulator.__main__  # noqa\n"
        # run() imports the server itself (so the CLI starts fast): import what it will.
        "import qilbee_backup.emulator.app, qilbee_backup.emulator.seed, uvicorn  # noqa\n"
        "site = sysconfig.get_paths()['purelib']\n"
        "tops = sorted({(getattr(m, '__file__', None) or '')[len(site) + 1:].split('/')[0]\n"
        "               for m in list(sys.modules.values())\n"
        "               if (getattr(m, '__file__', None) or '').startswith(site + '/')})\n"
        "print(json.dumps([site, tops]))\n"
    )
    import json
    from importlib import metadata

    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=REPO_ROOT)
    site, tops = json.loads(out.stdout)
    by_module = metadata.packages_distributions()
    todo = [d for t in tops for d in by_module.get(t.removesuffix(".py"), [])]
    seen: set[str] = set()
    while todo:
        name = todo.pop().lower().replace("_", "-")
        if name in seen or name == "qilbee-backup":
            continue
        seen.add(name)
        for req in metadata.requires(name) or []:
            if "extra ==" in req:
                continue
            todo.append(re.split(r"[ ;<>=!~\[(]", req, maxsplit=1)[0])
    names: set[str] = set()
    for dist in seen:
        for f in metadata.distribution(dist).files or []:
            top = f.parts[0]
            if not top.endswith((".dist-info", ".pth")) and top not in ("..", "bin", "__pycache__"):
                names.add(top)
    return [Path(site) / n for n in sorted(names) if (Path(site) / n).exists()]


def build_app(client: docker.DockerClient) -> str:
    with tempfile.TemporaryDirectory(prefix="qilbee-image-") as tmp:
        ctx = Path(tmp)
        site = ctx / "site"
        site.mkdir()
        for p in emulator_site_packages():
            if p.name == "qilbee_backup":
                continue
            (shutil.copytree if p.is_dir() else shutil.copy2)(p, site / p.name)
        shutil.copytree(REPO_ROOT / "qilbee_backup", site / "qilbee_backup",
                        ignore=shutil.ignore_patterns("__pycache__"))
        (ctx / "Dockerfile").write_text(
            f"FROM {BASE}\n"
            "COPY site /opt/qilbee/site\n"
            "ENV PYTHONPATH=/opt/qilbee/site PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1\n"
            "VOLUME /data\n"
            "EXPOSE 7474\n"
            'ENTRYPOINT ["python3", "-m", "qilbee_backup.emulator"]\n'
            'CMD ["--data-dir", "/data", "--host", "0.0.0.0", "--port", "7474"]\n'
        )
        digest = hashlib.sha256()
        for f in sorted(ctx.rglob("*")):
            if f.is_file():
                digest.update(str(f.relative_to(ctx)).encode())
                digest.update(f.read_bytes())
        tag = f"{APP}:{digest.hexdigest()[:12]}"
        try:
            client.images.get(tag)
        except docker.errors.ImageNotFound:
            client.images.build(path=str(ctx), tag=tag, labels=LABEL, rm=True, network_mode="none")
        client.images.get(tag).tag(APP, "test")
        return tag


def main() -> int:
    client = docker.from_env()
    ensure_base(client)
    tag = build_app(client)
    print(tag)
    return 0


if __name__ == "__main__":
    sys.exit(main())
