"""Where each reference stands in a bash script, so it can be replaced by a form bash reads
as exactly the value (see :func:`wfe_yaml.interpolation.shell_safe`).

The scanner follows bash's quoting and the contexts in which bash treats text differently:
single, double and ANSI-C (``$'...'``) quotes, command substitutions (``$(...)``, with
``case`` patterns inside), here-documents, comments, and the arithmetic contexts in which bash
evaluates a value as an expression (and so runs ``$(...)`` hidden in ``a[$(cmd)]``). Where no
reference form is safe (backquotes, ``${...}`` words, quoted here-documents, a variable name
given to ``[[ -v ]]``) it says why, and the loader refuses the file. It is deliberately
conservative: text it cannot place makes the reference refused, never guessed.
"""

from __future__ import annotations

import enum
import re
from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from collections.abc import Sequence


class Place(enum.Enum):
    """The context of a reference, which decides the form it is replaced by."""

    #: Unquoted word (or comment): ``"${V}"``.
    WORD = "word"
    #: Inside double quotes: ``${V}``.
    DOUBLE = "double"
    #: Inside single quotes: ``'"${V}"'`` (closes and reopens them).
    SINGLE = "single"
    #: Inside ``$'...'``: ``'"${V}"$'`` (reopens an ANSI-C quote, so escapes after it work).
    ANSI_C = "ansi-c"
    #: In the body of a here-document with an unquoted delimiter: ``${V}`` (quotes there
    #: would be literal text; the body is neither split nor globbed).
    HEREDOC = "heredoc"
    #: Directly inside ``$(( ))``, ``(( ))`` or ``$[ ]``: ``${V}`` (always an integer).
    ARITHMETIC = "arithmetic"
    #: Nowhere safe; :attr:`Spot.refused` says why.
    REFUSED = "refused"


@attrs.frozen
class Spot:
    """Where one reference stands: its :class:`Place`; whether bash evaluates it as
    arithmetic (so its value must be an integer); for a refused one, why."""

    place: Place
    refused: str = ""
    integer: bool = False

    def as_integer(self) -> Spot:
        """This spot in an arithmetic context (a refused one stays refused)."""
        if self.place == Place.REFUSED:
            return self
        return Spot(self.place, integer=True)


_INTEGER = Spot(Place.ARITHMETIC, integer=True)


ARITHMETIC_HINT = (
    "in an arithmetic context ($(( )), (( )), let, [[ -eq ]], a[...], declare -i): bash "
    "evaluates the value as an expression, and an expression can run commands (a value like "
    "a[$(cmd)]); declare the input as `integer` (its value is checked before the step runs), "
    "or copy it into a variable and check it first: "
    'n="${{ inputs.n }}"; [[ $n =~ ^-?[0-9]+$ ]] || exit 1'
)
_BACKQUOTE = "inside backquotes `...`, whose quoting cannot be followed safely; use $(...)"
_PARAMETER = (
    "inside a ${...} parameter expansion, where quoting and arithmetic (offsets, "
    "subscripts) depend on the operator; copy it into a variable first: "
    'v="${{ inputs.x }}"; echo "${other:-$v}"'
)
_QUOTED_HEREDOC = (
    "in a here-document with a quoted delimiter (<<'EOF'), where nothing is expanded; use "
    "an unquoted delimiter (<<EOF), where it becomes the value"
)
_DELIMITER = "in a here-document delimiter; a delimiter must be fixed text"
_VARIABLE_NAME = (
    "used as a variable name ([[ -v ]], read, printf -v, declare, a declare -n target), "
    "which bash evaluates (a name like a[$(cmd)] runs cmd); use a fixed name"
)
_TOO_DEEP = "nested too deeply to follow"
_UNFOLLOWED = "in text the scanner cannot follow (e.g. right after a backslash)"

_ARITHMETIC_OPERATORS = frozenset(("-eq", "-ne", "-lt", "-le", "-gt", "-ge"))
_DECLARERS = frozenset(("declare", "local", "typeset", "readonly", "export"))
#: Words after which a command still starts (reserved words and assignment prefixes).
_KEEP_COMMAND_START = frozenset(
    ("!", "then", "do", "else", "elif", "if", "while", "until", "{", "}", "time")
)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ASSIGNMENT = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?:\[[^\]]*\])?\+?=")
_MAX_DEPTH = 50
#: Builtins that take variable names, where a subscript (``a[...]``) is arithmetic.
_NAME_TAKERS = _DECLARERS | {"unset", "read", "printf", "mapfile", "readarray", "wait"}
_SUBSCRIPTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\[")


def _unquoted(word: str) -> str:
    """``word`` without quote characters (enough to see ``"a[..."`` as ``a[...``)."""
    return word.replace('"', "").replace("'", "").replace("\\", "")


@attrs.define
class _Command:
    """What the scanner knows of the simple command being read."""

    start: bool = True
    let: bool = False
    declarer: bool = False
    integer_flag: bool = False
    for_keyword: bool = False
    #: The command's name (its first word that is no assignment), once read.
    name: str = ""
    #: ``declare -n``: the values assigned are variable names.
    nameref_flag: bool = False
    previous_argument: str = ""
    #: The next word is a redirection's target.
    redirect_target: bool = False
    double_bracket: bool = False
    previous_word: str = ""
    previous_spots: list[int] = attrs.Factory(list)


@attrs.define
class _Heredoc:
    delimiter: str
    strip_tabs: bool
    quoted: bool


class _Scanner:
    def __init__(self, text: str, spans: Sequence[tuple[int, int]]) -> None:
        self.text = text
        self.limit = len(text)
        self.pos = 0
        self.starts = {start: (index, end) for index, (start, end) in enumerate(spans)}
        self.spots: list[Spot | None] = [None] * len(spans)
        self.pending: list[_Heredoc] = []
        self.depth = 0
        self.command = _Command()
        self.parens = 0
        self.cases = 0
        self.case_in = False
        self.word_start = -1
        #: Names given the integer attribute (``declare -i n``): assigning to them evaluates
        #: arithmetic. Kept for the whole script, since a loop may assign before it declares.
        self.integer_names: set[str] = set()
        #: Spots in assignments, by the name assigned: arithmetic if the name is an integer.
        self.assignments: list[tuple[int, str]] = []
        #: The references recorded in the word being read, per command frame (innermost
        #: last): whether a word is arithmetic is often known only when it ends.
        self.words: list[list[int]] = [[]]
        #: Inside a subscript: every reference recorded is arithmetic, quoted or not.
        self.arithmetic_word = False

    # -- helpers ---------------------------------------------------------------------------
    def at(self, prefix: str) -> bool:
        return self.text.startswith(prefix, self.pos) and self.pos + len(prefix) <= self.limit

    def record(self, spot: Spot) -> int:
        """Record the reference at ``pos`` and move past it; its index."""
        index, end = self.starts[self.pos]
        if self.arithmetic_word:
            spot = spot.as_integer()
        if self.spots[index] is None:
            self.spots[index] = spot
        self.words[-1].append(index)
        self.pos = end
        return index

    def mark_integer(self, indexes: Sequence[int]) -> None:
        """The references ``indexes`` stand where bash evaluates arithmetic."""
        for index in indexes:
            current = self.spots[index]
            if current is not None:
                self.spots[index] = current.as_integer()

    def refuse(self, indexes: Sequence[int], reason: str) -> None:
        for index in indexes:
            current = self.spots[index]
            if current is None or current.place != Place.REFUSED:
                self.spots[index] = Spot(Place.REFUSED, reason)

    def enter(self) -> bool:
        self.depth += 1
        return self.depth <= _MAX_DEPTH

    def refuse_rest(self, reason: str) -> None:
        """Refuse every reference from ``pos`` to the limit (text the scanner cannot follow)."""
        for start, (index, _) in self.starts.items():
            if self.pos <= start < self.limit and self.spots[index] is None:
                self.spots[index] = Spot(Place.REFUSED, reason)
        self.pos = self.limit

    # -- quotes ------------------------------------------------------------------------------
    def single(self, spot: Spot) -> None:
        """After an opening ``'`` (``spot`` SINGLE) or ``$'`` (ANSI_C); ``spot`` is what
        references inside get."""
        while self.pos < self.limit:
            if self.pos in self.starts:
                self.record(spot)
                continue
            char = self.text[self.pos]
            if char == "\\" and spot.place == Place.ANSI_C:
                self.pos += 2
                continue
            self.pos += 1
            if char == "'":
                return

    def backquote(self) -> None:
        """After an opening backquote: every reference inside is refused."""
        while self.pos < self.limit:
            if self.pos in self.starts:
                self.record(Spot(Place.REFUSED, _BACKQUOTE))
                continue
            char = self.text[self.pos]
            self.pos += 2 if char == "\\" else 1
            if char == "`":
                return

    def expansion(self) -> bool:
        """A ``$``-expansion or backquote at ``pos`` (in any context but single quotes);
        ``False`` when there is none."""
        if self.at("$((") or self.at("$["):
            closer = "))" if self.at("$((") else "]"
            self.pos += 3 if closer == "))" else 2
            self.arithmetic(closer)
        elif self.at("$("):
            self.pos += 2
            # A command substitution is a new context: none of the enclosing word's.
            saved = self.arithmetic_word
            self.arithmetic_word = False
            self.words.append([])
            self.commands(closer=")")
            self.words.pop()
            self.arithmetic_word = saved
        elif self.at("${") and self.pos not in self.starts:
            self.pos += 2
            self.parameter()
        elif self.at("`"):
            self.pos += 1
            self.backquote()
        else:
            return False
        return True

    def double(self, *, heredoc: bool = False) -> None:
        """After an opening ``"`` (or at the start of a here-document body, where ``"`` is
        plain text and the body ends at the limit)."""
        place = Place.HEREDOC if heredoc else Place.DOUBLE
        while self.pos < self.limit:
            if self.pos in self.starts:
                self.record(Spot(place))
                continue
            if self.expansion():
                continue
            char = self.text[self.pos]
            if char == "\\":
                self.pos += 2
                continue
            self.pos += 1
            if char == '"' and not heredoc:
                return

    def parameter(self) -> None:
        """After ``${``: references inside are refused (nested ``$(...)`` aside)."""
        if not self.enter():
            self.refuse_rest(_TOO_DEEP)
            return
        while self.pos < self.limit:
            if self.pos in self.starts:
                self.record(Spot(Place.REFUSED, _PARAMETER))
                continue
            if self.expansion():
                continue
            char = self.text[self.pos]
            if char == "\\":
                self.pos += 2
                continue
            self.pos += 1
            if char == "}":
                break
            if char == '"':
                self.double_in_parameter()
            elif char == "'":
                self.single(Spot(Place.REFUSED, _PARAMETER))
        self.depth -= 1

    def double_in_parameter(self) -> None:
        while self.pos < self.limit:
            if self.pos in self.starts:
                self.record(Spot(Place.REFUSED, _PARAMETER))
                continue
            if self.expansion():
                continue
            char = self.text[self.pos]
            self.pos += 2 if char == "\\" else 1
            if char == '"':
                return

    def arithmetic(self, closer: str) -> None:
        """After ``$((``, ``((`` or ``$[``: up to the matching ``closer``."""
        if not self.enter():
            self.refuse_rest(_TOO_DEEP)
            return
        opener = "(" if closer == "))" else "["
        depth = 0
        while self.pos < self.limit:
            if self.pos in self.starts:
                self.record(_INTEGER)
                continue
            if self.expansion():
                continue
            char = self.text[self.pos]
            if char == "\\":
                self.pos += 2
                continue
            if depth == 0 and self.at(closer):
                self.pos += len(closer)
                break
            self.pos += 1
            if char == opener:
                depth += 1
            elif char == closer[0]:
                depth -= 1
            elif char in "\"'":
                # Quotes inside arithmetic are removed, the text stays arithmetic.
                continue
        self.depth -= 1

    def subscript(self) -> None:
        """After the ``[`` of ``name[``: indexed arrays evaluate the subscript as
        arithmetic, so references in it are arithmetic (associative ones cannot be told
        apart here)."""
        depth = 0
        saved = self.arithmetic_word
        self.arithmetic_word = True
        try:
            self.subscript_text(depth)
        finally:
            self.arithmetic_word = saved

    def subscript_text(self, depth: int) -> None:
        while self.pos < self.limit:
            if self.pos in self.starts:
                self.record(_INTEGER)
                continue
            if self.expansion():
                continue
            char = self.text[self.pos]
            if char == "\\":
                self.pos += 2
                continue
            self.pos += 1
            if char == "[":
                depth += 1
            elif char == "]":
                if depth == 0:
                    return
                depth -= 1
            elif char == '"':
                self.double()
            elif char == "'":
                self.single(Spot(Place.SINGLE))
            elif char in " \t\n;&|":
                # Not a subscript after all (``[`` in a glob); the word ended.
                self.pos -= 1
                return

    # -- here-documents ----------------------------------------------------------------------
    def heredoc_operator(self) -> None:
        """After ``<<`` or ``<<-``: read the delimiter word."""
        strip_tabs = self.at("-")
        if strip_tabs:
            self.pos += 1
        while self.pos < self.limit and self.text[self.pos] in " \t":
            self.pos += 1
        delimiter: list[str] = []
        quoted = False
        while self.pos < self.limit:
            if self.pos in self.starts:
                self.record(Spot(Place.REFUSED, _DELIMITER))
                continue
            char = self.text[self.pos]
            if char in " \t\n;&|<>()":
                break
            self.pos += 1
            if char == "\\":
                quoted = True
                if self.pos < self.limit:
                    delimiter.append(self.text[self.pos])
                    self.pos += 1
            elif char in "'\"":
                quoted = True
                close = self.text.find(char, self.pos, self.limit)
                close = self.limit if close == -1 else close
                delimiter.append(self.text[self.pos : close])
                self.pos = close + 1
            else:
                delimiter.append(char)
        self.pending.append(_Heredoc("".join(delimiter), strip_tabs, quoted))

    def heredoc_bodies(self) -> None:
        """At the start of the line after a command line with here-documents: their bodies."""
        pending, self.pending = self.pending, []
        for heredoc in pending:
            start = self.pos
            end = self.limit
            line_start = start
            while line_start < self.limit:
                newline = self.text.find("\n", line_start, self.limit)
                line_end = self.limit if newline == -1 else newline
                line = self.text[line_start:line_end]
                if (line.lstrip("\t") if heredoc.strip_tabs else line) == heredoc.delimiter:
                    end = line_start
                    after = line_end + 1 if newline != -1 else self.limit
                    break
                line_start = line_end + 1
            else:
                after = self.limit
            if heredoc.quoted:
                saved = self.limit
                self.limit = end
                self.refuse_rest(_QUOTED_HEREDOC)
                self.limit = saved
            else:
                saved = self.limit
                self.limit = end
                self.double(heredoc=True)
                self.limit = saved
            self.pos = min(after, self.limit)

    # -- commands ----------------------------------------------------------------------------
    def commands(self, closer: str | None) -> None:
        """Command text up to ``closer`` (``)`` of ``$(``) or the limit."""
        if not self.enter():
            self.refuse_rest(_TOO_DEEP)
            return
        saved = (self.command, self.parens, self.cases, self.case_in, self.word_start)
        self.command = _Command()
        self.parens = 0
        self.cases = 0
        self.case_in = False
        self.word_start = -1
        try:
            self.command_text(closer)
        finally:
            (self.command, self.parens, self.cases, self.case_in, self.word_start) = saved
            self.depth -= 1

    def command_text(self, closer: str | None) -> None:
        while self.pos < self.limit:
            if self.pos in self.starts:
                self.begin_word()
                self.record(Spot(Place.WORD))
                continue
            char = self.text[self.pos]
            if char in " \t":
                self.finish_word()
                self.pos += 1
            elif char == "\n":
                self.finish_word()
                self.pos += 1
                if not self.command.double_bracket:
                    self.command = _Command()
                if self.pending:
                    self.heredoc_bodies()
            elif char == "#" and self.word_start < 0:
                # A comment runs to the end of the line; a reference there does nothing.
                newline = self.text.find("\n", self.pos, self.limit)
                comment_end = self.limit if newline == -1 else newline
                while self.pos < comment_end:
                    if self.pos in self.starts:
                        self.record(Spot(Place.WORD))
                    else:
                        self.pos += 1
                self.pos = comment_end
            elif char in ";&|":
                self.finish_word()
                if self.command.double_bracket and char in "&|":
                    self.pos += 2 if self.text[self.pos : self.pos + 2] in ("&&", "||") else 1
                    self.command.previous_word, self.command.previous_spots = "", []
                else:
                    self.command = _Command()
                    self.pos += 1
            elif char == "(":
                command = self.command
                if self.at("((") and self.word_start < 0 and (command.start or command.for_keyword):
                    self.pos += 2
                    self.arithmetic("))")
                    command.start = False
                    continue
                self.finish_word()
                self.parens += 1
                self.pos += 1
                self.command.start = True
            elif char == ")":
                self.finish_word()
                self.pos += 1
                if self.parens:
                    self.parens -= 1
                elif not self.cases and closer == ")":
                    return
                # Else a `case` pattern's closing parenthesis.
                self.command = _Command()
            elif char == "<" and self.at("<<") and not self.at("<<<"):
                self.drop_file_descriptor()
                self.pos += 2
                self.heredoc_operator()
            elif char in "<>" or (char == "&" and self.at("&>")):
                self.redirection()
            else:
                self.word_char(char)
        self.finish_word()

    def drop_file_descriptor(self) -> None:
        """Before a redirection: a word of digits right before it (``2>``) is its file
        descriptor, not a word of the command."""
        if self.word_start >= 0 and self.text[self.word_start : self.pos].isdigit():
            self.word_start = -1
        else:
            self.finish_word()

    def redirection(self) -> None:
        """At ``<``, ``>``, ``<<<``, ``&>`` and the like: the next word is the target (a
        file name or here-string), not an argument. Inside ``[[ ]]`` they compare."""
        self.drop_file_descriptor()
        while self.pos < self.limit and self.text[self.pos] in "<>&|":
            self.pos += 1
        if not self.command.double_bracket:
            self.command.redirect_target = True

    def word_char(self, char: str) -> None:
        self.begin_word()
        if self.expansion():
            return
        self.pos += 1
        if char == "\\":
            self.pos += 1
        elif char == "'":
            self.single(Spot(Place.SINGLE))
        elif char == '"':
            self.double()
        elif char == "$" and self.at("'"):
            self.pos += 1
            self.single(Spot(Place.ANSI_C))
        elif char == "$" and self.at('"'):
            self.pos += 1
            self.double()
        elif char == "[" and _NAME.fullmatch(self.text[self.word_start : self.pos - 1]):
            self.subscript()

    def begin_word(self) -> None:
        if self.word_start < 0:
            self.word_start = self.pos
            self.words[-1] = []

    def finish_word(self) -> None:
        """The word that ends at ``pos``: keywords, and whether its references are
        arithmetic (known only now: ``n="${{ x }}"`` after ``declare -i``, ``let``)."""
        if self.word_start < 0:
            return
        word = self.text[self.word_start : self.pos]
        spots = self.words[-1]
        self.word_start, self.words[-1] = -1, []
        command = self.command
        if command.redirect_target:
            command.redirect_target = False
            return
        assignment = _ASSIGNMENT.match(word)
        if command.name and spots:
            self.name_argument(command, word, spots)
        if (
            command.let
            or (assignment and command.declarer and command.integer_flag)
            or (command.name in _NAME_TAKERS and _SUBSCRIPTED.match(_unquoted(word)))
        ):
            # ``unset "a[$V]"``, ``read 'a[$V]'``: the subscript of a name is arithmetic.
            self.mark_integer(spots)
        elif assignment and (command.start or command.declarer):
            self.assignments.extend((index, assignment.group(1)) for index in spots)
        if command.double_bracket:
            self.bracket_word(command, word, spots)
            return
        if command.start:
            if word == "case":
                self.cases += 1
                self.case_in = True
                command.start = False
            elif word == "esac" and self.cases:
                self.cases -= 1
                command.start = False
            elif word == "let":
                command.let = True
                command.start = False
            elif word in _DECLARERS:
                command.declarer = True
                command.start = False
                command.name = word
            elif word == "[[":
                command.double_bracket = True
                command.start = False
            elif word == "for":
                command.for_keyword = True
                command.start = False
            elif word not in _KEEP_COMMAND_START and not assignment:
                command.start = False
                command.name = word
        elif self.case_in and word == "in":
            self.case_in = False
            command.start = True
        elif command.declarer:
            if word.startswith("-"):
                command.integer_flag |= "i" in word
                command.nameref_flag |= "n" in word
            elif command.integer_flag:
                name = _NAME.match(word)
                if name:
                    self.integer_names.add(name.group(0))
        command.previous_argument = word

    def name_argument(self, command: _Command, word: str, spots: list[int]) -> None:
        """References in an argument that the command takes as a variable name (which bash
        evaluates, subscript and all) are refused."""
        previous = command.previous_argument
        option_value = ""
        if command.name == "read":
            option_value = "dinNptu"
        elif command.name in ("mapfile", "readarray"):
            option_value = "dnOsuCc"
        if option_value:
            takes_value = previous.startswith("-") and previous[-1:] in option_value
            if not word.startswith("-") and not takes_value:
                self.refuse(spots, _VARIABLE_NAME)
        elif (command.name == "printf" and previous == "-v") or (
            command.declarer
            and not word.startswith("-")
            and (command.nameref_flag or not _ASSIGNMENT.match(_unquoted(word)))
        ):
            self.refuse(spots, _VARIABLE_NAME)

    def bracket_word(self, command: _Command, word: str, spots: list[int]) -> None:
        """A finished word inside ``[[ ... ]]``: operands of ``-eq`` and the like are
        arithmetic (the left one is known only now)."""
        if word == "]]":
            command.double_bracket = False
            command.start = False
            return
        if command.previous_word == "-v":
            self.refuse(spots, _VARIABLE_NAME)
        elif word in _ARITHMETIC_OPERATORS:
            self.mark_integer(command.previous_spots)
        elif command.previous_word in _ARITHMETIC_OPERATORS:
            self.mark_integer(spots)
        command.previous_word, command.previous_spots = word, list(spots)

    def finish(self) -> list[Spot]:
        for index, name in self.assignments:
            spot = self.spots[index]
            if name in self.integer_names and spot is not None:
                self.spots[index] = spot.as_integer()
        return [
            spot if spot is not None else Spot(Place.REFUSED, _UNFOLLOWED) for spot in self.spots
        ]


def classify(script: str, spans: Sequence[tuple[int, int]]) -> list[Spot]:
    """Where each reference (``spans``: start and end offsets, in order) stands in
    ``script``, read as bash reads it."""
    scanner = _Scanner(script, spans)
    scanner.commands(closer=None)
    return scanner.finish()
