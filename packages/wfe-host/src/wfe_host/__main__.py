"""``python -m wfe_host``: the ``wfe`` command line."""

from __future__ import annotations

from wfe_host.cli import main

if __name__ == "__main__":
    main(prog_name="wfe")
