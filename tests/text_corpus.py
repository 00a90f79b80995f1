"""A deterministic, varied list of texts for tokenizer equality tests."""

from __future__ import annotations

import random

_WORDS = (
    "a photo of the cat dog car tree house red blue green small big running jumping on in under with "
    "bicycle mountain river sunset night city street portrait painting diagram circle square triangle "
    "doesn't it's we're they've I'm you'll she'd DON'T IT'S"
).split()
_SAMPLES = (
    "", " ", "   \t\n  ", "\u00a0\u2003", "a", "A", "I", ".", "...", "!!!???", "1234567890", "3.14159", "1,000,000",
    "café naïve résumé façade coöperate", "Ærøskøbing Straße Ångström", "ÉCOLE ÉTÉ",
    "日本語のテキスト", "中文文本测试", "한국어 텍스트", "Привет мир", "Γειά σου Κόσμε", "שלום עולם",
    "مرحبا بالعالم", "नमस्ते दुनिया", "ภาษาไทย", "😀😃😄 🐱‍👤 👨‍👩‍👧‍👦 🇫🇷 👍🏽", "emoji😀inside",
    "&amp; &lt;b&gt;bold&lt;/b&gt; &quot;quoted&quot; &#39;apos&#39; &amp;amp; &nbsp;x &#x1F600;",
    "<start_of_text>", "<end_of_text>", "a <start_of_text> b <end_of_text> c", "<START_OF_TEXT>",
    "Ã©tÃ© mojibake â€™ fixed by ftfy", "don’t “smart quotes” — dashes – …", "tab\tseparated\nnew\r\nlines",
    "zero\u200bwidth", "combining e\u0301 a\u0300", "ﬁ ligature ＦＵＬＬＷＩＤＴＨ", "x²³ ½ ⅓ Ⅻ ①",
    "snake_case_words and-hyphen-words", "http://example.com/path?q=1&b=2", "user@example.com #hashtag @mention",
    "C++ C# .NET F# node.js", "'s 's 't're", "'S 'T 'RE", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "supercalifragilisticexpialidocious pneumonoultramicroscopicsilicovolcanoconiosis",
)


def corpus(n_random: int = 2000, seed: int = 1234) -> list[str]:
    """Fixed samples plus ``n_random`` generated texts mixing words, unicode, entities and long inputs."""
    rng = random.Random(seed)
    alphabet = [chr(c) for c in list(range(32, 127)) + list(range(0xA0, 0x250)) + list(range(0x370, 0x400))]
    alphabet += list("日本語中文한국어😀🐱🎉🇯🇵✓€£¥©®™°±×÷") + ["&amp;", "&lt;", "&#39;", " ", "  ", "\t"]
    texts = list(_SAMPLES)
    for i in range(n_random):
        kind = i % 5
        if kind == 0:
            texts.append(" ".join(rng.choice(_WORDS) for _ in range(rng.randint(1, 12))))
        elif kind == 1:
            texts.append("".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40))))
        elif kind == 2:
            # Over-long: must be truncated with the end token kept.
            texts.append(" ".join(rng.choice(_WORDS + list(_SAMPLES[20:30])) for _ in range(rng.randint(60, 150))))
        elif kind == 3:
            texts.append(rng.choice(_SAMPLES) + " " + " ".join(rng.choice(_WORDS) for _ in range(rng.randint(0, 5))))
        else:
            word = "".join(rng.choice("abcdefghijklmnopqrstuvwxyzéüß0123456789'") for _ in range(rng.randint(1, 25)))
            texts.append(word.upper() if rng.random() < 0.3 else word)
    return texts
