"""The interop harness itself: a missing Go toolchain is named, builds are reused."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.interop import harness


def test_a_missing_go_toolchain_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr(harness, "GO_INSTALL", "/nonexistent/go")
    with pytest.raises(harness.GoToolchainMissing, match=r"`go` is not on PATH"):
        harness.go_binary()


def test_a_build_is_reused_until_a_source_changes(tmp_path: Path) -> None:
    module = tmp_path / "mod"
    (module / "cmd" / "hello").mkdir(parents=True)
    (module / "go.mod").write_text("module hello\n\ngo 1.23\n")
    main = module / "cmd" / "hello" / "main.go"
    main.write_text('package main\n\nfunc main() { println("one") }\n')
    out = tmp_path / "bin" / "hello"

    harness.build_go_program(module, "cmd/hello", out)
    built = out.stat().st_mtime_ns
    harness.build_go_program(module, "cmd/hello", out)
    assert out.stat().st_mtime_ns == built  # same sources: not rebuilt

    main.write_text('package main\n\nfunc main() { println("two") }\n')
    harness.build_go_program(module, "cmd/hello", out)
    assert out.stat().st_mtime_ns != built

    main.write_text("package main\n\nfunc main() { broken }\n")
    with pytest.raises(RuntimeError, match=r"go build \./cmd/hello"):
        harness.build_go_program(module, "cmd/hello", out)
