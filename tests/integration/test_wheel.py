"""The engine installs as a package: build the wheel, install it into a fresh virtual environment,
and run the README's Python example and the ``mrepe`` command there (not from the checkout).

The fresh environment gets its third-party dependencies from the test's own environment through
a ``.pth`` file (downloading torch and transformers again would take minutes and the network);
``mrepe_core`` itself comes from the wheel only, which the test checks.
"""

from __future__ import annotations

import re
import shutil
import site
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def readme_example() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Python\n") :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    work = tmp_path_factory.mktemp("wheel")
    # Build from a copy of the tracked files: setuptools writes build/ and *.egg-info into the source tree.
    source = work / "source"
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for name in files:
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(work), str(source)],
        check=True,
        timeout=600,
    )
    wheel = next(work.glob("mrepe_explorer-*.whl"))
    env_dir = work / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    subprocess.run(
        [str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True, timeout=600
    )
    # Third-party packages from this environment; the checkout is not on the path.
    purelib = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(purelib) / "deps-from-test-env.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return py, work


def test_the_wheel_carries_the_package_data(installed):
    py, work = installed
    out = subprocess.run(
        [
            str(py),
            "-c",
            "import mrepe_core, mrepe_core.paths as p; print(mrepe_core.__file__); "
            "print(p.ASSETS); print(p.PRESETS); print(len(list(p.PRESETS.glob('*.yaml'))))",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=work,
        timeout=120,
    ).stdout.split("\n")
    assert "venv" in out[0] and str(ROOT) not in out[0]
    assert out[1].endswith("mrepe_core/assets") and out[2].endswith("mrepe_core/presets")
    assert int(out[3]) >= 2


def test_readme_python_example_runs_from_the_wheel(installed):
    py, work = installed
    script = work / "example.py"
    script.write_text("import mrepe_core\nassert 'venv' in mrepe_core.__file__\n" + readme_example())
    done = subprocess.run([str(py), str(script)], capture_output=True, text=True, cwd=work, timeout=1500)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "B" in done.stdout or "behavior_expectation" in done.stdout
    assert (work / "refusal.gguf").is_file()


def test_console_script(installed):
    py, work = installed
    mrepe = py.parent / "mrepe"
    out = subprocess.run([str(mrepe), "--help"], capture_output=True, text=True, cwd=work, timeout=120)
    assert out.returncode == 0 and "sweep" in out.stdout and "export" in out.stdout
