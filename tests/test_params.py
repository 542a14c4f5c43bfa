import pytest

from biomatch.errors import InvalidInputError
from biomatch.params import ExtractionParams, MatchParams, from_json, params_hash, to_json


@pytest.mark.parametrize("cls", [ExtractionParams, MatchParams])
def test_json_round_trip_and_hash(cls):
    p = cls()
    assert from_json(to_json(p), cls) == p
    assert len(params_hash(p)) == 16 and params_hash(p) == params_hash(cls())


def test_hash_changes_with_values():
    assert params_hash(ExtractionParams()) != params_hash(ExtractionParams(block_size_px=12))


def test_from_json_rejects_unknown_and_wrong_type():
    with pytest.raises(InvalidInputError):
        from_json('{"type": "ExtractionParams", "values": {"nope": 1}}', ExtractionParams)
    with pytest.raises(InvalidInputError):
        from_json(to_json(ExtractionParams()), MatchParams)
    with pytest.raises(InvalidInputError):
        from_json("{not json", ExtractionParams)
