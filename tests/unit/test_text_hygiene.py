"""Text from other people is shown without terminal escapes or control characters."""

import pytest

from guanaco_dagster.feedback.text_hygiene import clean_line, clean_text, markdown_text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("\x1b[2J\x1b[31mhello\x1b[0m", "hello"),  # clear screen, colours
        ("\x1b]8;;http://evil.example\x07click\x1b]8;;\x07", "click"),  # OSC 8 hyperlink
        ("\x1b]0;new title\x1b\\text", "text"),  # window title
        ("bell\x07 nul\x00 del\x7f c1\x9b2J", "bell nul del c1"),
        ("over\rwrite", "over\nwrite"),  # a carriage return cannot overwrite the line
        ("right\u202eleft", "rightleft"),  # bidi override
        ("two\nlines\tand a tab", "two\nlines\tand a tab"),
        ("héllo 👍 — ok", "héllo 👍 — ok"),
    ],
)
def test_escape_sequences_and_control_characters_are_removed(text, expected):
    assert clean_text(text) == expected


def test_one_line_fields_lose_their_line_breaks():
    assert clean_line("Cap\ntain\tNova\x1b[5m") == "Cap tain Nova"


def test_markdown_from_users_is_shown_literally():
    shown = markdown_text("![x](http://t.example) <b>hi</b>\n# big *bold* [email]")
    assert shown == r"![x]\(http://t.example) \<b\>hi\</b\> \# big \*bold\* [email]"
