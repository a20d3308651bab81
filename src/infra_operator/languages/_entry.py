"""Naming a program after what it declares.

Some toolchains want the file, or the command that runs it, to carry a name the
program itself chooses: javac wants ``public class HelloWorld`` in ``HelloWorld.java``,
erlc wants ``-module(hello).`` in ``hello.erl``, Scala runs the object that has ``main``.
A language's ``entry`` in the catalog says, as data, how that name is found in the
code; its source file and commands say where ``{entry}`` goes. Pure functions: no
sandbox, no file system.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

PLACEHOLDER = "{entry}"
# Comments and literals of the C family (Java, Scala, Kotlin, Haxe, JavaScript), blanked
# before a declaration is looked for, so that neither a commented-out class nor a
# string that reads like one is taken for the program's. An unterminated comment or
# text block runs to the end, as the compiler would read it.
_C_TOKENS = re.compile(r'''
    //[^\n]*
  | /\*.*?(?:\*/|\Z)
  | """.*?(?:"""|\Z)
  | "(?:\\.|[^"\\\n])*"
  | '(?:\\.|[^'\\\n])*'
  | `(?:\\.|[^`\\])*`
''', re.S | re.X)
_NAME = re.compile(r"\w[\w.]*")
"""What a name found in the code may be: it goes into file names and shell commands."""


def blank_c_like(code: str) -> str:
    """``code`` with its comments and literals turned to spaces, lines and offsets kept."""
    return _C_TOKENS.sub(lambda match: re.sub(r"[^\n]", " ", match.group()), code)


def top_level(text: str) -> str:
    """``text`` with whatever lies between braces turned to spaces: what is left is
    what is declared at the outermost level."""
    kept = []
    depth = 0
    for char in text:
        if char == "}" and depth:
            depth -= 1
        kept.append(char if depth == 0 or char == "\n" else " ")
        if char == "{":
            depth += 1
    return "".join(kept)


def _body(text: str, start: int) -> str | None:
    """The text between the first ``{`` at or after ``start`` and the brace closing it."""
    opening = text.find("{", start)
    if opening < 0:
        return None
    depth = 0
    for index in range(opening, len(text)):
        depth += {"{": 1, "}": -1}.get(text[index], 0)
        if depth == 0:
            return text[opening + 1:index]
    return text[opening + 1:]


@dataclass(frozen=True)
class Rule:
    """One way to find the name: ``declaration`` matched at the outermost level, and when
    ``body`` is given, only a declaration whose own body (its outermost level) holds it.
    The name is ``value`` when given, else the declaration's first group."""

    declaration: re.Pattern[str]
    body: re.Pattern[str] | None = None
    value: str | None = None

    @classmethod
    def from_table(cls, table: Mapping[str, Any]) -> Rule:
        body = table.get("body")
        return cls(declaration=re.compile(table["declaration"]), body=re.compile(body) if body else None,
                   value=table.get("value"))

    def find(self, text: str, outer: str) -> str | None:
        """The name this rule finds: ``outer`` is what ``text`` declares at its outermost level."""
        for match in self.declaration.finditer(outer):
            if self.body is not None:
                body = _body(text, match.end())
                if body is None or not self.body.search(top_level(body)):
                    continue
            if self.value is not None:
                return self.value
            if _NAME.fullmatch(match.group(1)):
                return match.group(1)
        return None


@dataclass(frozen=True)
class Entry:
    """How a language's program is named: the first rule that finds a name wins, else ``default``."""

    default: str
    rules: tuple[Rule, ...] = ()
    syntax: str | None = None
    """``c``: comments and literals of the C family are blanked, and declarations are looked
    for outside braces only; none: the rules read the code as it is."""

    @classmethod
    def from_table(cls, table: Mapping[str, Any]) -> Entry:
        syntax = table.get("syntax")
        if syntax not in (None, "c"):
            raise ValueError(f"unknown entry syntax {syntax!r}")
        return cls(default=table["default"], rules=tuple(Rule.from_table(rule) for rule in table.get("rules", ())),
                   syntax=syntax)

    def name(self, code: str) -> str:
        text = blank_c_like(code) if self.syntax == "c" else code
        outer = top_level(text) if self.syntax == "c" else text
        for rule in self.rules:
            found = rule.find(text, outer)
            if found is not None:
                return found
        return self.default


__all__ = ["PLACEHOLDER", "Entry", "Rule", "blank_c_like", "top_level"]
