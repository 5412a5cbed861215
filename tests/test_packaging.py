"""The wheel ``pip install .`` builds carries the whole package.

CI installs in editable mode, which imports from the source tree and so hides a subpackage left out
of ``setup.cfg``'s ``packages`` (a plain install then fails on import); this builds the real wheel.
"""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_holds_every_module_and_properties_file(tmp_path):
    # setuptools builds wheels itself from 70.1; offline, so no build isolation and no dependencies
    pytest.importorskip("setuptools", minversion="70.1")
    # a copy of what the build reads, so a build/ folder left by an earlier build cannot fill the gaps
    src = tmp_path / "src"
    src.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for name in ("recbole_flexcode", "properties"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), str(src)],
        check=True, capture_output=True, cwd=tmp_path,
    )
    (wheel,) = tmp_path.glob("recbole_flexcode-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {p.relative_to(ROOT).as_posix() for p in (ROOT / "recbole_flexcode").rglob("*.py")}
    expected |= {"recbole_flexcode/properties/" + p.relative_to(ROOT / "properties").as_posix()
                 for p in (ROOT / "properties").rglob("*") if p.suffix in (".yaml", ".py")}
    assert len(expected) > 60
    assert sorted(expected - names) == []
