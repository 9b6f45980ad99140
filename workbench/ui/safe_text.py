"""Values from data (ids, titles, names) made inert where Streamlit renders Markdown: widget
labels, help texts, captions, alerts and expander labels.

Where a value can stand alone, pages show it with `st.text` instead, which renders nothing.
"""

from __future__ import annotations

import re
import string

# CommonMark lets a backslash escape any ASCII punctuation, and escaping all of it is simpler
# to trust than a list of what is special: images, links, autolinks, emphasis, code, HTML,
# entities, tables, and Streamlit's own :colour[...] directives and $maths$.
_PUNCTUATION = re.compile("([" + re.escape(string.punctuation) + "])")
# Line breaks would start block syntax a backslash cannot reach (indented code), and a label is
# one line anyway.
_LINE_BREAKS = re.compile(r"[\r\n]+\s*")


def escape_markdown(value: object) -> str:
    """`value` as text that Markdown shows as itself, line breaks kept as line breaks."""
    lines = _LINE_BREAKS.split(str(value))
    return "  \n".join(_PUNCTUATION.sub(r"\\\1", line.strip()) for line in lines)
