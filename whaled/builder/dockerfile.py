"""The Dockerfile as stages of instructions (pure). Lines, continuations and comments inside
them come from dockerfile-parse; whaled adds the parser directives (``# escape=``,
``# syntax=``), dockerd's flags (``--from``, ``--chown``, ``--platform``, HEALTHCHECK's), the
JSON form, stages (``FROM ... AS name``) and the refusals of BuildKit-only syntax."""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass, field

from dockerfile_parse import DockerfileParser

from whaled.errors import InvalidParameter

INSTRUCTIONS = (
    "ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK", "LABEL",
    "MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR",
)  # fmt: skip
#: the flags each instruction takes (dockerd's legacy builder), and BuildKit-only ones
FLAGS: dict[str, tuple[str, ...]] = {
    "FROM": ("platform",),
    "COPY": ("from", "chown"),
    "ADD": ("chown",),
    "HEALTHCHECK": ("interval", "timeout", "start-period", "start-interval", "retries"),
}
BUILDKIT_FLAGS: dict[str, tuple[str, ...]] = {
    "RUN": ("mount", "network", "security"),
    "COPY": ("chmod", "link", "parents", "exclude"),
    "ADD": ("chmod", "link", "checksum", "keep-git-dir", "exclude"),
}
_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
_FLAG = re.compile(r"^--([a-zA-Z][a-zA-Z0-9-]*)(?:=(.*))?$")


@dataclass(frozen=True, slots=True, kw_only=True)
class Instruction:
    cmd: str  # upper case
    original: str  # as written, continuations joined (the "Step N/M : ..." text)
    rest: str  # the arguments after the flags
    flags: dict[str, str] = field(default_factory=dict)
    json: list[str] | None = None  # the JSON (exec) form's words
    line: int = 0


@dataclass(slots=True, kw_only=True)
class Stage:
    index: int
    name: str  # lower case, "" when unnamed
    base: str  # the FROM image expression (substituted later, with the meta ARGs)
    platform: str
    from_instruction: Instruction
    instructions: list[Instruction] = field(default_factory=list)


@dataclass(slots=True, kw_only=True)
class Dockerfile:
    escape: str
    meta_args: list[Instruction]
    stages: list[Stage]
    warnings: list[str]

    @property
    def steps(self) -> int:
        """How many "Step N/M" there are (every instruction, FROMs and meta ARGs too)."""
        return len(self.meta_args) + sum(1 + len(s.instructions) for s in self.stages)

    def stage(self, ref: str) -> Stage | None:
        """A stage by name or index (``--from``, ``--target``)."""
        for s in self.stages:
            if s.name and s.name == ref.lower():
                return s
        if ref.isdigit() and int(ref) < len(self.stages):
            return self.stages[int(ref)]
        return None


def _directives(text: str) -> tuple[str, list[str]]:
    escape = "\\"
    warnings: list[str] = []
    for line in text.splitlines():
        m = _DIRECTIVE.match(line.strip())
        if not m:
            break
        key, value = m.group(1).lower(), m.group(2)
        if key == "escape":
            if value not in ("\\", "`"):
                raise InvalidParameter(f"invalid ESCAPE '{value}'. Must be ` or \\")
            escape = value
        elif key == "syntax":
            warnings.append(
                f"the syntax directive ({value}) is for BuildKit: the legacy builder ignores it"
            )
    return escape, warnings


def _split_flags(cmd: str, value: str, line: int) -> tuple[dict[str, str], str]:
    flags: dict[str, str] = {}
    rest = value.lstrip()
    while rest.startswith("--"):
        word, _, after = rest.partition(" ")
        m = _FLAG.match(word)
        if not m:
            break
        name, flag_value = m.group(1), m.group(2)
        if name in BUILDKIT_FLAGS.get(cmd, ()):
            raise InvalidParameter(
                f"Dockerfile line {line}: {cmd} --{name} needs BuildKit, which whaled's "
                "builder (dockerd's legacy builder) does not offer"
            )
        if name not in FLAGS.get(cmd, ()):
            raise InvalidParameter(f"Dockerfile parse error line {line}: Unknown flag: {name}")
        flags[name] = flag_value if flag_value is not None else "true"
        rest = after.lstrip()
    return flags, rest


def _json_form(rest: str) -> list[str] | None:
    if not rest.startswith("["):
        return None
    try:
        doc = json.loads(rest)
    except ValueError:
        return None
    if isinstance(doc, list) and all(isinstance(w, str) for w in doc):
        return doc
    return None


def parse(text: str) -> Dockerfile:
    escape, warnings = _directives(text)
    source = text if escape == "\\" else text.replace("`\n", "\\\n")
    parser = DockerfileParser(fileobj=io.BytesIO(source.encode()))
    meta_args: list[Instruction] = []
    stages: list[Stage] = []
    for item in parser.structure:
        cmd = str(item["instruction"]).upper()
        if cmd == "COMMENT":
            continue
        line = int(item["startline"]) + 1
        value = str(item["value"])
        if cmd not in INSTRUCTIONS:
            raise InvalidParameter(
                f"Dockerfile parse error line {line}: unknown instruction: {item['instruction']}"
            )
        if "<<" in value and cmd in ("RUN", "COPY", "ADD") and re.search(r"<<-?[\"']?\w", value):
            raise InvalidParameter(
                f"Dockerfile line {line}: heredocs need BuildKit, which whaled's builder "
                "(dockerd's legacy builder) does not offer"
            )
        flags, rest = _split_flags(cmd, value, line)
        inst = Instruction(
            cmd=cmd,
            original=f"{item['instruction']} {value}".strip(),
            rest=rest,
            flags=flags,
            json=_json_form(rest),
            line=line,
        )
        if cmd == "FROM":
            words = rest.split()
            name = ""
            if len(words) == 3 and words[1].lower() == "as":
                name = words[2].lower()
                if not re.fullmatch(r"[a-z][a-z0-9-_.]*", name):
                    raise InvalidParameter(f"invalid name for build stage: {words[2]!r}")
            elif len(words) != 1:
                raise InvalidParameter(
                    f"Dockerfile parse error line {line}: FROM requires either one or three "
                    "arguments"
                )
            stages.append(
                Stage(
                    index=len(stages),
                    name=name,
                    base=words[0],
                    platform=flags.get("platform", ""),
                    from_instruction=inst,
                )
            )
        elif not stages:
            if cmd != "ARG":
                raise InvalidParameter(f"Dockerfile parse error line {line}: {cmd} before any FROM")
            meta_args.append(inst)
        else:
            stages[-1].instructions.append(inst)
    if not stages:
        raise InvalidParameter("the Dockerfile (Dockerfile) cannot be empty")
    return Dockerfile(escape=escape, meta_args=meta_args, stages=stages, warnings=warnings)
