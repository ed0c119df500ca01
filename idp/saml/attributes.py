"""pysaml2's attribute converter for our catalogue of attributes."""

from __future__ import annotations

from saml2.attribute_converter import AttributeConverter

from idp.sps.vocabulary import CATALOGUE, NAME_FORMAT_URI


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
