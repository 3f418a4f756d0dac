"""What a prompt may say: banned words and patterns, stripped words, a forced negative prefix
and banned models.

Matching is on a folded copy of the text: Unicode NFKD with combining marks dropped, then
casefold, so "Café", "CAFE" and "café" are one word. A banned word matches as a whole word
(not inside a longer word) — except a word written in a script without spaces between words
(Chinese, Japanese, Thai …): there every occurrence matches, as there is no word boundary to
look for. LoRA names (`<lora:name:weight>`) are split at `_`, `-` and `.` so that a banned word
inside a name is caught; the negative prompt is checked like the prompt.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field

from bot.errors import RefusedError

LORA = re.compile(r"<(?:lora|lyco):([^:>]+)", re.IGNORECASE)
NAME_SEPARATORS = re.compile(r"[_\-.]+")
# Scripts written without spaces between words: a banned word in them matches as a substring.
_SPACELESS = re.compile(
    "[\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3100-\u312f\u3400-\u4dbf"
    "\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f]"
)


class PolicyRefused(RefusedError):
    """The prompt breaks a moderation rule; the sentence names the rule's kind only."""

    key = "policy.refused.word"
    private = True


def fold(text: str) -> str:
    """Text as rules compare it: accents dropped (NFKD without combining marks), casefolded."""
    if text.isascii():
        return text.casefold()  # NFKD leaves ASCII as it is, with no combining marks
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def word_pattern(word: str) -> re.Pattern[str]:
    """The pattern that finds `word` (folded) in folded text: whole words, or anywhere for a
    word in a script without spaces."""
    folded = re.escape(fold(word.strip()))
    if _SPACELESS.search(word):
        return re.compile(folded)
    return re.compile(rf"(?<!\w){folded}(?!\w)")


@dataclass(frozen=True)
class Moderation:
    """The [moderation] table, compiled."""

    banned_words: tuple[str, ...] = ()
    banned_regex: tuple[re.Pattern[str], ...] = ()
    strip_words: tuple[str, ...] = ()
    negative_prefix: str = ""
    banned_models: tuple[str, ...] = ()
    _banned: tuple[re.Pattern[str], ...] = field(default=(), repr=False)
    _strip: tuple[re.Pattern[str], ...] = field(default=(), repr=False)

    @classmethod
    def build(
        cls,
        *,
        banned_words: Iterable[str] = (),
        banned_regex: Iterable[re.Pattern[str]] = (),
        strip_words: Iterable[str] = (),
        negative_prefix: str = "",
        banned_models: Iterable[str] = (),
    ) -> Moderation:
        """Compile the word lists once (at load)."""
        words = tuple(w for w in banned_words if w.strip())
        strip = tuple(w for w in strip_words if w.strip())
        return cls(
            banned_words=words,
            banned_regex=tuple(banned_regex),
            strip_words=strip,
            negative_prefix=negative_prefix.strip(),
            banned_models=tuple(fold(m) for m in banned_models if m.strip()),
            _banned=tuple(word_pattern(w) for w in words),
            _strip=tuple(word_pattern(w) for w in strip),
        )

    def cleaned(self, prompt: str) -> str:
        """The prompt without the strip_words (whole words, case- and accent-insensitive),
        spaces and commas left tidy."""
        if not self._strip:
            return prompt
        kept = prompt
        for pattern in self._strip:
            kept = _remove(kept, pattern)
        kept = re.sub(r"\s*,(\s*,)+", ",", kept)
        return re.sub(r"\s{2,}", " ", kept).strip(" ,")

    def check(self, prompt: str, negative: str, model: str | None) -> None:
        """Raise PolicyRefused naming the kind of rule the request breaks."""
        if not (self._banned or self.banned_regex or self.banned_models):
            return  # no rules: nothing to fold
        texts = [prompt, negative]
        texts += [" ".join(NAME_SEPARATORS.split(n)) for n in LORA.findall(prompt)]
        folded = [fold(text) for text in texts]
        for pattern in self._banned:
            if any(pattern.search(text) for text in folded):
                raise PolicyRefused("policy.refused.word")
        for regex in self.banned_regex:
            if any(regex.search(text) for text in (*texts, *folded)):
                raise PolicyRefused("policy.refused.pattern")
        if model and self.banned_models:
            name = fold(model)
            if any(banned == name or banned in _model_names(name) for banned in self.banned_models):
                raise PolicyRefused("policy.refused.model")

    def negative(self, negative: str) -> str:
        """The negative prompt with the operator's prefix first (once)."""
        prefix = self.negative_prefix
        if not prefix or negative.startswith(prefix):
            return negative
        return f"{prefix}, {negative}" if negative else prefix


def _remove(text: str, pattern: re.Pattern[str]) -> str:
    """`text` without the matches `pattern` finds in its folded copy (positions agree when
    folding kept the length, the usual case; otherwise the folded text is what is kept)."""
    folded = fold(text)
    if len(folded) != len(text):
        return pattern.sub("", folded)
    out, last = [], 0
    for match in pattern.finditer(folded):
        out.append(text[last : match.start()])
        last = match.end()
    out.append(text[last:])
    return "".join(out)


def _model_names(folded: str) -> set[str]:
    """The ways a checkpoint title names one model: "dir/name.safetensors [hash]" → also
    "name.safetensors" and "name"."""
    title = folded.split(" [", 1)[0].strip()
    base = title.replace("\\", "/").rsplit("/", 1)[-1]
    return {title, base, base.rsplit(".", 1)[0]}
