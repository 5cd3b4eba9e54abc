"""The builder's pure rules: substitution, the Dockerfile's stages and flags,
.dockerignore and what config instructions do."""

from __future__ import annotations

import pytest

from whaled.builder import dockerignore, steps
from whaled.builder.dockerfile import parse
from whaled.builder.words import process_word, process_words
from whaled.errors import InvalidParameter

ENV = {"A": "1", "B": "two words", "E": ""}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$A-${A}", "1-1"),
        ("${X:-def}", "def"),
        ("${E:-def}", "def"),
        ("${E-def}", ""),
        ("${A:+set}", "set"),
        ("${X:+set}", ""),
        ("${X+set}", ""),
        ("${E+set}", "set"),
        ("'$A'", "$A"),
        ('"$A $B"', "1 two words"),
        ("\\$A", "$A"),
        ("${X:-${A}}", "1"),
        ("a$", "a$"),
    ],
)
def test_substitution(text: str, expected: str) -> None:
    assert process_word(text, ENV) == expected


def test_words_split_on_unquoted_space_only() -> None:
    assert process_words('a "b c" $B \'d e\'', ENV) == ["a", "b c", "two words", "d e"]
    assert process_words("", ENV) == []
    with pytest.raises(InvalidParameter, match="double-quote"):
        process_words('"open', ENV)
    with pytest.raises(InvalidParameter, match="is not allowed to be unset"):
        process_word("${X:?}", ENV)


def test_stages_flags_and_forms() -> None:
    df = parse(
        "# escape=\\\n# syntax=docker/dockerfile:1\nARG V=1\nFROM --platform=linux/amd64 "
        "busybox:$V AS Build\nRUN echo a \\\n  b\nCOPY --from=build --chown=1:2 a b /c/\n"
        'CMD ["x", "y"]\nFROM build\nHEALTHCHECK --interval=5s CMD true\n'
    )
    assert [a.rest for a in df.meta_args] == ["V=1"]
    first, second = df.stages
    assert (first.name, first.base, first.platform) == ("build", "busybox:$V", "linux/amd64")
    run, copy, cmd = first.instructions
    assert run.rest == "echo a   b"
    assert copy.flags == {"from": "build", "chown": "1:2"} and copy.rest == "a b /c/"
    assert cmd.json == ["x", "y"]
    assert df.stage("build") is first and df.stage("1") is second and df.stage("x") is None
    assert df.steps == 7 and df.warnings  # the syntax directive is ignored, with a warning


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("FROM a\nFROB x\n", "unknown instruction: FROB"),
        ("RUN x\n", "RUN before any FROM"),
        ("FROM a\nRUN --mount=type=cache,target=/x true\n", "needs BuildKit"),
        ("FROM a\nCOPY --chmod=644 a /\n", "needs BuildKit"),
        ("FROM a\nCOPY --bogus=1 a /\n", "Unknown flag: bogus"),
        ("FROM a\nRUN <<EOF\necho\nEOF\n", "heredocs need BuildKit"),
        ("FROM a b\n", "FROM requires either one or three arguments"),
        ("# escape=x\nFROM a\n", "invalid ESCAPE"),
        ("", "cannot be empty"),
    ],
)
def test_refused_dockerfiles(text: str, message: str) -> None:
    with pytest.raises(InvalidParameter, match=message):
        parse(text)


def test_dockerignore() -> None:
    patterns = dockerignore.parse(
        "# c\n*.log\n!keep.log\nbuild/\n**/tmp\ndocs/*.md\n!docs/README.md\n"
    )
    excluded = {p for p in ["a.log", "keep.log", "build/x/y", "src/tmp/z", "tmp", "docs/a.md",
                            "docs/README.md", "docs/sub/a.md", "src/a.py"]
                if dockerignore.excluded(p, patterns)}  # fmt: skip
    assert excluded == {"a.log", "build/x/y", "src/tmp/z", "tmp", "docs/a.md"}


@pytest.mark.timeout(20)
def test_dockerignore_patterns_cannot_make_matching_hang() -> None:
    # Each took seconds to hours on a backtracking engine (a 40-character name and the
    # first pattern: 1.4 s; every character more doubled it or so); RE2, like the Go
    # regexp dockerd uses, matches in time linear in the path.
    patterns = dockerignore.parse("*a*a*a*a*a*a*a*a*a*a*a*a*b\n**a**a**a**a**a**b\n")
    assert not dockerignore.excluded("a" * 4000, patterns)
    assert not dockerignore.excluded("a/" * 2000 + "a", patterns)
    assert dockerignore.excluded("a" * 4000 + "b", patterns)


def test_dockerignore_judges_file_names_that_are_not_utf8() -> None:
    patterns = dockerignore.parse("*.log\n")
    assert dockerignore.excluded("b\udcff.log", patterns)  # os.fsdecode(b"b\xff.log")
    assert not dockerignore.excluded("b\udcff.txt", patterns)


def test_a_bad_dockerignore_pattern_is_the_clients_error() -> None:
    with pytest.raises(InvalidParameter, match=r"invalid \.dockerignore pattern '\[z-a\]'"):
        dockerignore.parse("ok\n[z-a]\n")
    # Go's filepath.Match refuses an unclosed class and a trailing backslash; so did
    # dockerd, while whaled took the "[" literally
    for bad in ("a[bc", "[", "ab\\"):
        with pytest.raises(InvalidParameter, match="syntax error in pattern"):
            dockerignore.parse(f"ok\n{bad}\n")
    assert dockerignore.excluded("a]b", dockerignore.parse("a]b\n"))  # a lone ] is literal


def _inst(line: str) -> steps.Instruction:
    return parse(f"FROM x\n{line}\n").stages[0].instructions[0]


def test_config_instructions() -> None:
    config: dict[str, object] = {"Cmd": ["sh"], "Env": ["PATH=/bin"]}
    config, by = steps.apply(_inst('ENV A=1 B="x y"'), config, {}, "\\", cmd_set=False)
    assert config["Env"] == ["PATH=/bin", "A=1", "B=x y"] and by.endswith("ENV A=1 B=x y")
    config, _ = steps.apply(_inst("WORKDIR /a"), config, {}, "\\", cmd_set=False)
    config, by = steps.apply(_inst("WORKDIR b/../c"), config, {}, "\\", cmd_set=False)
    assert config["WorkingDir"] == "/a/c" and by.endswith("WORKDIR /a/c")
    config, by = steps.apply(_inst('ENTRYPOINT ["run"]'), config, {}, "\\", cmd_set=False)
    assert config["Entrypoint"] == ["run"] and config["Cmd"] is None  # inherited CMD cleared
    assert by.endswith('ENTRYPOINT ["run"]')
    config, _ = steps.apply(_inst("CMD echo $A"), config, {}, "\\", cmd_set=False)
    assert config["Cmd"] == ["/bin/sh", "-c", "echo $A"]
    config, _ = steps.apply(_inst("EXPOSE 80 53/udp 8000-8001"), config, {}, "\\", cmd_set=True)
    assert set(config["ExposedPorts"]) == {"80/tcp", "53/udp", "8000/tcp", "8001/tcp"}  # type: ignore[arg-type]
    config, _ = steps.apply(
        _inst("HEALTHCHECK --interval=1m30s --retries=3 CMD curl -f x"), config, {}, "\\",
        cmd_set=True,
    )  # fmt: skip
    assert config["Healthcheck"] == {
        "Test": ["CMD-SHELL", "curl -f x"], "Interval": 90 * 10**9, "Retries": 3
    }  # fmt: skip
    config, _ = steps.apply(_inst("HEALTHCHECK NONE"), config, {}, "\\", cmd_set=True)
    assert config["Healthcheck"] == {"Test": ["NONE"]}
    with pytest.raises(InvalidParameter, match="JSON form"):
        steps.apply(_inst("SHELL bash -c"), config, {}, "\\", cmd_set=True)
    with pytest.raises(InvalidParameter, match="isn't allowed as an ONBUILD trigger"):
        steps.apply(_inst("ONBUILD FROM x"), config, {}, "\\", cmd_set=True)
