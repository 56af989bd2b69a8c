"""The report's Markdown to HTML (musicsep.report.markdown)."""

from __future__ import annotations

import pytest

from musicsep.report.markdown import markdown_html

pytestmark = pytest.mark.usefixtures("one_thread")


def test_markdown_html():
    page = markdown_html("# Title\n\nSome `code` & <b>text</b>\nwrapped.\n\n- one\n- two\n\n"
                         "| a | b |\n|---|---:|\n| x | 1.00 |\n")
    assert "<h1>Title</h1>" in page
    assert "<p>Some <code>code</code> &amp; &lt;b&gt;text&lt;/b&gt; wrapped.</p>" in page
    assert "<ul><li>one</li><li>two</li></ul>" in page
    assert '<tr><td>x</td><td style="text-align:right">1.00</td></tr>' in page
