"""The HTML nesting-depth pre-scan (pipeline.ingest.html: quick_depth, then tag_depth): legal, shallow
pages pass (omitted end tags, '<' in raw text), tag_depth stays an upper bound on the parsed tree's
depth, and deeply nested pages are still refused."""
from __future__ import annotations

import random

import pytest
from resiliparse.parse.html import HTMLTree, NodeType

from pipeline.ingest.html import ExtractionOverBudget, html_page, tag_depth

N = 2100  # over the default ingest.max_html_depth (2000)
PARA = "这是一个正常的段落，内容完全合法，没有任何嵌套。"


def parsed_depth(html: str) -> int:
    """The element depth of the parser's tree (html and body included)."""
    deepest, todo = 0, [(HTMLTree.parse(html).document, 0)]
    while todo:
        node, depth = todo.pop()
        deepest = max(deepest, depth)
        child = node.first_child
        while child is not None:
            if child.type == NodeType.ELEMENT:
                todo.append((child, depth + 1))
            child = child.next
    return deepest


@pytest.mark.parametrize("body", [
    "".join(f"<p>{PARA}{i}\n" for i in range(N)),
    "<ul>" + f"<li>{PARA}" * N + "</ul>",
    "<dl>" + f"<dt>term<dd>{PARA}" * N + "</dl>",
    "<form><select>" + "".join(f"<option value={i}>城市{i}" for i in range(N)) + "</select></form>",
    "<table>" + f"<tr><td>{PARA}<th>x" * N + "</table>",
    "<table>" + f"<tr><td>{PARA}<td>y</tr>" * N + "</table>",
    "<div><p>x</div>" * N,
    "<script>" + "if(i<n){x++}" * N + "</script>",
    "<style>" + "a<b{}" * N + "</style><textarea>" + "<b>" * N + "</textarea><title>" + "<i>" * N + "</title>",
    "<!--" + "<div>" * N + "-->" + '<a title="' + "<div>" * N + '">link</a>',
    "<svg><path d='M0 0'/></svg>" + f"<p>{PARA}" * N,
], ids=["p", "li", "dt-dd", "option", "td-th-tr", "td-with-end-tr", "p-closed-by-div", "script", "style-textarea-title",
        "comment-attribute", "p-after-svg"])
def test_legal_shallow_pages_pass(body):
    html = f"<html><body><main><p>{PARA * 5}</p>{body}</main></body></html>"
    assert tag_depth(html) <= parsed_depth(html) + 2
    assert html_page(html).text


@pytest.mark.parametrize("unit", [
    "<div></b>",  # an end tag of nothing open closes nothing
    "<div><!--</div>-->",
    '<div title="</div>">',
    "<div><script></div></script>",
    "<div><!x</div>",  # a bogus comment, to the first '>'
])
def test_hidden_nesting_is_seen(unit):
    """The stack scan sees nesting that end tags in other places seem to close (the quick count, which
    check_budget asks first, does not: such pages pass as they did before the stack scan)."""
    html = "<html><body>" + unit * N + "</body></html>"
    assert parsed_depth(html) > N
    assert tag_depth(html) >= N  # (parsed_depth counts <html> and <body>)


def test_deep_pages_are_refused():
    html = "<html><body>" + "<div><p>x" * N + "</body></html>"
    with pytest.raises(ExtractionOverBudget, match=r"tags nest \d+ deep"):
        html_page(html)


def test_an_upper_bound_on_random_tag_soup():
    """On soups of tags repeated many times (what would grow the tree), never shallower than the
    parsed tree but for <html>, <body> and the empty <p> a stray </p> adds."""
    tokens = ["<div>", "</div>", "<p>", "</p>", "<b>", "</b>", "<span>", "</span>", "<li>", "</li>", "<ul>", "<option>",
              "</option>", "<select>", "</select>", "<table>", "</table>", "<tr>", "</tr>", "<td>", "</td>", "<svg>",
              "</svg>", "<math>", "<g>", "</g>", "<foreignObject>", "<style>", "</style>", "<script>", "</script>",
              "<!--", "-->", "<a title='</div>'>", "<form>", "</form>", "<dd>", "<body>", "</body>", "<x/>", "<link>"]
    rng = random.Random(15)
    for _ in range(300):
        html = "".join(rng.choice(tokens) for _ in range(rng.randint(0, 3)))
        html += "".join(rng.choice(tokens) for _ in range(rng.randint(1, 5))) * 40
        assert tag_depth(html) >= parsed_depth(html) - 3, html
