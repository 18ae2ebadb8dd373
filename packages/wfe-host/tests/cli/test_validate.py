"""``wfe validate --format github``: annotations GitHub Actions can parse whatever they hold."""

from __future__ import annotations

from wfe_host.cli.validate import Finding, github_annotation


def test_annotations_escape_what_would_end_a_field_or_the_command() -> None:
    finding = Finding("dir:x/a,b.yaml", "100% wrong\r\nsecond line", line=3, column=9)
    assert github_annotation(finding) == (
        "::error file=dir%3Ax/a%2Cb.yaml,line=3,col=9::100%25 wrong%0D%0Asecond line"
    )


def test_an_annotation_without_a_position_names_the_file_only() -> None:
    assert github_annotation(Finding("x.yaml", "no such file: x.yaml")) == (
        "::error file=x.yaml::no such file: x.yaml"
    )
