"""Format detection and the dialect variants the sample project does not cover."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from smalltalk_grammar import detect_format, iter_project, parse, parse_file, parse_path


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('"c"\nClass { #name : #Foo }', "tonel"),
        ("Extension { #name : #Foo }", "tonel"),
        ("Package { #name : 'X' }", "tonel"),
        ("Object subclass: #Foo\n\tinstanceVariableNames: ''\n\tcategory: 'X'!\n", "chunk"),
        ("!Foo methodsFor: 'x'!\nbar\n\t^ 1! !", "chunk"),
        ("Object subclass: Foo [\n    bar [ ^ 1 ]\n]\n", "bracket"),
        ("Integer extend [ double [ ^ self * 2 ] ]", "bracket"),
        ("Eval [ 3 printNl ]", "bracket"),
        ("at: i put: v\n\t^ items at: i put: v", "method"),
        ("", "method"),
    ],
)
def test_detect_format(text: str, expected: str) -> None:
    assert detect_format(text) == expected


def _one(text: str):  # type: ignore[no-untyped-def]
    source = parse(text)
    assert not [d for d in source.diagnostics if d.severity == "error"], source.diagnostics
    return source


def test_pharo_chunk_with_package_tag_slots_and_traits() -> None:
    source = _one(
        "Object subclass: #Foo\n"
        "\tuses: TBar + TBaz\n"
        "\tinstanceVariableNames: 'a b'\n"
        "\tclassVariableNames: 'K'\n"
        "\tpackage: 'Pkg'\n"
        "\ttag: 'Core'!\n"
        "Foo class uses: TBar classTrait instanceVariableNames: 'count'!\n"
        "Trait named: #TBar uses: {} package: 'Pkg'!\n"
        "Object variableSubclass: #Baz slots: { #x. #y } package: 'Pkg'!\n"
        "nil subclass: #Root instanceVariableNames: '' classVariableNames: '' category: 'K'!\n"
        "Foo comment: 'It''s a Foo'!\n"
        "Foo initialize!\n"
    )
    classes = {c.name: c for c in source.classes}
    foo = classes["Foo"]
    assert (foo.superclass, foo.category, foo.traits) == ("Object", "Pkg-Core", "TBar + TBaz")
    assert foo.instance_variables == ["a", "b"] and foo.class_variables == ["K"]
    assert foo.class_instance_variables == ["count"] and foo.comment == "It's a Foo"
    assert (classes["TBar"].kind, classes["TBar"].category) == ("trait", "Pkg")
    assert classes["Baz"].instance_variables == ["x", "y"]
    assert classes["Root"].superclass is None


def test_cuis_class_definition_and_va_method_sections() -> None:
    source = _one(
        "!classDefinition: #Foo category: #'Cuis-Thing'!\n"
        "Object subclass: #Foo\n\tinstanceVariableNames: 'a'\n\tclassVariableNames: ''\n"
        "\tpoolDictionaries: ''\n\tcategory: 'Cuis-Thing'!\n"
        "!classDefinition: #Lonely category: #'Cuis-Other'!\n"
        "!Foo publicMethods !\n\nbar\n\t^ a! !\n"
        "!Foo class privateMethods !\n\nmake\n\t^ self new! !\n"
        "!Foo methodsFor: 'x' stamp: 'jd 1/1/2026'!\nbaz: n\n\t^ n + #(1 $a #foo: bar) size! !\n"
    )
    classes = {c.name: c for c in source.classes}
    assert (classes["Foo"].category, classes["Foo"].instance_variables) == ("Cuis-Thing", ["a"])
    assert classes["Foo"].range.start.line == 1  # the full definition, not the declaration
    assert (classes["Lonely"].kind, classes["Lonely"].category) == ("class", "Cuis-Other")
    methods = {(m.side, m.selector): m for m in source.methods}
    assert set(methods) == {("instance", "bar"), ("class", "make"), ("instance", "baz:")}
    assert methods[("instance", "bar")].category is None
    assert methods[("instance", "baz:")].category == "x"
    assert methods[("instance", "baz:")].symbols == ["foo:", "bar"]
    assert methods[("instance", "baz:")].sends == ["+", "size"]


def test_gnu_variants() -> None:
    source = _one(
        "Namespace current: Media [\n"
        "Object subclass: #Clip [\n"
        "    | length | <shape: #pointer>\n"
        "    Cache := Dictionary new.\n"
        "    Table := [ :x | x ] value: 3.\n"
        "    Clip class >> new [ <category: 'instance creation'> ^ super new init ]\n"
        "    init [ length := 0 ]\n"
        "    + other [ ^ length + other length ]\n"
        "    at: i put: v [ ^ v ]\n"
        "]\n"
        "]\n"
        "Clip class extend [ default [ ^ self new ] ]\n"
        "Clip class [ | instances | ]\n"
        "Clip >> length [ <category: 'accessing'> ^ length ]\n"
        "Clip class >> named: aString [ ^ self new ]\n"
    )
    (clip,) = source.classes
    assert (clip.name, clip.namespace, clip.superclass) == ("Clip", "Media", "Object")
    assert clip.instance_variables == ["length"]
    assert clip.class_variables == ["Cache", "Table"]
    assert clip.class_instance_variables == ["instances"]
    methods = {(m.side, m.selector): m.category for m in source.methods}
    assert methods == {
        ("class", "new"): "instance creation",
        ("instance", "init"): None,
        ("instance", "+"): None,
        ("instance", "at:put:"): None,
        ("class", "default"): None,
        ("instance", "length"): "accessing",
        ("class", "named:"): None,
    }


def test_tonel_v3_package_and_tag_and_class_side_vars() -> None:
    source = _one(
        "Class {\n\t#name : 'Foo',\n\t#superclass : 'Object',\n\t#instVars : [ 'a' ],\n"
        "\t#classInstVars : [ 'count' ],\n\t#package : 'Pkg',\n\t#tag : 'Core'\n}\n\n"
        "{ #category : 'x' }\nFoo class >> count [ ^ count ]\n"
    )
    (cls,) = source.classes
    assert (cls.name, cls.superclass, cls.category) == ("Foo", "Object", "Pkg-Core")
    assert cls.class_instance_variables == ["count"]
    (method,) = source.methods
    assert (method.side, method.selector, method.category) == ("class", "count", "x")
    assert method.variable_references == ["count"]


def test_bare_method_file() -> None:
    source = _one("at: index put: value\n\t| old |\n\told := items at: index.\n\t^ old")
    assert source.format == "method"
    (method,) = source.methods
    assert (method.class_name, method.selector, method.keywords) == ("", "at:put:", ["at:", "put:"])
    assert method.arguments == ["index", "value"] and method.temporaries == ["old"]
    assert method.variable_references == ["items"]


def test_filetree_from_text_uses_the_path() -> None:
    source = parse("accessing\nfoo: x\n\t^ x", "Pkg.package/Foo.class/class/foo..st")
    assert source.format == "filetree"
    (method,) = source.methods
    assert (method.class_name, method.side, method.selector, method.category) == (
        "Foo",
        "class",
        "foo:",
        "accessing",
    )


def test_filetree_trait_and_broken_properties(tmp_path: Path) -> None:
    trait = tmp_path / "Pkg.package" / "TFoo.trait"
    trait.mkdir(parents=True)
    (trait / "properties.json").write_text(json.dumps({"name": "TFoo", "category": "Pkg"}))
    broken = tmp_path / "Pkg.package" / "Bar.class"
    broken.mkdir()
    (broken / "properties.json").write_text('{ "name" : "Bar", ')
    (tmp_path / "Pkg.package" / "properties.json").write_text("{ }")
    (tmp_path / "notes.txt").write_text("not Smalltalk")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "x.st").write_text("foo ^ 1")
    paths = list(iter_project(tmp_path))
    assert paths == [broken / "properties.json", trait / "properties.json"]
    bar, tfoo = parse_path(tmp_path)
    assert bar.classes == [] and "invalid JSON" in bar.diagnostics[0].message
    assert [(c.name, c.kind, c.category) for c in tfoo.classes] == [("TFoo", "trait", "Pkg")]
    assert parse_file(tmp_path / "Pkg.package" / "properties.json").classes == []
