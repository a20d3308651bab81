"""How a program is named after what it declares (``[lang.entry]`` in the catalog): pure
functions, no sandbox. Java's rules are the catalog's own, read from catalog.toml."""

from __future__ import annotations

import pytest

from infra_operator.languages import Catalog, Entry, Language
from infra_operator.languages._entry import blank_c_like, top_level


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.load()


@pytest.fixture(scope="module")
def java(catalog: Catalog) -> Language:
    return catalog.get("java")


def _main(name: str, modifiers: str = "public") -> str:
    return f"{modifiers} class {name} {{\n    public static void main(String[] args) {{ }}\n}}\n"


@pytest.mark.parametrize(("code", "name"), [
    (_main("Main"), "Main"),
    (_main("HelloWorld"), "HelloWorld"),
    (_main("Solution", "public final"), "Solution"),
    (_main("Shape", "public abstract sealed"), "Shape"),
    ("public record Point(int x, int y) {\n    public static void main(String[] a) { }\n}\n", "Point"),
    ("public interface Greeter {\n    static void main(String[] a) { }\n}\n", "Greeter"),
    ("public enum Color { RED, GREEN; public static void main(String[] a) { } }", "Color"),
    ("public class Box<T extends Comparable<T>> implements java.io.Serializable { }", "Box"),
    # Not public: the class that declares main, wherever it stands.
    ("class Helper { static int two() { return 2; } }\n" + _main("GFG", ""), "GFG"),
    ("class Solution {\n  static public void main(String... args) { }\n}\n", "Solution"),
    # The public class names the file even when another class holds main.
    ("class Runner { public static void main(String[] a) { } }\npublic class Library { }\n", "Library"),
    # Nothing declares main, or nothing at all: the default.
    ("class Helper { void main() { } }", "Main"),
    ("", "Main"),
], ids=lambda value: value if isinstance(value, str) and value.isidentifier() else None)
def test_java_is_named_after_its_public_class_else_its_main_class(java: Language, code: str, name: str) -> None:
    program = java.program(code)
    assert program.source == f"{name}.java"
    assert program.compile is not None and program.compile[-1].split()[-1] == f"{name}.java"
    assert program.run[-1] == name


@pytest.mark.parametrize("code", [
    "/* public class Old { } */\n" + _main("Real"),
    "// public class Older\n" + _main("Real"),
    "/** Javadoc naming {@code public class Doc} */\n" + _main("Real"),
    'class Text { static String s = "public class Fake {"; }\n' + _main("Real"),
    "class Quote { static char c = '{'; }\n" + _main("Real"),
    'class Block { static String s = """\n    public class Fake {\n    """; }\n' + _main("Real"),
])
def test_comments_and_literals_name_nothing(java: Language, code: str) -> None:
    assert java.program(code).source == "Real.java"


def test_a_nested_public_class_is_not_the_files(java: Language) -> None:
    code = ("class Outer {\n    public static class Inner { }\n    public static void main(String[] a) { }\n}\n")
    assert java.program(code).source == "Outer.java"


def test_a_name_that_could_not_be_a_file_falls_back_to_the_default() -> None:
    entry = Entry.from_table({"default": "main", "rules": [{"declaration": r"-module\(([^)]*)\)"}]})
    assert entry.name("-module(hello).") == "hello"
    assert entry.name("-module('a b; rm -rf x').") == "main"


@pytest.mark.parametrize(("code", "source"), [
    ('import fs from "fs";\nconsole.log(1);', "main.mjs"),
    ('import { readFileSync } from "fs";', "main.mjs"),
    ("import * as os from 'os';", "main.mjs"),
    ('import "./setup.js";', "main.mjs"),
    ("console.log(import.meta.url);\nimport.meta;", "main.mjs"),
    ("export default function main() {}", "main.mjs"),
    ("export const x = 1;", "main.mjs"),
    ('const fs = require("fs");', "main.js"),
    ('import("os").then(console.log);', "main.js"),
    ('// import fs from "fs";\nconsole.log("import x from y");', "main.js"),
    ("const s = `\nimport fs from 'fs';\n`;", "main.js"),
    ("function f() {\n  const important = 1;\n}", "main.js"),
    ("importantThing();\nimports.push(1);", "main.js"),
    ("exports.answer = 42;\nmodule.exports = {};", "main.js"),
    ('import{readFileSync}from"fs";', "main.mjs"),
])
def test_nodejs_runs_an_es_module_as_mjs(catalog: Catalog, code: str, source: str) -> None:
    program = catalog.get("nodejs").program(code)
    assert (program.source, program.run[-1]) == (source, source)


def test_an_unknown_syntax_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown entry syntax 'cobol'"):
        Entry.from_table({"default": "Main", "syntax": "cobol"})


def test_blanking_keeps_lines_and_offsets() -> None:
    code = 'a /* x\ny */ "s{" // c\nb'
    blanked = blank_c_like(code)
    assert len(blanked) == len(code) and blanked.count("\n") == code.count("\n")
    assert blanked.split() == ["a", "b"]


def test_top_level_keeps_only_the_outermost_text() -> None:
    assert top_level("class A { int x; { nested } } class B {}").split() == ["class", "A", "{", "}", "class", "B", "{}"]


def test_a_language_without_entry_keeps_its_file(catalog: Catalog) -> None:
    python = catalog.get("python")
    assert python.entry is None
    program = python.program("public class HelloWorld {}")
    assert (program.source, program.compile, program.run) == (python.source, python.compile, python.run)


@pytest.mark.parametrize(("language", "code", "name"), [
    ("erlang", "-module(hello).\n-export([main/0]).\nmain() -> ok.\n", "hello"),
    ("erlang", "%% -module(old).\nmain(_) -> ok.\n", "main"),
    ("erlang", "#!/usr/bin/env escript\nmain(_) -> io:format(\"-module(x).~n\").\n", "main"),
    ("scala", "object HelloWorld extends App { println(1) }", "HelloWorld"),
    ("scala", "object Hi extends scala.App {\n}\n", "Hi"),
    ("scala", "case class P(x: Int)\nobject Util { def twice(n: Int) = 2 * n }\n"
              "object Solution {\n  def main(args: Array[String]): Unit = ()\n}\n", "Solution"),
    ("scala", "// object Old extends App\nobject New {\n  def main(a: Array[String]) = ()\n}\n", "New"),
    ("scala", "class Main2 { def main(a: Array[String]) = () }", "Main"),
    ("haxe", "class Helper { static function twice(n:Int) return n * 2; }\n"
             "class HelloWorld {\n  public static function main():Void { }\n}\n", "HelloWorld"),
    ("haxe", "class Test {\n  static public function main() { trace('class Fake {'); }\n}\n", "Test"),
    ("haxe", "class Helper { function main() { } }", "Main"),
    ("racket", "#lang racket\n(displayln 1)\n", "-u"),
    ("racket", "; a comment\n\n#lang racket/base\n", "-u"),
    ("racket", "#!/usr/bin/env racket\n#lang racket\n", "-u"),
    ("racket", "(display \"x\")\n; #lang racket\n", "-f"),
    ("racket", "(define (f) 1)\n", "-f"),
    ("kotlin", "fun main() {\n    println(1)\n}\n", "MainKt"),
    ("kotlin", "object HelloWorld {\n  @JvmStatic fun main(args: Array<String>) { }\n}\n", "HelloWorld"),
    ("kotlin", "class Solution {\n  companion object {\n    @JvmStatic fun main(a: Array<String>) { }\n  }\n}\n", "Solution"),
    ("kotlin", "class Box { companion object { val x = 1 } }\nfun main() { }\n", "MainKt"),
    ("kotlin", "object Util { fun twice(n: Int) = 2 * n }\nfun main() = println(\"fun main(\")\n", "MainKt"),
    ("haskell", "main = print 1\n", "Main"),
    ("haskell", "module Main where\nmain = print 1\n", "Main"),
    ("haskell", "{-# LANGUAGE LambdaCase #-}\nmodule HelloWorld (main) where\n", "HelloWorld"),
    ("haskell", "module Data.Solution where\n", "Data.Solution"),
    ("haskell", "-- module Old where\nmain = pure ()\n", "Main"),
], ids=lambda value: value if isinstance(value, str) and value.isidentifier() else None)
def test_other_languages_name_their_program(catalog: Catalog, language: str, code: str, name: str) -> None:
    entry = catalog.get(language).entry
    assert entry is not None
    assert entry.name(code) == name
