"""A small incremental lexical scanner for Smalltalk: brackets, strings, comments, `$x` literals.

Enough to know, at any point of a text, which brackets are open and whether we are inside a
string or a comment; the completion stages use it to find the method around the cursor, to stop
generation at the end of a method, and to keep suggestions balanced. It never fails: any text
scans. It is incremental (one character at a time) so a generation can be watched token by token.
"""

from __future__ import annotations

from dataclasses import dataclass, field

OPENERS = {"[": "]", "(": ")", "{": "}"}
CLOSERS = {"]": "[", ")": "(", "}": "{"}


@dataclass(frozen=True)
class Event:
    """Something seen in code at `offset`."""

    # "open", "close", "bad-close" (closes something opened before the scan began, or the
    # wrong bracket), "period", "bang" (a single `!`: the end of a chunk), "newline".
    kind: str
    offset: int
    char: str


@dataclass
class ScanState:
    # Open brackets, innermost last: (bracket, offset where it was opened).
    stack: list[tuple[str, int]] = field(default_factory=list)
    # Inside a 'string' or a "comment", or neither.
    quote: str | None = None
    # The previous character was `$`, so this one is a character literal.
    after_dollar: bool = False
    # A quote just closed a string or comment; a second one right after is an escaped quote.
    closed_quote: str | None = None
    # A `!` was just seen; a second one right after is an escaped bang (chunk files).
    bang_at: int = -1

    def copy(self) -> ScanState:
        return ScanState(
            list(self.stack), self.quote, self.after_dollar, self.closed_quote, self.bang_at
        )

    @property
    def settled(self) -> bool:
        """Not inside a string, comment or character literal."""
        return self.quote is None and not self.after_dollar


class Scanner:
    def __init__(self, state: ScanState | None = None, base: int = 0) -> None:
        self.state = state.copy() if state is not None else ScanState()
        self.offset = base
        self.events: list[Event] = []

    def feed(self, text: str) -> list[Event]:
        """Scan more text; returns the events it produced (also kept in `self.events`)."""
        start = len(self.events)
        for ch in text:
            self._step(ch)
            self.offset += 1
        return self.events[start:]

    def flush(self) -> list[Event]:
        """End of text: a pending single `!` is a chunk end."""
        st = self.state
        start = len(self.events)
        if st.bang_at >= 0:
            self.events.append(Event("bang", st.bang_at, "!"))
            st.bang_at = -1
        return self.events[start:]

    def _step(self, ch: str) -> None:
        st = self.state
        at = self.offset
        if st.bang_at >= 0:
            pending, st.bang_at = st.bang_at, -1
            if ch == "!":
                return  # `!!`: a literal bang
            self.events.append(Event("bang", pending, "!"))
        if st.closed_quote is not None:
            quote, st.closed_quote = st.closed_quote, None
            if ch == quote:
                st.quote = quote  # doubled quote: still inside
                return
        if ch == "!":
            st.bang_at = at
        if st.after_dollar:
            st.after_dollar = False
        elif st.quote is not None:
            if ch == st.quote:
                st.quote = None
                st.closed_quote = ch
        elif ch in "'\"":
            st.quote = ch
        elif ch == "$":
            st.after_dollar = True
        elif ch in OPENERS:
            st.stack.append((ch, at))
            self.events.append(Event("open", at, ch))
        elif ch in CLOSERS:
            if st.stack and st.stack[-1][0] == CLOSERS[ch]:
                st.stack.pop()
                self.events.append(Event("close", at, ch))
            else:
                self.events.append(Event("bad-close", at, ch))
        elif ch == ".":
            self.events.append(Event("period", at, ch))
        if ch == "\n":
            self.events.append(Event("newline", at, ch))


def scan(text: str, state: ScanState | None = None, base: int = 0) -> tuple[ScanState, list[Event]]:
    """Scan `text` from `state`: the state after it and the events (offsets from `base`)."""
    scanner = Scanner(state, base)
    scanner.feed(text)
    return scanner.state, scanner.events


def balanced_ends(text: str, state: ScanState | None = None, may_close: int = 0) -> list[int]:
    """Every i (ascending) such that text[:i] leaves the scanner where it started: the same
    brackets open, no new string or comment open, and nothing closed from before, except the
    innermost `may_close` brackets open at the start (closers the text after it lacks)."""
    start = state or ScanState()
    scanner = Scanner(start)
    depth = len(start.stack)
    lowest = max(0, depth - may_close)
    ends = [0]
    for i, ch in enumerate(text):
        scanner.feed(ch)
        st = scanner.state
        if scanner.events and scanner.events[-1].kind == "bad-close":
            break
        # A suggestion may close the string or comment the cursor is in, never open one.
        quote_ok = st.quote is None or st.quote == start.quote
        closed_only = lowest <= len(st.stack) <= depth and st.stack == start.stack[: len(st.stack)]
        if closed_only and quote_ok and not st.after_dollar:
            ends.append(i + 1)
    return ends


def is_balanced(text: str, state: ScanState | None = None) -> bool:
    ends = balanced_ends(text, state)
    return ends[-1] == len(text)
