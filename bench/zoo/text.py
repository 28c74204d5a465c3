"""Real English text from Python's own docstrings, and a BERT WordPiece tokenizer over a shipped vocabulary.

Docstrings are taken per stdlib module, so splits built from disjoint module lists share no source text
(sentences are also de-duplicated across splits). The tokenizer is the standard BERT uncased pipeline (clean,
split CJK, lower-case, strip accents, split punctuation, greedy longest-match WordPiece), written here because
the `tokenizers`/`transformers` packages would try to download.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import io
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from .store import ZooError

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(\"'])")
_CODEISH = re.compile(r"(>>>|\.\.\. |::|==|\(\)|\w\(|\[\w*\]|[{}<>$@#\\_|=]|\s{3,})")


@dataclass(frozen=True)
class ModuleText:
    module: str
    summary: str  # the first line of the module docstring (or the module name)
    paragraphs: tuple[str, ...]  # prose paragraphs: module docstring, then members' docstrings
    members: tuple[tuple[str, str], ...]  # (public member name, its one-line summary)


def _prose_paragraphs(doc: str) -> list[str]:
    out = []
    for block in re.split(r"\n\s*\n", doc):
        lines = [ln.strip() for ln in block.strip().splitlines()]
        if not lines or any(ln.startswith((">>>", "...", "$", "%")) for ln in lines):
            continue
        text = " ".join(lines)
        letters = sum(c.isalpha() or c == " " for c in text)
        if len(text.split()) >= 6 and letters >= 0.85 * len(text):
            out.append(text)
    return out


@lru_cache(maxsize=128)
def module_text(name: str) -> ModuleText:
    """Docstring prose of stdlib module `name` and its public classes, functions and methods."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # `this` prints the Zen on import
            mod = importlib.import_module(name)
    except ImportError as exc:
        raise ZooError(f"stdlib module {name!r} does not import here ({exc})") from None
    doc = inspect.getdoc(mod) or ""
    paragraphs = _prose_paragraphs(doc)
    members: list[tuple[str, str]] = []
    for attr, obj in sorted(vars(mod).items()):
        if attr.startswith("_") or not (inspect.isclass(obj) or inspect.isroutine(obj)):
            continue
        if getattr(obj, "__module__", name) not in (name, mod.__name__):
            continue
        mdoc = inspect.getdoc(obj) or ""
        if not mdoc:
            continue
        members.append((attr, mdoc.strip().splitlines()[0]))
        paragraphs.extend(_prose_paragraphs(mdoc))
        if inspect.isclass(obj):
            for mname, meth in sorted(vars(obj).items()):
                if not mname.startswith("_") and inspect.isroutine(meth):
                    paragraphs.extend(_prose_paragraphs(inspect.getdoc(meth) or ""))
    summary = doc.strip().splitlines()[0] if doc.strip() else f"The {name} module"
    seen: set[str] = set()
    unique = [p for p in paragraphs if not (p in seen or seen.add(p))]
    return ModuleText(name, summary, tuple(unique), tuple(members))


def sentences(modules: Iterable[str], *, min_words: int = 5, max_words: int = 60) -> list[tuple[str, str]]:
    """(module, sentence) pairs of prose sentences, in module order, without code-like fragments."""
    out: list[tuple[str, str]] = []
    for name in modules:
        for para in module_text(name).paragraphs:
            for s in _SENTENCE_END.split(para):
                s = s.strip()
                n = len(s.split())
                if min_words <= n <= max_words and s[0].isupper() and s[-1] in ".!?" and not _CODEISH.search(s):
                    out.append((name, s))
    return out


def disjoint_sentences(groups: dict[str, Sequence[str]], **kw: int) -> dict[str, list[tuple[str, str]]]:
    """Sentences per split from its module list; a sentence already used by an earlier split is dropped."""
    used: set[str] = set()
    out: dict[str, list[tuple[str, str]]] = {}
    for split, modules in groups.items():
        rows = []
        for mod, s in sentences(modules, **kw):
            key = s.lower()
            if key not in used:
                used.add(key)
                rows.append((mod, s))
        out[split] = rows
    return out


# WordPiece ----------------------------------------------------------------------------------------------------

def _is_punct(ch: str) -> bool:
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _is_cjk(cp: int) -> bool:
    return any(lo <= cp <= hi for lo, hi in ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF),
                                             (0x2A700, 0x2B73F), (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF),
                                             (0xF900, 0xFAFF), (0x2F800, 0x2FA1F)))


class WordPiece:
    """BERT uncased tokenizer (BasicTokenizer + WordpieceTokenizer) over a vocab.txt."""

    def __init__(self, vocab_text: str, *, max_length: int = 128, lower: bool = True) -> None:
        tokens = vocab_text.splitlines()
        self.vocab = {t: i for i, t in enumerate(tokens)}
        for special in ("[PAD]", "[UNK]", "[CLS]", "[SEP]"):
            if special not in self.vocab:
                raise ZooError(f"vocabulary has no {special} token; not a BERT WordPiece vocab")
        self.max_length = max_length
        self.lower = lower

    def basic(self, text: str) -> list[str]:
        chars = []
        for ch in text:
            cp = ord(ch)
            if cp == 0 or cp == 0xFFFD or (unicodedata.category(ch).startswith("C") and ch not in "\t\n\r"):
                continue
            if _is_cjk(cp):
                chars.append(f" {ch} ")
            else:
                chars.append(" " if ch.isspace() else ch)
        words = []
        for word in "".join(chars).split():
            if self.lower:
                word = "".join(c for c in unicodedata.normalize("NFD", word.lower())
                               if unicodedata.category(c) != "Mn")
            cur = ""
            for ch in word:
                if _is_punct(ch):
                    if cur:
                        words.append(cur)
                    words.append(ch)
                    cur = ""
                else:
                    cur += ch
            if cur:
                words.append(cur)
        return words

    def wordpiece(self, word: str) -> list[str]:
        if len(word) > 100:
            return ["[UNK]"]
        pieces, start = [], 0
        while start < len(word):
            end, piece = len(word), None
            while start < end:
                sub = word[start:end] if start == 0 else "##" + word[start:end]
                if sub in self.vocab:
                    piece = sub
                    break
                end -= 1
            if piece is None:
                return ["[UNK]"]
            pieces.append(piece)
            start = end
        return pieces

    def tokens(self, text: str) -> list[str]:
        return [p for w in self.basic(text) for p in self.wordpiece(w)]

    def encode(self, text: str) -> list[int]:
        """[CLS] tokens [SEP], truncated to max_length ids."""
        pieces = self.tokens(text)[: self.max_length - 2]
        return [self.vocab["[CLS]"], *(self.vocab[p] for p in pieces), self.vocab["[SEP]"]]


def zen_lines() -> list[str]:
    """The Zen of Python (the `this` module's text, decoded without printing it)."""
    import codecs

    with contextlib.redirect_stdout(io.StringIO()):
        this = importlib.import_module("this")
    lines = codecs.decode(this.s, "rot13").splitlines()
    return [ln.strip() for ln in lines[2:] if ln.strip()]
