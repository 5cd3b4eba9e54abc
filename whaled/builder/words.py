"""Variable substitution and word splitting as dockerd's Dockerfile lexer does them (pure).

``$NAME``, ``${NAME}``, ``${NAME:-word}``, ``${NAME-word}``, ``${NAME:+word}``,
``${NAME+word}`` and ``${NAME:?message}``; single quotes are literal, double quotes allow
substitution, the escape character (``\\`` or the ``# escape=`` one) protects the next
character; quotes are removed from the result."""

from __future__ import annotations

from collections.abc import Mapping

from whaled.errors import InvalidParameter

_NAME_START = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_"
_NAME_CHARS = _NAME_START + "0123456789"


def _unmatched(kind: str, text: str) -> InvalidParameter:
    return InvalidParameter(
        f"unexpected end of statement while looking for matching {kind}-quote in: {text}"
    )


class _Lexer:
    def __init__(self, text: str, env: Mapping[str, str], escape: str) -> None:
        self.text = text
        self.env = env
        self.escape = escape
        self.i = 0

    def peek(self) -> str:
        return self.text[self.i] if self.i < len(self.text) else ""

    def words(self, *, split: bool, stop: str = "") -> list[str]:
        """Words up to the end (or an unquoted ``stop`` character, left unread)."""
        words: list[str] = []
        cur: list[str] = []
        in_word = False
        while self.i < len(self.text):
            c = self.text[self.i]
            if stop and c == stop:
                break
            if split and c in " \t\r\n":
                if in_word:
                    words.append("".join(cur))
                    cur, in_word = [], False
                self.i += 1
                continue
            in_word = True
            if c == self.escape:
                self.i += 1
                if self.i < len(self.text):
                    cur.append(self.text[self.i])
                    self.i += 1
                else:
                    cur.append(c)
            elif c == "'":
                end = self.text.find("'", self.i + 1)
                if end < 0:
                    raise _unmatched("single", self.text)
                cur.append(self.text[self.i + 1 : end])
                self.i = end + 1
            elif c == '"':
                cur.append(self._double_quoted())
            elif c == "$":
                cur.append(self._variable())
            else:
                cur.append(c)
                self.i += 1
        if in_word or (not split and not words):
            words.append("".join(cur))
        return words

    def _double_quoted(self) -> str:
        self.i += 1  # the opening quote
        out: list[str] = []
        while True:
            if self.i >= len(self.text):
                raise _unmatched("double", self.text)
            c = self.text[self.i]
            if c == '"':
                self.i += 1
                return "".join(out)
            if (
                c == self.escape
                and self.i + 1 < len(self.text)
                and self.text[self.i + 1] in ('"', "$", self.escape)
            ):
                out.append(self.text[self.i + 1])
                self.i += 2
            elif c == "$":
                out.append(self._variable())
            else:
                out.append(c)
                self.i += 1

    def _name(self) -> str:
        start = self.i
        while self.i < len(self.text) and self.text[self.i] in _NAME_CHARS:
            self.i += 1
        return self.text[start : self.i]

    def _variable(self) -> str:
        self.i += 1  # "$"
        c = self.peek()
        if c == "{":
            self.i += 1
            name = self._name()
            if not name:
                raise InvalidParameter(f"bad substitution: {self.text}")
            op = ""
            if self.peek() == ":" and self.text[self.i + 1 : self.i + 2] in ("-", "+", "?"):
                op = self.text[self.i : self.i + 2]
                self.i += 2
            elif self.peek() in ("-", "+", "?"):
                op = self.peek()
                self.i += 1
            word = ""
            if op:
                word = "".join(self.words(split=False, stop="}"))
            if self.peek() != "}":
                raise InvalidParameter(f"missing '}}' in substitution: {self.text}")
            self.i += 1
            value = self.env.get(name)
            if op == ":-":
                return value if value else word
            if op == "-":
                return value if value is not None else word
            if op == ":+":
                return word if value else ""
            if op == "+":
                return word if value is not None else ""
            if op in (":?", "?"):
                if value is None or (op == ":?" and not value):
                    raise InvalidParameter(f"{name}: {word or 'is not allowed to be unset'}")
            return value or ""
        if c and c in _NAME_START:
            return self.env.get(self._name(), "")
        return "$"


def process_word(text: str, env: Mapping[str, str], escape: str = "\\") -> str:
    """One word: substituted, quotes and escapes removed, whitespace kept."""
    return "".join(_Lexer(text, env, escape).words(split=False))


def process_words(text: str, env: Mapping[str, str], escape: str = "\\") -> list[str]:
    """Words split on unquoted whitespace, each substituted (a value's own spaces do not
    split it)."""
    return _Lexer(text, env, escape).words(split=True)
