from __future__ import annotations

import pytest

from whaled.builder.gitsource import GitSource, is_git_url, parse_git_url
from whaled.errors import InvalidParameter


@pytest.mark.parametrize(
    ("url", "git"),
    [
        ("git://host/repo", True),
        ("git@host:org/repo", True),
        ("github.com/org/repo", True),
        ("https://host/org/repo.git", True),
        ("https://host/org/repo.git#main:sub", True),
        ("http://host/ctx.tar.gz", False),
        ("https://host/repo.git.tar", False),
        ("ftp://host/repo.git", False),
    ],
)
def test_which_urls_are_git_repositories(url: str, git: bool) -> None:
    assert is_git_url(url) is git


def test_the_fragment_names_a_ref_and_a_directory() -> None:
    assert parse_git_url("https://h/r.git") == GitSource(
        remote="https://h/r.git", ref="", subdir=""
    )
    assert parse_git_url("https://h/r.git#v1") == GitSource(
        remote="https://h/r.git", ref="v1", subdir=""
    )
    assert parse_git_url("https://h/r.git#:docs/") == GitSource(
        remote="https://h/r.git", ref="", subdir="docs"
    )
    assert parse_git_url("github.com/o/r#dev:a/./b") == GitSource(
        remote="https://github.com/o/r", ref="dev", subdir="a/b"
    )
    assert parse_git_url("git://h/r#main:.").subdir == ""


@pytest.mark.parametrize("url", ["https://h/r.git#--upload-pack=x", "https://h/r.git#main:../up"])
def test_options_and_escapes_are_refused(url: str) -> None:
    with pytest.raises(InvalidParameter):
        parse_git_url(url)
