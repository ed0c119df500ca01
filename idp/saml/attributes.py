"""Released attributes (idp.sps.release) as a SAML AttributeStatement, and pysaml2's attribute converter."""

from __future__ import annotations

from collections.abc import Sequence

from saml2 import saml
from saml2.attribute_converter import AttributeConverter

from idp.sps.release import ReleasedAttribute
from idp.sps.vocabulary import CATALOGUE, NAME_FORMAT_BASIC, NAME_FORMAT_URI

_NAME_FORMATS = {"uri": NAME_FORMAT_URI, "basic": NAME_FORMAT_BASIC}


def attribute_statement(released: Sequence[ReleasedAttribute]) -> saml.AttributeStatement | None:
    """The AttributeStatement carrying ``released``; None when there is nothing to release."""
    attributes = []
    for item in released:
        attribute = saml.Attribute(
            name=item.name, name_format=_NAME_FORMATS[item.name_format], friendly_name=item.friendly_name
        )
        for value in item.values:
            attribute_value = saml.AttributeValue()
            attribute_value.set_text(value)  # typed xs:string, as pysaml2's own converter writes them
            attribute.attribute_value.append(attribute_value)
        attributes.append(attribute)
    return saml.AttributeStatement(attribute=attributes) if attributes else None


def converter() -> AttributeConverter:
    """A pysaml2 converter that turns our FriendlyNames into urn:oid names with NameFormat uri."""
    conv = AttributeConverter()
    conv.from_dict(
        {
            "identifier": NAME_FORMAT_URI,
            "to": {d.friendly_name: d.name for d in CATALOGUE.values()},
            "fro": {d.name: d.friendly_name for d in CATALOGUE.values()},
        }
    )
    return conv
