"""The grammar's fast paths give exactly what the slow ones give.

- Tonel method headers and plain class definitions are read from their text when they have
  the usual shape; the same read from the tree-sitter nodes must agree.
- Model objects are assembled directly (construct.py); validating their own dump must give
  equal objects with the same fields set.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tree_sitter import Tree

from smalltalk_grammar import SourceFile, construct, iter_project, parse, parse_file
from smalltalk_grammar import facts as ts
from smalltalk_grammar.build import FactsCache
from smalltalk_grammar.model import ClassDef, MethodDef
from smalltalk_grammar.text import ByteMap, LineIndex
from smalltalk_grammar.tonel import TonelReader, _header_facts, _simple_definition

SAMPLE = Path(__file__).parent / "fixtures" / "sample"

HEADERS = [
    "Class { #name : 'Foo', #superclass : nil }",
    "Class {\n\t#name : #Foo,\n\t#superclass : #Object,\n\t#instVars : [ ],\n"
    "\t#classInstVars : [ 'a', #b, #'c d' ],\n\t#package : 'Pkg',\n\t#tag : 'Core',\n}",
    "Class { #name : #Foo, #superclass : #Object, #category : #Foo-Bar }",
    "Class { #name : #Foo, #superclass : #Object, #category : 'Foo-Bar', #version : 3 }",
    'Class { #name : #Foo "c" , #superclass : #Object }',
    "Class { #name : #Foo, #superclass : #Object, #instVars : [ 'a]b', 'c' ] }",
    "Class { #name : #Foo, #superclass : #Object, #meta : { #a : 1 }, #category : #X }",
    "Extension { #name : 'Foo' }",
    "Class { #name : #Foo, #category : #'Foo''s' , #classVars : [ #A , 'B', ] }",
    "Class { #name : #Foo, #instVars : [ 1, 'a', [ 'b' ] ] }",
    "Class { #name : #Foo, #name : #Bar }",
    "Class { #name : #Foo,\r\n #superclass : #Object,\r\n #category : #'A-B' }",
    "Trait { #name : #TFoo, #traits : 'TBar + TBaz', #classTraits : 'TBar classTrait' }",
    "Class { #name : #at:put:, #superclass : #Object }",
]
METHODS = [
    "Foo >> bar [ ^ 1 ]",
    "Foo class >> at: i put: v [ ^ v ]",
    "Foo classSide >> + other [ ^ self ]",
    "Foo >> at: i\n\tput: v [ ^ v ]",
    "Foo >> at: i\r\n put: v\r\n with: w [ ^ v ]",
    'Foo >> "c" bar [ ^ 1 ]',
    "Foo >> bar. [ ^ 1 ]",
    "Foo>>bar [ ^ 1 ]",
    "Foo >>bar: x [ ^ x ]",
    "Foo >> >= other [ ^ true ]",
    "Foo >> foo: a bar: b [ <primitive: 60 error: ec> | t | t := a. ^ [:x | x foo: b; bar] ]",
]


def _tonel_texts() -> list[str]:
    texts = [p.read_text(encoding="utf-8") for p in sorted((SAMPLE / "tonel").rglob("*.st"))]
    texts += [f'"comment"\n{h}\n\n{m}\n' for h in HEADERS for m in METHODS]
    return texts


def _clean_trees() -> list[tuple[str, bytes, Tree]]:
    found = []
    for text in _tonel_texts():
        data = text.encode("utf-8")
        tree = ts.parse_bytes(data)
        if not tree.root_node.has_error:
            found.append((text, data, tree))
    return found


def test_enough_clean_variants() -> None:
    assert len(_clean_trees()) >= 100


def test_tonel_headers_read_from_text_agree_with_the_nodes() -> None:
    compared = 0
    fields = ("selector", "keywords", "arguments", "pattern_span", "selector_span")
    for text, data, tree in _clean_trees():
        bmap = ByteMap(text)
        for node in tree.root_node.children[0].children:
            if ts.kind(node) != ts.METHOD_DEF:
                continue
            header = next(c for c in node.children if ts.kind(c) == ts.HEADER)
            start, end = bmap.to_char(header.start_byte), bmap.to_char(header.end_byte)
            from_nodes = ts.MethodFacts()
            ts._header(header, from_nodes, data, bmap, start)
            from_text = _header_facts(text, start, end)
            if from_text is None:
                continue  # not a plain header: the nodes are read
            compared += 1
            for name in ("owner", "class_side", "header_parts", "header_tail", *fields):
                assert getattr(from_text, name) == getattr(from_nodes, name), (name, text)
    assert compared >= 80


def test_plain_class_definitions_read_from_text_agree_with_the_nodes() -> None:
    compared = 0
    for text, data, tree in _clean_trees():
        bmap = ByteMap(text)
        reader = TonelReader(text, data, tree, LineIndex(text), FactsCache())
        for node in tree.root_node.children[0].children:
            if ts.kind(node) != ts.CLASS_DEF:
                continue
            start, end = bmap.to_char(node.start_byte), bmap.to_char(node.end_byte)
            from_text = _simple_definition(text, start, end)
            if from_text is None:
                continue
            compared += 1
            assert from_text == reader._definition_nodes(node), text
    assert compared >= 10


def test_fast_paths_are_taken_for_the_sample() -> None:
    for text in _tonel_texts()[:9]:
        if "Class {" not in text:
            continue
        start = text.index("Class {")
        end = text.index("\n}", start) + 2
        assert _simple_definition(text, start, end) is not None, text[:60]
    assert _header_facts("Foo class >> at: i put: v", 0, 25) is not None


def test_direct_construction_is_in_use() -> None:
    """With the pinned pydantic the direct path passed its check at import (else parsing
    would fall back to validation, correct but slower)."""
    assert construct.make_method_def is construct._method
    assert construct.make_class_def is construct._class
    assert construct.make_range is construct._range
    assert construct.make_position is construct._position
    assert construct.make_source_file is construct._source_file


def _sources() -> list[SourceFile]:
    found = [parse_file(p) for p in iter_project(SAMPLE)]
    found += [parse(t, path="x.class.st") for t in _tonel_texts()]
    return found


@pytest.mark.parametrize("source", _sources(), ids=lambda s: Path(s.path or "?").name)
def test_built_objects_equal_their_validated_copies(source: SourceFile) -> None:
    again = SourceFile.model_validate(source.model_dump())
    assert again == source
    assert again.model_dump_json() == source.model_dump_json()
    pairs = zip(source.methods + source.doits, again.methods + again.doits, strict=True)
    for built, checked in pairs:
        assert type(built) is MethodDef and built.model_fields_set == checked.model_fields_set
        assert built.range == checked.range
        assert type(built.range.start) is type(checked.range.start)
    for built_class, checked_class in zip(source.classes, again.classes, strict=True):
        assert type(built_class) is ClassDef
        assert built_class.model_dump() == checked_class.model_dump()


def test_built_methods_own_their_lists() -> None:
    """Facts are cached by method text; two methods made from one entry share no list."""
    text = "Class { #name : #A }\n\nA >> x [ ^ self y ]\n\nA >> x [ ^ self y ]\n"
    first, second = parse(text).methods
    assert first.sends == second.sends == ["y"]
    assert first.sends is not second.sends
    first.sends.append("z")
    assert second.sends == ["y"]
