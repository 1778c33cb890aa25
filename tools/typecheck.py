"""Type-check the source as it installs: `client/` as `openrouter_video`, `receiver/` as
`openrouter_video.receiver` (`make lint` runs this).

mypy cannot follow the import hook of an editable install, and the folders do not carry the
import names, so this lays a tree of symlinks named as installed under build/typecheck, runs mypy
on it (settings in pyproject.toml) and reports every path as the repository's own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TREE = ROOT / "build" / "typecheck"
LAYOUT = {"client": Path("openrouter_video"), "receiver": Path("openrouter_video") / "receiver"}


def lay_tree() -> None:
    shutil.rmtree(TREE, ignore_errors=True)
    for folder, package in LAYOUT.items():
        for source in (ROOT / folder).rglob("*"):
            if source.suffix in (".py", ".pyi") or source.name == "py.typed":
                link = TREE / package / source.relative_to(ROOT / folder)
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(source)


def main() -> int:
    lay_tree()
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"), "openrouter_video"],
        cwd=TREE,
        capture_output=True,
        text=True,
    )
    out = result.stdout + result.stderr
    # Longest prefix first: the receiver's tree sits inside the client's.
    for folder, package in sorted(LAYOUT.items(), key=lambda item: -len(item[1].parts)):
        out = out.replace(f"{package}{os.sep}", f"{folder}{os.sep}")
    sys.stdout.write(out)
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
