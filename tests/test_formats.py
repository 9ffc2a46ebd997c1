"""Output formats are registered once (model.product.formats.FORMATS): the request model, the
direct download's OpenAPI and the points rule all follow the registry."""

import pytest

from model.errors import InputError
from model.product.export import ExportRequest, parse_request
from model.product.formats import FORMATS
from service.app import create_app
from tests.served import build_cube


def test_the_request_model_offers_every_registered_format():
    schema = ExportRequest.model_json_schema()["properties"]["format"]
    assert schema["enum"] == list(FORMATS)


def test_a_format_without_points_refuses_them():
    request = {
        "points": [[38.5, -97.5]],
        "start": "2010-01-01",
        "end": "2010-01-31",
        "products": ["lstm"],
    }
    for name, spec in FORMATS.items():
        if spec.points:
            assert parse_request({**request, "format": name}).format == name
        else:
            with pytest.raises(InputError, match=f"{name} needs a bbox"):
                parse_request({**request, "format": name})


def test_the_direct_download_lists_the_direct_formats_and_their_media(tmp_path):
    build_cube(tmp_path / "c.zarr")
    spec = create_app([tmp_path / "c.zarr"]).openapi()["paths"]["/v1/subset"]["get"]
    formats = next(p for p in spec["parameters"] if p["name"] == "format")["schema"]["enum"]
    assert formats == [name for name, f in FORMATS.items() if f.direct]
    media = spec["responses"]["200"]["content"]
    assert {f.media_type for f in FORMATS.values() if f.direct} <= set(media)
