"""Bounded printable text from the bytes a device sent: the one way every probe reads text."""

# Line breaks as devices write them; a lone CR (old Mac, some telnet stacks) is a break too.
_LINE_BREAKS = str.maketrans({"\r": "\n"})
# White space controls that separate words; other controls (NUL padding, ESC, ...) just go.
_SPACING_CONTROLS = frozenset("\t\n\v\f\r\x85")
# What CPython's UTF-8 and UTF-16/32 decoders say of a character cut at the end.
_CUT_REASONS = frozenset({"unexpected end of data", "truncated data"})


def device_text(
    raw: bytes,
    *,
    max_bytes: int = 256,
    encoding: str = "utf-8",
    keep_newlines: bool = False,
) -> str:
    """Printable text of at most ``max_bytes`` bytes of ``raw``, stripped.

    ``raw`` is cut to ``max_bytes`` and decoded with ``encoding``; bytes that do not decode make
    the whole value Latin-1 (every byte is a character there), except that a multi-byte character
    the cut split is dropped rather than turning valid text into mojibake. Every code point that
    ``str.isprintable`` refuses goes (C0/C1 controls, format characters such as U+00AD SOFT
    HYPHEN or U+200B, separators other than the ASCII space); white space controls (tab, line
    breaks) become a space so words stay apart. With ``keep_newlines`` line breaks (CR LF, CR,
    LF) are kept as ``"\\n"``, each line right-stripped and blank lines dropped (banners).

    The result has at most ``max_bytes`` characters.
    """
    cut = raw[:max_bytes]
    text = _decode(cut, encoding, truncated=len(raw) > max_bytes)
    if keep_newlines:
        lines = text.replace("\r\n", "\n").translate(_LINE_BREAKS).split("\n")
        kept = (_printable(line).rstrip() for line in lines)
        return "\n".join(line for line in kept if line).strip()
    return _printable(text).strip()


def _decode(raw: bytes, encoding: str, *, truncated: bool) -> str:
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        # Only the character the cut split is incomplete: what precedes it decodes (a decoder
        # reports its first error).
        if truncated and exc.end == len(raw) and exc.reason in _CUT_REASONS:
            return raw[: exc.start].decode(encoding)
        return raw.decode("latin-1")


def _printable(text: str) -> str:
    return "".join(
        c if c.isprintable() else " " for c in text if c.isprintable() or c in _SPACING_CONTROLS
    )
