"""Result lines → COPY rows: the prefix fast path, the full-decode fallback, framing."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.result_lines import (
    CopyRows,
    MalformedLineError,
    extract_key,
    fix_escapes,
    needs_fixing,
    split_lines,
)


def _line(custom_id: str, result_type: str = "succeeded", **extra: object) -> bytes:
    return orjson.dumps({"custom_id": custom_id, "result": {"type": result_type, **extra}})


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (_line("abc-1"), ("abc-1", "succeeded")),
        (_line("x", "errored", error={"type": "error"}), ("x", "errored")),
        (b'{ "custom_id" : "k" , "result" : { "type" : "expired" } }', ("k", "expired")),
        # other key order: the slow path
        (b'{"result":{"type":"canceled"},"custom_id":"late"}', ("late", "canceled")),
        (b'{"result":{"message":{},"type":"succeeded"},"custom_id":"t"}', ("t", "succeeded")),
    ],
)
def test_extract_key(line: bytes, expected: tuple[str, str]) -> None:
    assert extract_key(line) == expected


@pytest.mark.parametrize("bad", [b"not json", b'{"custom_id":"a"}', b"[1,2]", b'{"custom_id":'])
def test_extract_key_rejects_what_is_not_a_result_line(bad: bytes) -> None:
    with pytest.raises(MalformedLineError):
        extract_key(bad)


@given(
    st.lists(
        st.binary(min_size=1, max_size=30).filter(lambda b: b"\n" not in b and b.strip()),
        max_size=20,
    ),
    st.integers(min_value=1, max_value=17),
)
def test_split_lines_is_independent_of_chunking(lines: list[bytes], size: int) -> None:
    data = b"\n".join(lines) + b"\n"
    chunks = [data[i : i + size] for i in range(0, len(data), size)]
    assert list(split_lines(chunks)) == [line.strip() for line in lines]


def test_split_lines_drops_blank_lines_and_keeps_a_final_unterminated_line() -> None:
    assert list(split_lines([b"a\n\n  \nb", b"c"])) == [b"a", b"bc"]


def test_copy_rows_frames_each_line_and_fixes_nul_escapes() -> None:
    nul = b'{"custom_id":"n","result":{"type":"succeeded","text":"a\\u0000b"}}'
    escaped = b'{"custom_id":"e","result":{"type":"succeeded","text":"a\\\\u0000b"}}'
    rows = CopyRows(
        batch_id="msgbatch_1", landed_at="2026-01-01T00:00:00+00:00", chunk_lines=2, fast=False
    )
    data = b"".join(rows.rows([_line("a") + b"\n" + nul + b"\n", escaped + b"\n" + _line("a")]))
    out = data.split(b"\n")[:-1]
    assert len(out) == 3 and rows.lines == 3
    fields = [row.split(b"\x02") for row in out]
    assert [f[1] for f in fields] == [b"a", b"n", b"e"]
    assert all(f[0] == b"msgbatch_1" and len(f) == 5 for f in fields)
    assert b"\\ufffd" in fields[1][3] and b"\\u0000" not in fields[1][3]
    assert fields[2][3] == escaped  # an escaped backslash followed by u0000 is text
    assert rows.nul_fixed == ["n"]
    assert rows.duplicates == ["a"]
    orjson.loads(fields[1][3])


@given(
    st.lists(
        st.tuples(
            st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True),
            st.sampled_from(["succeeded", "errored", "expired", "canceled"]),
            st.text(max_size=40),
            st.booleans(),
        ),
        max_size=25,
        unique_by=lambda t: t[0],
    ),
    st.integers(min_value=1, max_value=300),
)
def test_fast_path_equals_line_by_line_framing(
    items: list[tuple[str, str, str, bool]], size: int
) -> None:
    lines = []
    for cid, kind, text, reorder in items:
        obj = {"custom_id": cid, "result": {"type": kind, "text": text}}
        if reorder:
            obj = {"result": obj["result"], "custom_id": cid}
        lines.append(orjson.dumps(obj))
    data = b"".join(line + b"\n" for line in lines)
    chunks = [data[i : i + size] for i in range(0, len(data), size)]
    fast = CopyRows(batch_id="b", landed_at="t")
    slow = CopyRows(batch_id="b", landed_at="t", fast=False)
    assert b"".join(fast.rows(chunks)) == b"".join(slow.rows(chunks))
    assert fast.lines == slow.lines == len(lines)


def test_fast_path_leaves_repeats_to_the_primary_key() -> None:
    data = _line("a") + b"\n" + _line("a") + b"\n"
    fast = CopyRows(batch_id="b", landed_at="t")
    assert b"".join(fast.rows([data])).count(b"\n") == 2
    slow = CopyRows(batch_id="b", landed_at="t", fast=False)
    assert b"".join(slow.rows([data])).count(b"\n") == 1 and slow.duplicates == ["a"]


@given(st.integers(min_value=1, max_value=200))
def test_blocks_are_raw_whole_lines_until_a_nul_escape_then_framed(size: int) -> None:
    nul = b'{"custom_id":"n","result":{"type":"succeeded","text":"a\\u0000b"}}'
    lines = [_line("a"), _line("b"), nul, _line("c")]
    data = b"\n".join(lines) + b"\n"
    chunks = [data[i : i + size] for i in range(0, len(data), size)]
    framer = CopyRows(batch_id="b", landed_at="t")
    blocks = list(framer.blocks(chunks))
    kinds = [framed for framed, _ in blocks]
    assert kinds == sorted(kinds)  # raw, then framed, never back
    raw = b"".join(block for framed, block in blocks if not framed)
    assert all(block.endswith(b"\n") for framed, block in blocks if not framed)
    rows = b"".join(block for framed, block in blocks if framed).split(b"\n")[:-1]
    # the raw blocks and the framed rows hold each line once, in order
    assert raw.split(b"\n")[:-1] + [row.split(b"\x02")[3] for row in rows] == [
        line.replace(b"\\u0000", b"\\ufffd") for line in lines
    ]
    assert framer.nul_fixed == ["n"] and framer.lines == len(rows)


def test_blocks_of_a_redo_are_all_framed_without_repeats() -> None:
    data = _line("a") + b"\n\n" + _line("a") + b"\n" + _line("b")
    framer = CopyRows(batch_id="b", landed_at="t", fast=False)
    blocks = list(framer.blocks([data]))
    assert all(framed for framed, _ in blocks)
    assert b"".join(block for _, block in blocks).count(b"\n") == 2
    assert framer.duplicates == ["a"]


def test_blocks_pass_raw_lines_unchecked_to_the_database() -> None:
    framer = CopyRows(batch_id="b", landed_at="t")
    assert list(framer.blocks([b"not json\n", b"x"])) == [(False, b"not json\n"), (False, b"x")]


# -- lone surrogate escapes ------------------------------------------------------------

TEXT = b'{"custom_id":"s","result":{"type":"succeeded","text":"%s"}}'


@pytest.mark.parametrize(
    ("text", "fixed", "nul", "surrogate"),
    [
        (rb"a\ud800b", rb"a\ufffdb", False, True),  # a high surrogate alone
        (rb"a\udc00b", rb"a\ufffdb", False, True),  # a low surrogate alone
        (rb"a\uDBFFb", rb"a\ufffdb", False, True),  # upper-case hex digits
        (rb"a\ud800", rb"a\ufffd", False, True),  # at the end of the string
        (rb"\udc00\ud800", rb"\ufffd\ufffd", False, True),  # low then high: no pair
        (rb"\ud800\ud83d\ude00", rb"\ufffd\ud83d\ude00", False, True),  # high, then a pair
        (rb"\ud83d\ude00", rb"\ud83d\ude00", False, False),  # a valid pair is kept
        (rb"\uD83D\uDE00", rb"\uD83D\uDE00", False, False),
        (rb"a\\ud800b", rb"a\\ud800b", False, False),  # an escaped backslash, then text
        (rb"a\\\ud800b", rb"a\\\ufffdb", False, True),  # escaped backslash, then a lone one
        (rb"\\ud800\udc00", rb"\\ud800\ufffd", False, True),  # the low half is alone
        (rb"a\u0000\ud800", rb"a\ufffd\ufffd", True, True),
        (rb"\ud7ff\ue000", rb"\ud7ff\ue000", False, False),  # just outside the range
    ],
)
def test_fix_escapes_neutralises_nul_and_lone_surrogates_only(
    text: bytes, fixed: bytes, nul: bool, surrogate: bool
) -> None:
    line = TEXT % text
    out, had_nul, had_surrogate = fix_escapes(line)
    assert out == TEXT % fixed
    assert (had_nul, had_surrogate) == (nul, surrogate)
    assert needs_fixing(line) == (nul or surrogate)
    orjson.loads(out)  # strict UTF-8 JSON: no surrogate survives alone


@pytest.mark.parametrize("fast", [True, False])
def test_copy_rows_replace_a_lone_surrogate_and_name_the_line(fast: bool) -> None:
    lone = TEXT % rb"x\ud800y"
    lines = [_line("a"), lone, _line("b")]
    rows = CopyRows(batch_id="b", landed_at="t", fast=fast)
    out = b"".join(rows.rows([b"\n".join(lines) + b"\n"])).split(b"\n")[:-1]
    framed = [row.split(b"\x02")[3] for row in out]
    assert framed == [_line("a"), TEXT % rb"x\ufffdy", _line("b")]
    assert rows.surrogate_fixed == ["s"] and rows.nul_fixed == []


@given(st.integers(min_value=1, max_value=200))
def test_blocks_are_framed_from_the_first_lone_surrogate(size: int) -> None:
    lines = [_line("a"), TEXT % rb"\udfff!", _line("c"), _line("d", text="\U0001f600")]
    data = b"\n".join(lines) + b"\n"
    chunks = [data[i : i + size] for i in range(0, len(data), size)]
    framer = CopyRows(batch_id="b", landed_at="t")
    blocks = list(framer.blocks(chunks))
    raw = b"".join(block for framed, block in blocks if not framed).split(b"\n")[:-1]
    rows = b"".join(block for framed, block in blocks if framed).split(b"\n")[:-1]
    assert raw + [row.split(b"\x02")[3] for row in rows] == [
        line.replace(rb"\udfff", rb"\ufffd") for line in lines
    ]
    assert framer.surrogate_fixed == ["s"]


def test_a_valid_pair_keeps_the_fast_path() -> None:
    data = TEXT % rb"\ud83d\ude00" + b"\n"
    assert not needs_fixing(data)
    framer = CopyRows(batch_id="b", landed_at="t")
    assert list(framer.blocks([data])) == [(False, data)]
