"""Pure parts of retrieval: units and hashes, selector words, cursor analysis, and the context
builder without an embedding index (class, siblings, implementors, recent; budget; no dupes)."""

from __future__ import annotations

from server.completion.cursor import CursorAnalysis, analyse_cursor, pattern_selector
from server.project_model import ProjectModel
from server.retrieval.context import approximate_tokens, build_context, sent_selectors
from server.retrieval.lexical import LexicalIndex, selector_words
from server.retrieval.units import units_of_file
from smalltalk_grammar import format_of, parse


def analyse(text: str, offset: int, path: str | None = None) -> CursorAnalysis:
    """The one cursor analysis, as retrieval's build_context makes it without one given."""
    return analyse_cursor(text, offset, format_of(text, path), path)

ACCOUNT = '''"
I am a bank account with a balance.
"
Class {
	#name : #Account,
	#superclass : #Object,
	#instVars : [ 'balance', 'owner' ],
	#category : #Bank
}

{ #category : #accessing }
Account >> balance [
	^ balance ifNil: [ 0 ]
]

{ #category : #operations }
Account >> deposit: anAmount [
	"Add anAmount to the balance"
	balance := self balance + anAmount
]

{ #category : #operations }
Account >> withdraw: anAmount [
	anAmount > self balance ifTrue: [ ^ self error: 'insufficient funds' ].
	balance := self balance - anAmount
]
'''

SAVINGS = '''Class {
	#name : #SavingsAccount,
	#superclass : #Account,
	#instVars : [ 'rate' ],
	#category : #Bank
}

{ #category : #operations }
SavingsAccount >> addInterest [
	self deposit: self balance * rate
]

{ #category : #operations }
SavingsAccount >> withdraw: anAmount [
	^ super withdraw: anAmount
]
'''

LEDGER = '''Class {
	#name : #Ledger,
	#superclass : #Object,
	#instVars : [ 'entries' ],
	#category : #Bank
}

{ #category : #adding }
Ledger >> at: aKey put: aValue [
	^ entries at: aKey put: aValue
]
'''


def _project() -> ProjectModel:
    return ProjectModel([
        parse(ACCOUNT, "/ws/Bank/Account.class.st"),
        parse(SAVINGS, "/ws/Bank/SavingsAccount.class.st"),
        parse(LEDGER, "/ws/Bank/Ledger.class.st"),
    ])


def test_units_one_per_method_and_class_with_header() -> None:
    units = units_of_file(parse(ACCOUNT, "/ws/Bank/Account.class.st"), "/ws")
    kinds = sorted((u.kind, u.selector) for u in units)
    assert kinds == [("class", ""), ("method", "balance"), ("method", "deposit:"),
                     ("method", "withdraw:")]
    deposit = next(u for u in units if u.selector == "deposit:")
    assert deposit.path == "Bank/Account.class.st"
    assert deposit.text.startswith("Account >> deposit: [operations]\n")
    assert "balance := self balance + anAmount" in deposit.text
    cls = next(u for u in units if u.kind == "class")
    assert "I am a bank account" in cls.text and "balance owner" in cls.text


def test_unit_hash_changes_only_for_the_edited_method() -> None:
    before = {u.key: u.hash for u in units_of_file(parse(ACCOUNT, "/ws/A.st"), "/ws")}
    edited = ACCOUNT.replace("balance + anAmount", "balance + anAmount abs")
    after = {u.key: u.hash for u in units_of_file(parse(edited, "/ws/A.st"), "/ws")}
    assert before.keys() == after.keys()
    changed = [k for k in before if before[k] != after[k]]
    assert changed == ["method|A.st|Account|instance|deposit:"]


def test_selector_words_and_lexical_ranking() -> None:
    assert selector_words("rightsFor:") == ["rights", "for"]
    assert selector_words("at:put:") == ["at", "put"]
    assert selector_words("asHTTPString") == ["as", "http", "string"]
    assert selector_words("+") == []
    lexical = LexicalIndex()
    for key, selector in [("a", "rightsFor:"), ("b", "rights"), ("c", "printOn:"),
                          ("d", "addRight:"), ("e", "rightsFor:")]:
        lexical.add(key, selector)
    lexical.remove("e")
    ranked = [key for key, _ in lexical.search(["rightsFor:"], 10)]
    assert ranked[0] == "a"  # the exact selector first
    assert set(ranked) == {"a", "b"}  # "addRight:" has "right", not "rights"
    assert "c" not in ranked and "e" not in ranked


def test_pattern_selector() -> None:
    assert pattern_selector("at: index put: value") == "at:put:"
    assert pattern_selector("+ other") == "+"
    assert pattern_selector("size") == "size"


def test_cursor_in_tonel_method() -> None:
    text = ACCOUNT
    offset = text.index("balance := self balance - anAmount") + len("balance := self bal")
    cursor = analyse(text, offset, "/ws/Bank/Account.class.st")
    facts, sends = cursor.facts, cursor.sends
    assert (facts.class_name, facts.side, facts.selector) == ("Account", "instance", "withdraw:")
    assert facts.category == "operations"
    assert sends.typed == "bal"
    # The similarity query: the pattern and the code just before the cursor, short.
    assert sends.window.startswith("withdraw: anAmount [")
    assert sends.window.endswith("balance := self bal") and len(sends.window) < 250
    sent = sent_selectors(sends, {"error:", "ifTrue:", "balance", ">"})
    assert sent[:2] == ["ifTrue:", "error:"] or sent[:2] == ["error:", "ifTrue:"]
    assert "balance" in sent


def test_cursor_joins_keyword_parts_into_known_selectors() -> None:
    text = LEDGER
    offset = text.index("^ entries at: aKey") + 2
    cursor = analyse(text, offset)
    assert sent_selectors(cursor.sends, {"at:put:", "at:"}) == ["at:put:", "at:"]


def test_cursor_in_chunk_and_bracket_and_filetree() -> None:
    chunk = ("Object subclass: #Foo\n\tinstanceVariableNames: 'a'\n\tclassVariableNames: ''\n"
             "\tpackage: 'X'!\n\n!Foo class methodsFor: 'instance creation'!\nnew\n"
             "\t^ super new initialize! !\n")
    facts = analyse(chunk, chunk.index("initialize")).facts
    assert (facts.class_name, facts.side, facts.selector, facts.category) == (
        "Foo", "class", "new", "instance creation")
    bracket = "Object subclass: Foo [\n    | a |\n    bar [\n        ^ a size\n    ]\n]\n"
    assert analyse(bracket, bracket.index("size")).facts.class_name == "Foo"
    filetree = "accessing\nname\n\t^ name"
    facts = analyse(filetree, len(filetree), "/ws/X.package/Foo.class/instance/name.st").facts
    assert (facts.class_name, facts.selector, facts.category) == ("Foo", "name", "accessing")


def test_context_without_index_has_class_siblings_implementors_and_recent() -> None:
    project = _project()
    text = SAVINGS
    offset = text.index("self deposit: self balance") + len("self deposit: self balance")
    recent = [m for _, m in project.methods_of("Ledger")]
    ctx = build_context(project, "/ws/Bank/SavingsAccount.class.st", text, offset, 2000,
                        None, recent)
    assert (ctx.class_name, ctx.selector) == ("SavingsAccount", "addInterest")
    sources = [item.source for item in ctx.items]
    assert sources[0] == "class"
    assert sources == sorted(sources, key=["class", "siblings", "implementors", "similar",
                                           "lexical", "recent"].index)
    cls = ctx.items[0]
    assert "SavingsAccount < Account < Object" in cls.text
    assert "inherited instance variables: balance owner" in cls.text
    assert [i.title for i in ctx.by_source("siblings")] == [
        "SavingsAccount >> withdraw: [operations]"]
    implementors = [i.title for i in ctx.by_source("implementors")]
    assert "Account >> deposit: [operations]" in implementors
    assert "Account >> balance [accessing]" in implementors
    assert [i.title for i in ctx.by_source("recent")] == ["Ledger >> at:put: [adding]"]
    # No item twice, never the method being edited, and within the budget.
    assert len({i.title for i in ctx.items}) == len(ctx.items)
    assert all("addInterest" not in i.title for i in ctx.items)
    assert ctx.tokens == sum(i.tokens for i in ctx.items) <= 2000


def test_context_respects_a_small_budget_and_a_token_counter() -> None:
    project = _project()
    text = SAVINGS
    offset = text.index("self deposit:") + 5
    small = build_context(project, "/ws/Bank/SavingsAccount.class.st", text, offset, 60)
    assert 0 < small.tokens <= 60
    words = build_context(project, "/ws/Bank/SavingsAccount.class.st", text, offset, 60,
                          count_tokens=lambda s: len(s.split()))
    assert words.tokens <= 60
    assert len(words.items) > len(small.items)  # words are cheaper than chars / 4
    assert approximate_tokens("abcdefgh") == 2


def test_context_for_text_that_does_not_parse() -> None:
    project = _project()
    text = SAVINGS + "\n{ #category : #operations }\nSavingsAccount >> close [\n\tself withdr"
    ctx = build_context(project, "/ws/Bank/SavingsAccount.class.st", text, len(text), 1000)
    assert ctx.class_name == "SavingsAccount" and ctx.selector == "close"
    # The selector being typed: the class's own implementor is already a sibling, so the
    # inherited one is the implementor item (each method appears once).
    assert [i.title for i in ctx.by_source("implementors")] == [
        "Account >> withdraw: [operations]"]
    assert [i.title for i in ctx.items].count("SavingsAccount >> withdraw: [operations]") == 1
    empty = build_context(ProjectModel(), "/nowhere.st", "", 0, 100)
    assert empty.items == []


def test_lexical_search_with_common_words_is_bounded_and_deterministic() -> None:
    def build(order: list[int]) -> LexicalIndex:
        lexical = LexicalIndex()
        for i in order:
            lexical.add(f"k{i:04d}", f"atValue{i}:")  # "at" and "value" in 3000 selectors
        lexical.add("rare", "atRareThing:")
        return lexical

    forward = build(list(range(3000)))
    backward = build(list(reversed(range(3000))))
    assert forward.search(["atRareThing:"], 3)[0][0] == "rare"
    common = forward.search(["atValue:"], 5)
    assert len(common) == 5 and common == backward.search(["atValue:"], 5)


def test_context_items_carry_their_files_own_form() -> None:
    """Repository-layout prompts show an item as its file writes it: a Tonel method with its
    `Class >> pattern [` header (no category line: it cost tokens and bought no score), a
    Tonel class definition; both parse there."""
    import tree_sitter
    import tree_sitter_pharo

    project = _project()
    text = SAVINGS
    offset = text.index("self deposit: self balance") + len("self deposit: self balance")
    ctx = build_context(project, "/ws/Bank/SavingsAccount.class.st", text, offset, 2000)
    deposit = next(i for i in ctx.by_source("implementors") if "deposit:" in i.title)
    assert deposit.code.startswith("Account >> deposit: anAmount [")
    assert deposit.code.endswith("\n]")
    cls = ctx.items[0]
    assert cls.source == "class" and "#name : 'SavingsAccount'" in cls.code
    parser = tree_sitter.Parser(tree_sitter.Language(tree_sitter_pharo.language()))
    tree = parser.parse(f"{cls.code}\n\n{deposit.code}\n".encode())
    assert not tree.root_node.has_error
