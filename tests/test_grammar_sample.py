# ruff: noqa: E501  (the expected-facts table below reads best one method per line)
"""The sample project in every format: exact classes, selectors, categories and ranges.

Expected facts come from tests/fixtures/SAMPLE.md (checked against the files themselves).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from smalltalk_grammar import ClassDef, MethodDef, SourceFile, offset_at, parse_path

SAMPLE = Path(__file__).parent / "fixtures" / "sample"

COMMENTS = {
    "SRStore": "I am an abstract store of streaming rights.\n\nI hold a name and a collection of "
    "SRRight instances, and I answer the rights that apply to a territory. Every store created "
    "with #named: is kept in the class-side Registry.",
    "SRRegionalStore": "I am a store that only accepts rights for the territories I cover.",
    "SRRight": "I am the right to stream one title in one territory under one licence.",
    "SRLicence": "I am a licence: a period between two dates and the fee paid for it.",
    "SRTerritory": "I am a territory in which a title can be streamed, identified by my code.",
    "TSRComparable": "I give my users an ordering based on #compareKey, which they must implement.",
    "SRStoreTest": "I test SRStore.",
}

# name: (superclass, kind, category, instance variables, class variables)
CLASSES = {
    "SRStore": ("Object", "class", "StreamingRights-Core", ["name", "rights"], ["Registry"]),
    "SRRegionalStore": ("SRStore", "class", "StreamingRights-Core", ["territories"], []),
    "SRRight": ("Object", "class", "StreamingRights-Core", ["title", "territory", "licence"], []),
    "SRLicence": ("Object", "class", "StreamingRights-Core", ["startDate", "endDate", "fee"], []),
    "SRTerritory": ("Object", "class", "StreamingRights-Core", ["code", "name"], []),
    "TSRComparable": (None, "trait", "StreamingRights-Core", [], []),
    "SRStoreTest": ("TestCase", "class", "StreamingRights-Tests", [], []),
}

# (class, side, selector, category, Tonel (file, first, last), Squeak, VW, GNU, FileTree file)
METHODS = [
    ("SRStore", "class", "named:", "instance creation", ("SRStore.class.st", 19, 26), (59, 64), (56, 62), (18, 26), "class/named..st"),
    ("SRStore", "class", "registry", "accessing", ("SRStore.class.st", 29, 32), (67, 68), (66, 67), (28, 31), "class/registry.st"),
    ("SRStore", "instance", "addRight:", "accessing", ("SRStore.class.st", 35, 39), (42, 44), (72, 75), (48, 53), "instance/addRight..st"),
    ("SRStore", "instance", "expireBefore:", "accessing", ("SRStore.class.st", 42, 46), (50, 52), (77, 80), (67, 72), "instance/expireBefore..st"),
    ("SRStore", "instance", "isEmpty", "testing", ("SRStore.class.st", 49, 52), (55, 56), (98, 99), (62, 65), "instance/isEmpty.st"),
    ("SRStore", "instance", "name", "accessing", ("SRStore.class.st", 55, 58), (33, 34), (82, 83), (33, 36), "instance/name.st"),
    ("SRStore", "instance", "name:", "accessing", ("SRStore.class.st", 61, 64), (36, 37), (85, 86), (38, 41), "instance/name..st"),
    ("SRStore", "instance", "rights", "accessing", ("SRStore.class.st", 67, 70), (39, 40), (88, 89), (43, 46), "instance/rights.st"),
    ("SRStore", "instance", "rightsFor:", "accessing", ("SRStore.class.st", 73, 77), (46, 48), (91, 94), (55, 60), "instance/rightsFor..st"),
    ("SRRegionalStore", "instance", "addRight:", "accessing", ("SRRegionalStore.class.st", 13, 19), (83, 87), (104, 109), (99, 106), "instance/addRight..st"),
    ("SRRegionalStore", "instance", "coversTerritory:", "testing", ("SRRegionalStore.class.st", 22, 25), (90, 91), (116, 117), (94, 97), "instance/coversTerritory..st"),
    ("SRRegionalStore", "instance", "printOn:", "printing", ("SRRegionalStore.class.st", 28, 35), (94, 99), (121, 126), (108, 115), "instance/printOn..st"),
    ("SRRegionalStore", "instance", "territories", "accessing", ("SRRegionalStore.class.st", 38, 41), (80, 81), (111, 112), (89, 92), "instance/territories.st"),
    ("SRRight", "class", "title:territory:licence:", "instance creation", ("SRRight.class.st", 17, 23), (139, 143), None, (126, 132), None),
    ("SRRight", "instance", "<", "comparing", None, None, None, (172, 177), None),
    ("SRRight", "instance", "compareKey", "comparing", ("SRRight.class.st", 26, 29), (135, 136), None, (167, 170), None),
    ("SRRight", "instance", "isValidOn:", "testing", ("SRRight.class.st", 32, 36), (130, 132), None, (160, 165), None),
    ("SRRight", "instance", "licence", "accessing", ("SRRight.class.st", 39, 42), (121, 122), None, (149, 152), None),
    ("SRRight", "instance", "max:", "comparing", None, None, None, (179, 184), None),
    ("SRRight", "instance", "territory", "accessing", ("SRRight.class.st", 45, 48), (118, 119), None, (144, 147), None),
    ("SRRight", "instance", "territory:licence:", "initialization", ("SRRight.class.st", 51, 55), (125, 127), None, (154, 158), None),
    ("SRRight", "instance", "title", "accessing", ("SRRight.class.st", 58, 61), (112, 113), None, (134, 137), None),
    ("SRRight", "instance", "title:", "accessing", ("SRRight.class.st", 64, 67), (115, 116), None, (139, 142), None),
    ("SRLicence", "class", "from:to:", "instance creation", ("SRLicence.class.st", 15, 18), (206, 207), (131, 132), (195, 198), "class/from.to..st"),
    ("SRLicence", "instance", "durationInDays", "accessing", ("SRLicence.class.st", 21, 24), (167, 168), (137, 138), (220, 223), "instance/durationInDays.st"),
    ("SRLicence", "instance", "endDate", "accessing", ("SRLicence.class.st", 27, 30), (158, 159), (140, 141), (205, 208), "instance/endDate.st"),
    ("SRLicence", "instance", "fee", "accessing", ("SRLicence.class.st", 33, 36), (161, 162), (143, 144), (210, 213), "instance/fee.st"),
    ("SRLicence", "instance", "fee:", "accessing", ("SRLicence.class.st", 39, 42), (164, 165), (146, 147), (215, 218), "instance/fee..st"),
    ("SRLicence", "instance", "feePerDay", "accessing", ("SRLicence.class.st", 45, 53), (170, 176), (149, 156), (225, 232), "instance/feePerDay.st"),
    ("SRLicence", "instance", "isActiveOn:", "testing", ("SRLicence.class.st", 56, 59), (179, 180), (163, 164), (234, 237), "instance/isActiveOn..st"),
    ("SRLicence", "instance", "setStart:end:", "private", ("SRLicence.class.st", 62, 66), (201, 203), (189, 191), (260, 264), "instance/setStart.end..st"),
    ("SRLicence", "instance", "startDate", "accessing", ("SRLicence.class.st", 69, 72), (155, 156), (158, 159), (200, 203), "instance/startDate.st"),
    ("SRLicence", "instance", "statusReportOn:", "printing", ("SRLicence.class.st", 75, 92), (183, 198), (168, 185), (239, 258), "instance/statusReportOn..st"),
    ("SRTerritory", "class", "all", "accessing", ("SRTerritory.class.st", 14, 21), (246, 251), None, (283, 291), "class/all.st"),
    ("SRTerritory", "class", "code:name:", "instance creation", ("SRTerritory.class.st", 24, 30), (239, 243), None, (275, 281), "class/code.name..st"),
    ("SRTerritory", "instance", "=", "comparing", ("SRTerritory.class.st", 33, 36), (232, 233), None, (313, 316), "instance/^equals.st"),
    ("SRTerritory", "instance", "code", "accessing", ("SRTerritory.class.st", 39, 42), (219, 220), None, (293, 296), "instance/code.st"),
    ("SRTerritory", "instance", "code:", "accessing", ("SRTerritory.class.st", 45, 48), (222, 223), None, (298, 301), "instance/code..st"),
    ("SRTerritory", "instance", "hash", "comparing", ("SRTerritory.class.st", 51, 54), (235, 236), None, (318, 321), "instance/hash.st"),
    ("SRTerritory", "instance", "name", "accessing", ("SRTerritory.class.st", 57, 60), (225, 226), None, (303, 306), "instance/name.st"),
    ("SRTerritory", "instance", "name:", "accessing", ("SRTerritory.class.st", 63, 66), (228, 229), None, (308, 311), "instance/name..st"),
    ("TSRComparable", "instance", "<", "comparing", ("TSRComparable.trait.st", 9, 12), (9, 10), None, None, None),
    ("TSRComparable", "instance", "max:", "comparing", ("TSRComparable.trait.st", 15, 21), (12, 16), None, None, None),
    ("String", "instance", "asSRTerritoryCode", "*StreamingRights-Core", ("String.extension.st", 3, 7), (254, 256), None, (327, 332), "instance/asSRTerritoryCode.st"),
    ("SRStoreTest", "instance", "testAddRight", "tests", ("SRStoreTest.class.st", 10, 22), (268, 278), None, (341, 352), None),
    ("SRStoreTest", "instance", "testRightsForTerritory", "tests", ("SRStoreTest.class.st", 25, 38), (280, 291), None, (354, 367), None),
]  # fmt: skip

METHOD_COMMENTS = {
    ("SRStore", "named:"): "Answer a new store called aString and remember it in the registry",
    ("SRStore", "addRight:"): "Add aRight to the receiver and answer it",
    ("SRStore", "expireBefore:"): "Forget every right whose licence ended before aDate",
    ("SRStore", "rightsFor:"): "Answer the rights of the receiver that apply to aTerritory",
    ("SRRegionalStore", "addRight:"): "Refuse rights for territories the receiver does not cover",
    ("SRRight", "isValidOn:"): "Answer whether the licence of the receiver is active on aDate",
    ("SRLicence", "feePerDay"): "Answer the fee spread over the days of the licence",
    ("SRLicence", "statusReportOn:"): "Answer a short report of the receiver on aDate, with "
    "reminders 1, 2 and 3 days before the end",
    ("SRTerritory", "all"): "Answer the territories known to the framework",
    ("TSRComparable", "max:"): "Answer the greater of the receiver and aComparable",
    ("String", "asSRTerritoryCode"): "Answer the receiver as an upper-case territory code",
    ("SRStoreTest", "testRightsForTerritory"): "Only the right for the asked territory is answered",
    # GNU only: no traits, SRRight has its own copies.
    ("SRRight", "<"): "GNU Smalltalk has no traits: this is TSRComparable>>#< copied in",
    ("SRRight", "max:"): "Answer the greater of the receiver and aRight",
}

FORMAT_COLUMN = {"tonel": 4, "chunk-squeak": 5, "chunk-vw": 6, "gnu": 7, "filetree": 8}
FORMAT_NAME = {
    "tonel": "tonel",
    "chunk-squeak": "chunk",
    "chunk-vw": "chunk",
    "gnu": "bracket",
    "filetree": "filetree",
}


@pytest.fixture(scope="module")
def parsed() -> dict[str, list[SourceFile]]:
    return {folder: parse_path(SAMPLE / folder) for folder in FORMAT_COLUMN}


def _methods(files: list[SourceFile]) -> dict[tuple[str, str, str], tuple[SourceFile, MethodDef]]:
    found = {}
    for source in files:
        for method in source.methods:
            key = (method.class_name, method.side, method.selector)
            assert key not in found, f"duplicate {key}"
            found[key] = (source, method)
    return found


def _classes(files: list[SourceFile]) -> dict[str, tuple[SourceFile, ClassDef]]:
    return {cls.name: (source, cls) for source in files for cls in source.classes}


def _text(source: SourceFile) -> str:
    assert source.path is not None
    return Path(source.path).read_bytes().decode("utf-8")


@pytest.mark.parametrize("folder", list(FORMAT_COLUMN))
def test_every_method_with_category_and_range(parsed, folder: str) -> None:
    column = FORMAT_COLUMN[folder]
    expected = {row[:3]: row for row in METHODS if row[column] is not None}
    found = _methods(parsed[folder])
    assert set(found) == set(expected)
    for key, row in expected.items():
        source, method = found[key]
        assert source.format == FORMAT_NAME[folder]
        assert method.category == row[3], key
        where = row[column]
        if folder == "tonel":
            assert Path(source.path or "").name == where[0]
            first, last = where[1], where[2]
        elif folder == "filetree":
            assert (source.path or "").endswith(where), key
            first = 1
            last = len(_text(source).splitlines()) - 1
        else:
            first, last = where
        assert (method.range.start.line, method.range.end.line) == (first, last), key
        assert method.comment == METHOD_COMMENTS.get((key[0], key[2])), key


@pytest.mark.parametrize("folder", list(FORMAT_COLUMN))
def test_ranges_and_offsets_point_at_the_source(parsed, folder: str) -> None:
    for source, method in _methods(parsed[folder]).values():
        text = _text(source)
        start = offset_at(text, method.range.start)
        end = offset_at(text, method.range.end)
        assert (start, end) == (method.start_offset, method.end_offset)
        whole = text[start:end]
        sel_start = offset_at(text, method.selector_range.start)
        sel_end = offset_at(text, method.selector_range.end)
        pattern = text[sel_start:sel_end]
        # The selector range holds the whole pattern (`at: x put: y`) on the selector's line.
        assert method.selector_range.start.line == method.selector_range.end.line
        assert pattern.replace(" ", "").startswith(
            method.keywords[0] if method.keywords else method.selector
        ), pattern
        assert all(kw in pattern for kw in method.keywords)
        assert sel_start >= start and sel_end <= end
        # Each format's method text starts with its header and ends with its closer.
        if folder == "tonel":
            assert whole.startswith(f"{method.class_name} ")
            assert whole.endswith("]") and method.range.end.character == 1
        elif folder == "gnu":
            assert whole.endswith("]")
            assert whole.startswith(pattern) or ">>" in whole.split("\n")[0]
        elif folder.startswith("chunk"):
            assert whole.startswith(pattern) and whole.endswith("!")
        else:
            assert whole == method.source
        assert method.source.startswith(pattern)


@pytest.mark.parametrize("folder", list(FORMAT_COLUMN))
def test_classes(parsed, folder: str) -> None:
    classes = _classes(parsed[folder])
    expected = {
        "tonel": set(CLASSES) | {"String"},
        "chunk-squeak": set(CLASSES),
        "chunk-vw": {"SRStore", "SRRegionalStore", "SRLicence"},
        "gnu": (set(CLASSES) - {"TSRComparable"}) | {"String"},
        "filetree": {"SRStore", "SRRegionalStore", "SRLicence", "SRTerritory", "String"},
    }[folder]
    assert set(classes) == expected
    for name, (_, cls) in classes.items():
        if name == "String":
            assert cls.kind == "extension" and cls.superclass is None and cls.comment is None
            continue
        superclass, kind, category, ivars, cvars = CLASSES[name]
        assert (cls.superclass, cls.kind, cls.category) == (superclass, kind, category), name
        assert cls.instance_variables == ivars, name
        assert cls.class_variables == cvars, name
        assert cls.comment == COMMENTS[name], name
        assert cls.class_instance_variables == (
            ["registry"] if (folder, name) == ("gnu", "SRStore") else []
        )
        if folder in ("tonel", "chunk-squeak"):
            assert cls.traits == ("TSRComparable" if name == "SRRight" else None)
        assert cls.namespace == ("StreamingRights" if folder == "chunk-vw" else None)


# First line of each class definition (0-based), from SAMPLE.md.
DEFINITION_LINES = {
    "chunk-squeak": {
        "TSRComparable": (1, 3),
        "SRStore": (18, 22),
        "SRRegionalStore": (70, None),
        "SRRight": (101, None),
        "SRLicence": (145, None),
        "SRTerritory": (209, None),
        "SRStoreTest": (258, None),
    },
    "chunk-vw": {"SRStore": (10, 17), "SRRegionalStore": (19, 26), "SRLicence": (28, 35)},
    "gnu": {
        "SRStore": (8, 73),
        "SRRegionalStore": (83, 116),
        "SRRight": (120, None),
        "SRLicence": (189, None),
        "SRTerritory": (269, None),
        "String": (326, 333),
        "SRStoreTest": (337, 368),
    },
}


@pytest.mark.parametrize("folder", list(FORMAT_COLUMN))
def test_class_ranges(parsed, folder: str) -> None:
    for name, (source, cls) in _classes(parsed[folder]).items():
        text = _text(source)
        name_start = offset_at(text, cls.name_range.start)
        assert text[name_start : offset_at(text, cls.name_range.end)] == name
        if folder == "tonel":
            first = 0 if name == "String" else (5 if name == "SRStore" else 3)
            assert cls.range.start.line == first
            assert text.splitlines()[first].startswith(("Class {", "Trait {", "Extension {"))
        elif folder == "filetree":
            assert cls.range.start.line == 0 and source.path.endswith("properties.json")
        else:
            first, last = DEFINITION_LINES[folder][name]
            assert cls.range.start.line == first, name
            if last is not None:
                assert cls.range.end.line == last, name


def test_facts_the_other_features_rely_on(parsed) -> None:
    for folder in FORMAT_COLUMN:
        methods = _methods(parsed[folder])
        fee = methods.get(("SRLicence", "instance", "feePerDay"))
        if fee:
            assert "perform:" in fee[1].sends and "durationInDays" in fee[1].symbols
        report = methods.get(("SRLicence", "instance", "statusReportOn:"))
        if report:
            method = report[1]
            assert {"index", "days", "reminder", "stream"} <= set(method.temporaries)
            assert {"nextPut:", "print:", "space", "keysAndValuesDo:", "isActiveOn:"} <= set(
                method.sends
            )
            assert "'Expired!'" in method.source and "$!" in method.source
            assert "'Expired!!'" not in method.source
            assert method.arguments == ["aDate"]
            assert "endDate" in method.variable_references
            assert {"WriteStream", "String"} <= set(method.class_references)
        regional = methods.get(("SRRegionalStore", "instance", "addRight:"))
        if regional:
            assert "addRight:" in regional[1].sends
        senders = {key for key, (_, m) in methods.items() if "isActiveOn:" in m.sends}
        if folder in ("tonel", "chunk-squeak", "gnu"):
            assert senders == {
                ("SRRight", "instance", "isValidOn:"),
                ("SRLicence", "instance", "statusReportOn:"),
            }
        if folder != "gnu" and ("SRTerritory", "instance", "=") in methods:
            equal = methods[("SRTerritory", "instance", "=")][1]
            assert equal.keywords == [] and equal.arguments == ["anObject"]
        named = methods.get(("SRStore", "class", "named:"))
        if named:
            assert named[1].keywords == ["named:"] and named[1].temporaries == ["store"]
            assert "Registry" not in named[1].class_references


def test_gnu_eval_is_a_doit(parsed) -> None:
    (source,) = parsed["gnu"]
    assert len(source.methods) == 44
    (doit,) = source.doits
    assert (doit.class_name, doit.selector) == ("UndefinedObject", "DoIt")
    assert (doit.range.start.line, doit.range.end.line) == (372, 377)
    assert "asSRTerritoryCode" in doit.sends and doit.temporaries == ["store"]


def test_gnu_eval_sends_are_read_like_a_method(parsed) -> None:
    """The Eval body's sends, in the order they appear (outer message first), for a project
    model to count as senders: `SourceFile.doits[i].sends`."""
    (source,) = parsed["gnu"]
    (doit,) = source.doits
    assert doit.sends == [
        "named:",
        "add:",
        "territories",
        "code:name:",
        "asSRTerritoryCode",
        "showCr:",
        "printString",
    ]
    assert doit.class_references == ["SRRegionalStore", "SRTerritory", "Transcript"]
    assert doit.variable_references == [] and doit.symbols == []
    # The Eval body's statements, from `| store |` to `printString`; no method has them.
    assert doit.source.splitlines()[1].strip() == "| store |"
    assert not any("showCr:" in m.sends for m in source.methods)


def test_no_diagnostics_on_the_valid_sample(parsed) -> None:
    for files in parsed.values():
        for source in files:
            assert source.diagnostics == [], source.path


def test_method_counts(parsed) -> None:
    counts = {folder: sum(len(f.methods) for f in files) for folder, files in parsed.items()}
    assert counts == {"tonel": 44, "chunk-squeak": 44, "chunk-vw": 23, "gnu": 44, "filetree": 32}
