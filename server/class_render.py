"""The one class renderer: a class definition as text, for prompts, the index and hover.

The forms differ on purpose (a model that knows Pharo reads the `subclass:` message best, the
training documents are Tonel, the index and the reasoner read plain facts, hover is
Markdown); they share this one function and its variable lines, so a fact added to a class
reaches every form from here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from smalltalk_grammar import ClassDef

ClassForm = Literal["pharo", "tonel", "summary", "unit", "markdown", "comment"]


def render_class(
    cls: ClassDef,
    form: ClassForm,
    *,
    superclasses: Sequence[str] = (),
    inherited: Sequence[str] = (),
    comment: bool = True,
    comment_limit: int | None = None,
) -> str:
    """`cls` in `form`:

    - "pharo": `Object subclass: #Foo instanceVariableNames: ...` (the comment before it);
    - "tonel": `Class { #name : #Foo, ... }` (the comment before it);
    - "summary": `Foo < Bar < Object` and fact lines, with the `superclasses` chain and the
      `inherited` instance variables (retrieval's prompt context);
    - "unit": `class Foo < Bar` and fact lines (retrieval's index unit);
    - "markdown": the definition line in a code block, the chain, facts as a list (hover);
    - "comment": the facts as one Smalltalk comment (code actions' coder prompt).

    `comment` False leaves the class comment out; `comment_limit` clips it.
    """
    # None: no comment shown; else the comment stripped (and clipped).
    text = cls.comment.strip() if comment and cls.comment else None
    if text is not None and comment_limit is not None and len(text) > comment_limit:
        text = text[: comment_limit - 4].rstrip() + "\n..."
    if form == "pharo":
        return _pharo(cls, text)
    if form == "tonel":
        return _tonel(cls, (cls.comment or "") if comment else "")
    if form == "summary":
        return _summary(cls, superclasses, inherited, text)
    if form == "unit":
        return _unit(cls, text)
    if form == "markdown":
        return _markdown(cls, superclasses, text)
    return _comment(cls, text)


def definition_line(cls: ClassDef) -> str:
    """The first line of the definition: `Object subclass: #Foo`, `Trait named: #TFoo`."""
    if cls.kind == "trait":
        return f"Trait named: #{cls.name}"
    if cls.kind == "extension":
        return f"{cls.name} extend"
    return f"{cls.superclass or 'nil'} subclass: #{cls.name}"


def _variables(cls: ClassDef, class_instance: str = "class instance variables") -> list[str]:
    lines = []
    if cls.instance_variables:
        lines.append("instance variables: " + " ".join(cls.instance_variables))
    if cls.class_variables:
        lines.append("class variables: " + " ".join(cls.class_variables))
    if cls.class_instance_variables:
        lines.append(f"{class_instance}: " + " ".join(cls.class_instance_variables))
    return lines


def _pharo(cls: ClassDef, comment: str | None) -> str:
    superclass = cls.superclass or "Object"
    lines = [
        f"{superclass} subclass: #{cls.name}",
        f"\tinstanceVariableNames: '{' '.join(cls.instance_variables)}'",
        f"\tclassVariableNames: '{' '.join(cls.class_variables)}'",
        f"\tpackage: '{cls.category or ''}'",
    ]
    text = "\n".join(lines)
    if comment is not None:
        doubled = comment.replace('"', '""')
        text = f'"{doubled}"\n{text}'
    return text


def _tonel(cls: ClassDef, comment: str) -> str:
    if cls.kind == "extension":
        return f"Extension {{ #name : #{cls.name} }}"
    lines: list[str] = []
    if comment:
        lines += ['"', comment.replace('"', '""'), '"']
    keyword = "Trait" if cls.kind == "trait" else "Class"
    fields = [f"#name : #{cls.name}"]
    if cls.superclass and cls.kind != "trait":
        fields.append(f"#superclass : #{cls.superclass}")
    if cls.traits:
        fields.append(f"#traits : '{cls.traits}'")
    for label, names in (("instVars", cls.instance_variables), ("classVars", cls.class_variables)):
        if names:
            quoted = ",\n".join(f"\t\t'{name}'" for name in names)
            fields.append(f"#{label} : [\n{quoted}\n\t]")
    if cls.category:
        fields.append(f"#category : #'{cls.category}'")
    lines.append(keyword + " {\n" + ",\n".join(f"\t{f}" for f in fields) + "\n}")
    return "\n".join(lines)


def _summary(
    cls: ClassDef, chain: Sequence[str], inherited: Sequence[str], comment: str | None
) -> str:
    head = " < ".join([cls.name, *chain]) if chain else f"{cls.name} < {cls.superclass}"
    lines = [f"{cls.kind} {head}" if cls.kind != "class" else head]
    if cls.traits:
        lines.append(f"uses: {cls.traits}")
    variables = _variables(cls)
    if cls.instance_variables:
        lines.append(variables.pop(0))
    if inherited:
        lines.append("inherited instance variables: " + " ".join(inherited))
    lines += variables
    if cls.category:
        lines.append(f"category: {cls.category}")
    if comment is not None:
        lines.append('"' + comment.replace('"', "'") + '"')
    return "\n".join(lines)


def _unit(cls: ClassDef, comment: str | None) -> str:
    lines = [f"{cls.kind} {cls.name}" + (f" < {cls.superclass}" if cls.superclass else "")]
    if cls.traits:
        lines.append(f"uses: {cls.traits}")
    lines += _variables(cls)
    if cls.category:
        lines.append(f"category: {cls.category}")
    if comment is not None:
        lines.append(comment)
    return "\n".join(lines)


def _markdown(cls: ClassDef, chain: Sequence[str], comment: str | None) -> str:
    lines = ["```smalltalk", definition_line(cls), "```"]
    if chain:
        lines.append("Superclasses: " + " → ".join(chain))
    facts = _variables(cls, "class-instance variables")
    if cls.traits:
        facts.append("uses: " + cls.traits)
    if cls.category:
        facts.append("category: " + cls.category)
    if facts:
        lines.append("")
        lines.extend(f"- {fact}" for fact in facts)
    if comment is not None:
        lines += ["", "---", "", comment]
    return "\n".join(lines)


def _comment(cls: ClassDef, comment: str | None) -> str:
    lines = [f"{cls.name}, a subclass of {cls.superclass or 'Object'}"]
    lines += [line for line in _variables(cls) if not line.startswith("class instance")]
    if comment is not None:
        lines.append(comment)
    return '"' + "\n".join(lines).strip().replace('"', "'") + '"'
