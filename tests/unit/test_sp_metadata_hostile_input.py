"""Whatever an admin uploads or a metadata URL serves, the validator answers with SpMetadataInfo or a
MetadataError (a sentence for the admin), never another exception that the console would show as a 500 and
the refresher would log as a crash. Hypothesis writes the input: arbitrary bytes, the metadata of the test
data and of python3-saml with bytes changed, and valid metadata with attributes and texts set to anything."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from lxml import etree

from idp.sps.errors import MetadataError
from idp.sps.validate import MD, inspect_sp_metadata, validate_sp_metadata
from tests.unit.sp_fixtures import DATA, sp_metadata

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NOW = datetime(2026, 6, 1, tzinfo=UTC)

SAMPLES = [
    sp_metadata(),
    sp_metadata(authn_requests_signed=True, display_name="Webmail"),
    *(path.read_bytes() for path in sorted(DATA.glob("*.xml"))),
]
ATTRIBUTES = [
    "entityID",
    "validUntil",
    "cacheDuration",
    "Binding",
    "Location",
    "ResponseLocation",
    "index",
    "isDefault",
    "use",
    "protocolSupportEnumeration",
    "AuthnRequestsSigned",
    "WantAssertionsSigned",
    "{http://www.w3.org/XML/1998/namespace}lang",
]
ODD_TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", " ", "-1", "0", "1", "true", "2", "1e3", "x" * 2000, "9" * 5000]),
    st.sampled_from(["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "0001-01-01", "2026-13-45"]),
    st.sampled_from(["P99999999999Y", "P" + "9" * 400 + "D", "PT" + "9" * 400 + ".5S", "P1Y", "PT", "P"]),
    st.sampled_from(["https://sp.test/acs", "http://[::1", "https://" + "a" * 300 + ".test", "javascript:x"]),
)
HOSTILE = [
    b'<?xml version="1.0"?><!DOCTYPE m [<!ENTITY a "aaaa">]><m>&a;</m>',
    b'<?xml version="1.0"?><!DOCTYPE m SYSTEM "http://127.0.0.1:1/x.dtd"><m/>',
    b'<?xml version="1.0" encoding="no-such-encoding"?><m/>',
    b'<?xml version="1.0" encoding="UTF-16"?><m/>',
    b"\xff\xfe<\x00m\x00/\x00>\x00",
    b'<?xml-stylesheet href="x"?><md:EntityDescriptor xmlns:md="' + MD.encode() + b'"/>',
    b"<a>" * 5000 + b"</a>" * 5000,
    b'<md:EntityDescriptor xmlns:md="' + MD.encode() + b'" entityID="x"><md:SPSSODescriptor/></md:EntityDescriptor>',
]


def _refuses_or_reads(xml: bytes) -> None:
    """Any exception but MetadataError fails the test: that is what would reach the admin as a 500."""
    with contextlib.suppress(MetadataError):
        inspect_sp_metadata(xml)
    with contextlib.suppress(MetadataError):
        validate_sp_metadata(xml, now=NOW)
    with contextlib.suppress(MetadataError):
        validate_sp_metadata(xml, allow_http_loopback=False)


def _mutate(data: bytes, cuts: list[tuple[int, int, bytes]]) -> bytes:
    for start, length, insert in cuts:
        at = start % (len(data) + 1)
        data = data[:at] + insert + data[at + length :]
    return data


def _xml_text(value: str) -> str:
    return "".join(ch for ch in value if ch.isprintable() or ch in "\t\n\r")


@FUZZ
@given(st.binary(max_size=600))
@example(b"")
@example(b"\x00")
def test_arbitrary_bytes_are_refused(data: bytes) -> None:
    _refuses_or_reads(data)


@FUZZ
@given(st.sampled_from(HOSTILE))
def test_hostile_xml_is_refused(xml: bytes) -> None:
    _refuses_or_reads(xml)


@FUZZ
@given(
    st.sampled_from(range(len(SAMPLES))),
    st.lists(st.tuples(st.integers(0, 6000), st.integers(0, 12), st.binary(max_size=12)), min_size=1, max_size=4),
)
def test_mutated_metadata_is_refused_or_read(sample: int, cuts: list[tuple[int, int, bytes]]) -> None:
    _refuses_or_reads(_mutate(SAMPLES[sample], cuts))


@FUZZ
@given(
    st.sampled_from(range(len(SAMPLES))),
    st.lists(st.tuples(st.integers(0, 200), st.sampled_from(ATTRIBUTES), ODD_TEXT), min_size=1, max_size=5),
    st.lists(st.tuples(st.integers(0, 200), ODD_TEXT), max_size=3),
)
@example(0, [(0, "validUntil", "0001-01-01T00:00:00+14:00")], [])
@example(0, [(0, "cacheDuration", "P" + "9" * 400 + "D")], [])
def test_metadata_with_odd_attributes_and_texts_is_refused_or_read(
    sample: int, attributes: list[tuple[int, str, str]], texts: list[tuple[int, str]]
) -> None:
    tree = etree.fromstring(SAMPLES[sample])
    elements = list(tree.iter(etree.Element))
    for at, name, value in attributes:
        elements[at % len(elements)].set(name, _xml_text(value))
    for at, value in texts:
        elements[at % len(elements)].text = _xml_text(value)
    _refuses_or_reads(etree.tostring(tree))
