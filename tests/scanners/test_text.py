"""Tests of device_text, the one way probes turn device bytes into fact text."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scanners.text import device_text

ENCODINGS = ("utf-8", "latin-1", "utf-16-be", "utf-32-be", "ascii")


def test_device_text_decodes_utf8() -> None:
    assert device_text("Zählerstand 4\u201320 mA".encode()) == "Zählerstand 4\u201320 mA"


def test_device_text_falls_back_to_latin1_when_not_utf8() -> None:
    assert device_text("Zählerstand".encode("latin-1")) == "Zählerstand"


def test_device_text_uses_the_given_encoding() -> None:
    assert device_text("Kessel".encode("utf-16-be"), encoding="utf-16-be") == "Kessel"


def test_device_text_drops_controls_and_nul_padding() -> None:
    assert device_text(b"\x00\x1bCPU\x07 315\x7f\x00\x00") == "CPU 315"


def test_device_text_drops_format_characters_such_as_soft_hyphen() -> None:
    # U+00AD and U+200B pass a C0/C1 control regex but are not printable.
    assert device_text("\u00adhttp://www.wago.com\u200b".encode()) == "http://www.wago.com"


def test_device_text_drops_latin1_soft_hyphen_byte() -> None:
    # b"\xad" alone is not UTF-8, so it decodes as Latin-1 U+00AD, which must go too.
    assert device_text(b"\xadttp://www.wago.com") == "ttp://www.wago.com"


def test_device_text_turns_white_space_controls_into_spaces() -> None:
    assert device_text(b"Linux 5.4\r\nbuild\t7") == "Linux 5.4  build 7"


def test_device_text_cuts_at_max_bytes() -> None:
    assert device_text(b"A" * 300, max_bytes=64) == "A" * 64


def test_device_text_keeps_utf8_when_the_cut_splits_a_character() -> None:
    # "ä" is two bytes; a cut after its first byte must not turn the text into Latin-1.
    assert device_text("abcä".encode(), max_bytes=4) == "abc"


def test_device_text_keeps_utf16_when_the_cut_splits_a_code_unit() -> None:
    assert device_text("Kessel".encode("utf-16-be"), max_bytes=7, encoding="utf-16-be") == "Kes"


def test_device_text_keeps_newlines_when_asked() -> None:
    raw = b"  Welcome\r\n\r\nto the\rrouter  \n\x00\n login: "
    assert device_text(raw, keep_newlines=True) == "Welcome\nto the\nrouter\n login:"


def test_device_text_of_nothing_printable_is_empty() -> None:
    assert device_text(b"\x00\x01\x02 \t\r\n") == ""


@settings(max_examples=500)
@given(
    raw=st.binary(max_size=600),
    max_bytes=st.integers(min_value=0, max_value=300),
    encoding=st.sampled_from(ENCODINGS),
    keep_newlines=st.booleans(),
)
def test_device_text_is_always_printable_stripped_and_bounded(
    raw: bytes, max_bytes: int, encoding: str, keep_newlines: bool
) -> None:
    text = device_text(raw, max_bytes=max_bytes, encoding=encoding, keep_newlines=keep_newlines)
    assert len(text) <= max_bytes
    assert text == text.strip()
    for line in text.split("\n") if keep_newlines else [text]:
        assert line.isprintable()


@settings(max_examples=300)
@given(st.text(max_size=100))
def test_device_text_keeps_printable_utf8_text(text: str) -> None:
    printable = "".join(c for c in text if c.isprintable()).strip()
    assert device_text(printable.encode(), max_bytes=1024) == printable


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_device_text_of_empty_bytes_is_empty(encoding: str) -> None:
    assert device_text(b"", encoding=encoding) == ""
