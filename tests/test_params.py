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


@pytest.mark.parametrize("cls", [ExtractionParams, MatchParams])
def test_stored_hash_is_the_hash_at_writing(cls):
    from biomatch.params import stored_params_hash

    p = cls()
    assert stored_params_hash(to_json(p), cls) == params_hash(p)


def test_a_field_added_later_is_read_with_its_neutral_value():
    """A parameter set written before the orientation fields existed keeps its scores (weight 0),
    its hash is the one written, and any other missing field takes its default."""
    import json

    from biomatch.params import stored_params_hash

    payload = json.loads(to_json(MatchParams()))
    for k in ("orientation_weight", "orientation_scale_from", "orientation_scale_to"):
        del payload["values"][k]
    old = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    p = from_json(old, MatchParams)
    assert p.orientation_weight == 0.0
    assert p.orientation_scale_from == MatchParams().orientation_scale_from
    assert stored_params_hash(old, MatchParams) != params_hash(p)  # the object has more fields
    # a value that is stored wins over the neutral one
    assert from_json(to_json(MatchParams(orientation_weight=0.5)), MatchParams).orientation_weight == 0.5
    with pytest.raises(InvalidInputError):
        stored_params_hash('{"type":"MatchParams","values":[1]}', MatchParams)
