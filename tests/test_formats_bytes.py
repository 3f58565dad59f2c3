"""`formats.write_bytes_atomic`: binary outputs (a report's PNGs) are written like text ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from planner.errors import InputError
from planner.formats import write_bytes_atomic, write_text_atomic


def test_bytes_are_written_whole_and_replace_the_old_file(tmp_path: Path) -> None:
    f = tmp_path / "x.png"
    f.write_bytes(b"old")
    write_bytes_atomic(f, b"\x89PNG\x00\xff")
    assert f.read_bytes() == b"\x89PNG\x00\xff"
    assert [p.name for p in tmp_path.iterdir()] == ["x.png"]


def test_a_failed_write_leaves_neither_a_file_nor_a_temporary(tmp_path: Path) -> None:
    f = tmp_path / "x.png"
    with pytest.raises(TypeError):
        write_bytes_atomic(f, "not bytes")  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_a_missing_directory_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        write_bytes_atomic(tmp_path / "no" / "x.png", b"")


def test_text_is_still_utf8(tmp_path: Path) -> None:
    f = tmp_path / "t.txt"
    write_text_atomic(f, "héllo\n")
    assert f.read_bytes() == "héllo\n".encode()
