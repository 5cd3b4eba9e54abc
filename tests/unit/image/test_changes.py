from __future__ import annotations

import pytest

from whaled.errors import InvalidParameter
from whaled.image.changes import apply_changes, split_lines, words


def test_cmd_entrypoint_forms() -> None:
    cfg = apply_changes(None, ['CMD ["sh", "-c", "echo hi"]'])
    assert cfg["Cmd"] == ["sh", "-c", "echo hi"]
    cfg = apply_changes(None, ["CMD echo hi"])
    assert cfg["Cmd"] == ["/bin/sh", "-c", "echo hi"]
    cfg = apply_changes({"Cmd": ["old"]}, ['ENTRYPOINT ["/bin/app"]'])
    assert cfg["Entrypoint"] == ["/bin/app"] and cfg["Cmd"] is None
    cfg = apply_changes(None, ['CMD ["x"]', 'ENTRYPOINT ["/bin/app"]'])
    assert cfg["Cmd"] == ["x"]


def test_env_forms_and_expansion() -> None:
    cfg = apply_changes(None, ['ENV A=1 B="two words" C=${A}x', "ENV D $A-legacy form"])
    # Like a Dockerfile, one ENV line expands with the environment from *before* it.
    assert cfg["Env"] == ["A=1", "B=two words", "C=x", "D=1-legacy form"]
    cfg = apply_changes({"Env": ["PATH=/bin"]}, ["ENV PATH=/usr/bin:$PATH"])
    assert cfg["Env"] == ["PATH=/usr/bin:/bin"]
    cfg = apply_changes(None, ["ENV X='$NOPE' Y=${NOPE:-dflt} Z=${A:+alt}"])
    assert cfg["Env"] == ["X=$NOPE", "Y=dflt", "Z="]


def test_label_expose_volume_user_workdir_stopsignal() -> None:
    cfg = apply_changes(
        None,
        [
            'LABEL a=b "c d"=e',
            "EXPOSE 80 53/udp 8000-8002",
            'VOLUME ["/data", "/logs"]',
            "VOLUME /more",
            "USER nobody",
            "WORKDIR /app",
            "WORKDIR sub",
            "STOPSIGNAL SIGKILL",
        ],
    )
    assert cfg["Labels"] == {"a": "b", "c d": "e"}
    assert set(cfg["ExposedPorts"]) == {"80/tcp", "53/udp", "8000/tcp", "8001/tcp", "8002/tcp"}
    assert cfg["Volumes"] == {"/data": {}, "/logs": {}, "/more": {}}
    assert cfg["User"] == "nobody"
    assert cfg["WorkingDir"] == "/app/sub"
    assert cfg["StopSignal"] == "SIGKILL"


def test_healthcheck_and_onbuild() -> None:
    cfg = apply_changes(
        None, ["HEALTHCHECK --interval=5s --retries=3 CMD true", "ONBUILD RUN echo hi"]
    )
    assert cfg["Healthcheck"] == {
        "Interval": 5_000_000_000,
        "Retries": 3,
        "Test": ["CMD-SHELL", "true"],
    }
    assert cfg["OnBuild"] == ["RUN echo hi"]
    assert apply_changes(None, ["HEALTHCHECK NONE"])["Healthcheck"] == {"Test": ["NONE"]}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("RUN echo hi", "run is not a valid change command"),
        ("ADD . /", "add is not a valid change command"),
        ("EXPOSE 99999", "invalid containerPort: 99999"),
        ("EXPOSE 80/foo", "invalid proto: foo"),
        ("STOPSIGNAL NOPE", "Invalid signal: NOPE"),
        ("ENV", "ENV requires at least one argument"),
        ("ENV =x", "ENV names can not be blank"),
        ('VOLUME [""]', "VOLUME specified can not be an empty string"),
    ],
)
def test_invalid_changes(change: str, message: str) -> None:
    with pytest.raises(InvalidParameter) as e:
        apply_changes(None, [change])
    assert str(e.value) == message


def test_lines_and_words() -> None:
    assert split_lines(["# comment\nCMD a \\\n b", "", "ENV A=1"]) == ["CMD a b", "ENV A=1"]
    assert words("a 'b c' \"d $X\" e\\ f", {"X": "1"}) == ["a", "b c", "d 1", "e f"]


def test_input_config_not_mutated() -> None:
    base = {"Env": ["A=1"]}
    apply_changes(base, ["ENV B=2"])
    assert base == {"Env": ["A=1"]}
