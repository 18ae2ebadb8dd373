"""read_regular_file: the one way WFE reads a file a user names."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest

from wfe_core._files import UnreadableFileError, read_regular_file

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path


def test_reads_a_regular_file_up_to_the_limit(tmp_path: Path) -> None:
    file = tmp_path / "f"
    file.write_bytes(b"x" * 100)
    assert read_regular_file(file, limit=100) == b"x" * 100
    with pytest.raises(UnreadableFileError, match=r"^larger than the 99 bytes limit$"):
        read_regular_file(file, limit=99)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda p: os.mkfifo(p), "not a regular file (a FIFO)"),
        (lambda p: p.mkdir(), "not a regular file (a directory)"),
        (lambda p: p.symlink_to("/dev/zero"), "not a regular file (a character device)"),
        (lambda p: None, "No such file or directory"),
    ],
)
def test_refuses_anything_else_without_blocking(
    tmp_path: Path, make: Callable[[Path], object], reason: str
) -> None:
    path = tmp_path / "thing"
    make(path)
    with pytest.raises(UnreadableFileError) as caught:
        read_regular_file(path)
    assert str(caught.value) == reason
    assert isinstance(caught.value, OSError)


def test_a_link_is_refused_when_links_are_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_bytes(b"secret")
    link = tmp_path / "link"
    link.symlink_to(target)
    assert read_regular_file(link) == b"secret"
    with pytest.raises(UnreadableFileError, match=r"^a symbolic link, which is not followed$"):
        read_regular_file(link, follow_links=False)
