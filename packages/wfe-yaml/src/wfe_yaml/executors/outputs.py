"""The output channel of shell steps: files in a private directory that only the step's
script writes, read after it ended.

Printed text cannot reach them, so echoing an input, an event payload or a downloaded file
never sets an output (unlike ``##wfe[output k=v]`` on stdout, which any printed data can
forge and which a step gets only with ``config.stdout_outputs: true``).

- ``$WFE_OUTPUT``: a file of ``key=value`` lines and ``key<<DELIMITER`` ... ``DELIMITER``
  blocks (GitHub's ``$GITHUB_OUTPUT`` format).
- ``$WFE_OUTPUTS``: a directory; the file ``$WFE_OUTPUTS/<key>`` sets output ``key`` to its
  content (one final newline dropped). A value from data cannot add another key this way,
  whatever newlines or delimiters it holds.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from wfe_core.spi import UnreadableFileError, read_regular_file
from wfe_yaml.errors import StepFailedError

if TYPE_CHECKING:
    from collections.abc import Iterator

#: What an output name may look like.
OUTPUT_KEY = re.compile(r"^[A-Za-z_][\w.-]*$")
#: The largest value one output may have (bytes); a larger one fails the step.
MAX_OUTPUT_BYTES = 4 * 1024 * 1024
#: The largest ``$WFE_OUTPUT`` file (bytes); a larger one fails the step.
MAX_OUTPUT_FILE_BYTES = 16 * 1024 * 1024


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):g} MiB"


@attrs.frozen
class StepFiles:
    """The private directory (0700) of one shell step run and the paths it hands the script."""

    folder: Path

    @property
    def output_file(self) -> Path:
        """``$WFE_OUTPUT``."""
        return self.folder / "output"

    @property
    def output_dir(self) -> Path:
        """``$WFE_OUTPUTS``."""
        return self.folder / "outputs"

    @property
    def data_file(self) -> Path:
        """``$WFE_DATA_FILE``: the workflow data as JSON."""
        return self.folder / "data.json"

    def environment(self) -> dict[str, str]:
        """The variables naming these paths."""
        return {
            "WFE_OUTPUT": str(self.output_file),
            "WFE_OUTPUTS": str(self.output_dir),
            "WFE_DATA_FILE": str(self.data_file),
        }

    def write_data(self, data: Any) -> None:
        """Write ``$WFE_DATA_FILE`` (0600)."""
        fd = os.open(self.data_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, default=str)

    def read_outputs(self) -> dict[str, str]:
        """The outputs the script wrote; :class:`StepFailedError` naming what is wrong with
        them (nothing is dropped silently)."""
        outputs = parse_output_file(_read_regular(self.output_file, MAX_OUTPUT_FILE_BYTES))
        for name in _directory_entries(self.output_dir):
            if name in outputs:
                raise StepFailedError(
                    f"output {name!r} is set twice: in $WFE_OUTPUT and as $WFE_OUTPUTS/{name}"
                )
            raw = _read_regular(self.output_dir / name, MAX_OUTPUT_BYTES, f"$WFE_OUTPUTS/{name}")
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise StepFailedError(f"$WFE_OUTPUTS/{name} is not UTF-8 text: {exc}") from exc
            outputs[name] = text.removesuffix("\n")
        return outputs


def make_step_files() -> StepFiles:
    """A fresh private directory with an empty ``$WFE_OUTPUT`` (0600) and ``$WFE_OUTPUTS``."""
    folder = Path(tempfile.mkdtemp(prefix="wfe-step-"))
    files = StepFiles(folder)
    os.close(os.open(files.output_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    files.output_dir.mkdir(mode=0o700)
    return files


def _directory_entries(folder: Path) -> Iterator[str]:
    try:
        names = sorted(os.listdir(folder))
    except FileNotFoundError:
        return
    except NotADirectoryError as exc:
        raise StepFailedError("$WFE_OUTPUTS is no longer a directory") from exc
    for name in names:
        if not OUTPUT_KEY.match(name):
            raise StepFailedError(
                f"$WFE_OUTPUTS/{name}: {name!r} is not an output name "
                "(letters, digits, _ . -; not starting with a digit, . or -)"
            )
        yield name


def _read_regular(path: Path, limit: int, label: str = "$WFE_OUTPUT") -> bytes:
    """At most ``limit`` bytes of the regular file ``path`` (nothing when it is missing); a
    step failure when it is larger or not a regular file. Never follows a symlink nor
    blocks on a FIFO the script may have put there."""
    if not os.path.lexists(path):
        return b""
    try:
        return read_regular_file(path, limit, follow_links=False)
    except UnreadableFileError as exc:
        raise StepFailedError(f"{label}: {exc}") from exc


def parse_output_file(raw: bytes) -> dict[str, str]:
    """The outputs in a ``$WFE_OUTPUT`` file: ``key=value`` lines (the value is the rest of
    the line) and ``key<<DELIMITER`` blocks (the lines up to one that is exactly
    ``DELIMITER``, joined by newlines). Empty lines are ignored; a later key wins."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise StepFailedError(f"$WFE_OUTPUT is not UTF-8 text: {exc}") from exc
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    outputs: dict[str, str] = {}
    index = 0
    while index < len(lines):
        line = lines[index]
        number = index + 1
        index += 1
        if not line:
            continue
        equals, heredoc = line.find("="), line.find("<<")
        if heredoc != -1 and (equals == -1 or heredoc < equals):
            key, delimiter = line[:heredoc], line[heredoc + 2 :]
            if not delimiter:
                raise StepFailedError(f"$WFE_OUTPUT line {number}: `{key}<<` needs a delimiter")
            try:
                end = lines.index(delimiter, index)
            except ValueError:
                raise StepFailedError(
                    f"$WFE_OUTPUT line {number}: `{key}<<{delimiter}` is never closed by a "
                    f"line `{delimiter}`"
                ) from None
            value = "\n".join(lines[index:end])
            index = end + 1
        elif equals != -1:
            key, value = line[:equals], line[equals + 1 :]
        else:
            raise StepFailedError(
                f"$WFE_OUTPUT line {number}: expected `key=value` or `key<<DELIMITER`, "
                f"got {line[:80]!r}"
            )
        if not OUTPUT_KEY.match(key):
            raise StepFailedError(
                f"$WFE_OUTPUT line {number}: {key[:80]!r} is not an output name "
                "(letters, digits, _ . -; not starting with a digit, . or -)"
            )
        if len(value.encode()) > MAX_OUTPUT_BYTES:
            raise StepFailedError(
                f"$WFE_OUTPUT line {number}: output {key!r} is over the limit of "
                f"{_mib(MAX_OUTPUT_BYTES)}"
            )
        outputs[key] = value
    return outputs
