"""The event-stream parser (imagegate_client/sse.py): WHATWG rules, fed in any chunking."""

from __future__ import annotations

from imagegate_client.sse import ServerSentEvent, SSEParser


def parse(*chunks: bytes) -> tuple[list[ServerSentEvent], SSEParser]:
    parser = SSEParser()
    events = [event for chunk in chunks for event in parser.feed(chunk)]
    return events, parser


def test_an_event_with_type_id_and_data_is_dispatched_on_the_empty_line() -> None:
    events, parser = parse(b'retry: 1000\nevent: status\nid: 7\ndata: {"state":"processing"}\n',
                           b"\n")
    assert events == [ServerSentEvent("status", '{"state":"processing"}', "7")]
    assert parser.last_event_id == "7" and parser.retry_ms == 1000


def test_nothing_is_dispatched_before_the_empty_line() -> None:
    events, _ = parse(b"event: done\ndata: {}\n")
    assert events == []


def test_multi_line_data_joins_with_newlines_and_keeps_inner_spaces() -> None:
    events, _ = parse(b"data: first\ndata:second\ndata:  third\n\n")
    assert events[0].data == "first\nsecond\n third"
    assert events[0].event == "message"


def test_comments_are_skipped() -> None:
    events, _ = parse(b": keep-alive\n\n: keep-alive\n", b"data: x\n\n")
    assert [e.data for e in events] == ["x"]


def test_crlf_cr_and_lf_line_ends_split_anywhere_between_chunks() -> None:
    stream = b"event: status\r\nid: a\r\ndata: 1\r\n\r\nevent: done\rdata: 2\r\r"
    whole, _ = parse(stream)
    byte_by_byte, _ = parse(*(stream[i:i + 1] for i in range(len(stream))))
    assert whole == byte_by_byte == [ServerSentEvent("status", "1", "a"),
                                     ServerSentEvent("done", "2", "a")]


def test_a_multibyte_character_split_between_chunks_survives() -> None:
    encoded = "data: renard roux \u00e9t\u00e9 \U0001f98a\n\n".encode()
    events, _ = parse(encoded[:20], encoded[20:21], encoded[21:])
    assert events[0].data == "renard roux \u00e9t\u00e9 \U0001f98a"


def test_the_last_id_carries_over_to_later_events_and_an_empty_id_resets_it() -> None:
    events, parser = parse(b"id: 1\ndata: a\n\ndata: b\n\nid\ndata: c\n\n")
    assert [e.id for e in events] == ["1", "1", ""]
    assert parser.last_event_id == ""


def test_an_id_alone_updates_last_event_id_without_an_event() -> None:
    events, parser = parse(b"id: 42\n\n")
    assert events == [] and parser.last_event_id == "42"


def test_retry_must_be_digits_and_unknown_fields_are_ignored() -> None:
    _, parser = parse(b"retry: soon\nfoo: bar\ndata: x\n\n")
    assert parser.retry_ms is None
    _, parser = parse(b"retry: 2500\n\n")
    assert parser.retry_ms == 2500


def test_a_field_without_colon_has_an_empty_value_and_a_leading_bom_is_dropped() -> None:
    events, _ = parse(b"\xef\xbb\xbfdata\ndata\n\n")
    assert events[0].data == "\n"
    events, _ = parse(b"\xef\xbb\xbf", b"event: status\ndata: y\n\n")
    assert events[0].event == "status"


def test_an_id_becomes_the_last_event_id_only_when_its_event_is_dispatched() -> None:
    events, parser = parse(b"id: 1\ndata: a\n\nid: 2\nevent: status\ndata: b")
    assert [e.id for e in events] == ["1"]
    assert parser.last_event_id == "1"


def test_a_parser_for_a_new_connection_starts_from_the_last_id_and_retry_only() -> None:
    parser = SSEParser("e1", 250)
    assert parser.feed(b"data: x\n\n") == [ServerSentEvent("message", "x", "e1")]
    assert parser.last_event_id == "e1" and parser.retry_ms == 250
