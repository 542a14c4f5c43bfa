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


@pytest.mark.parametrize("field, value, expected", [
    ("scratch_depth_sigma", float("nan"), "finite number >= 0"),
    ("segment_snr_min", -1.0, "finite number >= 0"),
    ("gradient_sigma_px", 0.0, "> 0"),
    ("block_size_px", 16.0, "an int in [4, 64]"),
    ("block_size_px", True, "an int in [4, 64]"),
    ("ridge_period_max_px", 4.0, "> ridge_period_min_px (5.0)"),
    ("ridge_period_default_px", 20.0, "[5.0, 15.0]"),
    ("min_print_coherence", 1.5, "in [0, 1]"),
    ("scratch_max_width_ratio", 0.0, "in (0, 1]"),
    ("max_minutiae", 256, "[1, 255]"),
    ("max_image_side_px", 16, "[32, 100000]"),
    ("gabor_sigma_along_px", "4", "> 0"),
    ("ridge_weak_peak_min", 0.3, "[0, ridge_peak_min (0.25)]"),
    ("small_print_area_mm2", -1.0, "finite number >= 0"),
    ("small_print_edge_inset_px", float("inf"), "finite number >= 0"),
    ("period_orientation_sigma_px", 0.0, "> 0"),
    ("period_coarse_below_coherence", 1.2, "in [0, 1]"),
])
def test_extraction_params_name_the_field_the_expected_and_the_actual_value(field, value, expected):
    with pytest.raises(InvalidInputError) as e:
        ExtractionParams(**{field: value})
    message = str(e.value)
    assert field in message and expected in message and str(value) in message


def test_extraction_params_disabling_values_stay_valid():
    # 0 switches the scratch stage, the ridge-fraction gate and the area-scaled cap off: documented, so valid.
    ExtractionParams(scratch_depth_sigma=0.0, min_ridge_fraction_local=0.0, max_minutiae_area_mm2=0.0,
                     ending_valley_fork_max_px=0.0, period_coarse_below_coherence=0.0)


def test_extraction_params_stored_before_the_coarse_period_orientation_read_as_then():
    """An ExtractionParams written before period_coarse_below_coherence existed reads with it off."""
    import json

    payload = json.loads(to_json(ExtractionParams()))
    del payload["values"]["period_coarse_below_coherence"]
    p = from_json(json.dumps(payload), ExtractionParams)
    assert p.period_coarse_below_coherence == 0.0 and ExtractionParams().period_coarse_below_coherence == 0.3
