"""Every Python block of README.md runs: complete blocks as scripts (and as test files when
they define tests), fragments in the namespace of the block they belong to.

The markers and how ``app.run()`` is replaced are described in ``tests/readme.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.readme import README, Block, markers_in, python_blocks

ROOT = README.parent
TIMEOUT = 120
BLOCKS = python_blocks()


def test_every_block_is_complete_or_a_fragment_of_a_named_earlier_block() -> None:
    text = README.read_text(encoding="utf-8")
    assert BLOCKS, "README.md has no python block"
    parsed = [b for b in BLOCKS if b.name or b.fragment_of]
    assert len(markers_in(text)) == len(parsed), (
        "a marker that does not parse, or not above a fence"
    )
    names: list[str] = []
    for block in BLOCKS:
        if block.fragment_of is not None:
            assert block.fragment_of in names, f"{block.label}: no earlier block of that name"
        if block.name is not None:
            assert block.name.endswith(".py") and block.name not in names, block.label
            names.append(block.name)


def test_markers_are_read_from_the_line_above_the_fence() -> None:
    text = """
<!-- example: server.py -->
```python
app.run()
```

<!-- fragment of: server.py -->

```python
app.stop()
```

```python
print("complete")
```
"""
    server, fragment, plain = python_blocks(text)
    assert (server.name, server.fragment_of, server.source) == ("server.py", None, "app.run()\n")
    assert (fragment.name, fragment.fragment_of) == (None, "server.py")
    assert (plain.name, plain.fragment_of, plain.defines_tests) == (None, None, False)


def write_named_blocks(directory: Path) -> None:
    """Save every named block as its file, so blocks can import from each other."""
    for block in BLOCKS:
        if block.name is not None:
            (directory / block.name).write_text(block.source, encoding="utf-8")


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(cwd)])}
    env.pop("PYTEST_ADDOPTS", None)
    try:
        return subprocess.run(
            args, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{' '.join(args)} still running after {TIMEOUT} s:\n{exc.stderr!r}")


def block_file(block: Block, directory: Path) -> Path:
    path = directory / (block.name or f"readme_line_{block.line}.py")
    path.write_text(block.source, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "block", [b for b in BLOCKS if b.fragment_of is None], ids=lambda b: b.label
)
def test_complete_block_runs_as_a_script(block: Block, tmp_path: Path) -> None:
    write_named_blocks(tmp_path)
    script = block_file(block, tmp_path)
    done = run([sys.executable, "-m", "tests.readme", "script", str(script)], tmp_path)
    assert done.returncode == 0, f"{block.label}:\n{done.stdout}\n{done.stderr}"


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.defines_tests], ids=lambda b: b.label)
def test_block_with_tests_passes_as_a_users_test_file(block: Block, tmp_path: Path) -> None:
    write_named_blocks(tmp_path)
    test_file = block_file(block, tmp_path)
    if not test_file.name.startswith("test_"):
        test_file = test_file.rename(tmp_path / f"test_{test_file.name}")
    # A user's project: no asyncio_mode, none of this repository's settings.
    (tmp_path / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    done = run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test_file.name],
        tmp_path,
    )
    assert done.returncode == 0, f"{block.label}:\n{done.stdout}\n{done.stderr}"
    assert " passed" in done.stdout and " failed" not in done.stdout, done.stdout


@pytest.mark.parametrize(
    "block", [b for b in BLOCKS if b.fragment_of is not None], ids=lambda b: b.label
)
def test_fragment_runs_in_its_blocks_namespace(block: Block, tmp_path: Path) -> None:
    write_named_blocks(tmp_path)
    assert block.fragment_of is not None
    fragment = tmp_path / f"fragment_line_{block.line}.py"
    fragment.write_text(block.source, encoding="utf-8")
    parent = tmp_path / block.fragment_of
    done = run(
        [sys.executable, "-m", "tests.readme", "fragment", str(parent), str(fragment)], tmp_path
    )
    assert done.returncode == 0, f"{block.label}:\n{done.stdout}\n{done.stderr}"
