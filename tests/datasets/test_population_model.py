"""The registry-like population of generated templates: determinism, the default model unchanged,
and the per-person difficulty it adds."""

import hashlib
from dataclasses import replace

import numpy as np
import pytest

from biomatch.datasets.synthetic import (REGISTRY_POPULATION, PopulationModel, TemplateModel, capture_severity,
                                         person_impressions, template_impressions)
from biomatch.errors import InvalidInputError


def _digest(templates) -> str:
    h = hashlib.sha256()
    for t in templates:
        h.update(np.ascontiguousarray(t.minutiae).tobytes())
        h.update(repr((t.width, t.height, t.quality)).encode())
    return h.hexdigest()[:32]


# Digests of the default model's output, taken before the population model existed: galleries,
# code training and benchmarks built on template_impressions must not move.
PINNED = [((0, 3), "353c0bf5efcb0829d3597acc855bec24"),
          ((5, 3), "81222d4f4ea853c1f688a5d9e8f524e7"),
          ((12345, 4), "8a7d9ba2b0385848a35c8c666e9225a8"),
          ((10_000_016 * 16 + 3, 2), "ea377f70bf5447e93fb4fcba98969115"),
          ((2**31 + 7, 2), "0d08879be85aadeacbce1034e84ef351")]


@pytest.mark.parametrize("args,digest", PINNED)
def test_default_model_unchanged(args, digest):
    assert _digest(template_impressions(*args)) == digest
    assert _digest(template_impressions(*args, model=TemplateModel())) == digest


def test_custom_template_model_unchanged():
    easy = TemplateModel(p_missing=0.0, spurious_rate=0.0)
    assert _digest(template_impressions(5, 2, easy)) == "25e9519d345dd35420c48c6a69969987"


def test_population_deterministic():
    a = person_impressions(42, 2)
    b = person_impressions(42, 2)
    assert sorted(a) == list(range(1, 11))
    for p in a:
        assert _digest(a[p]) == _digest(b[p])
        assert _digest(a[p]) == _digest(template_impressions(42 * 16 + p, 2, REGISTRY_POPULATION))


def test_severity_zero_is_the_good_print():
    # A capture of severity 0 is exactly the template of the population's impression model.
    pop = replace(REGISTRY_POPULATION, poor_person_share=0.0, poor_finger_share=0.0, poor_capture_share=0.0,
                  minutiae_count_log_sd=0.0)
    for seed in (3, 77, 1234):
        assert capture_severity(seed, 0, pop) == 0.0
        assert _digest(template_impressions(seed, 3, pop)) == _digest(template_impressions(seed, 3, pop.impression))
    same = replace(pop, impression=TemplateModel())
    assert _digest(template_impressions(5, 3, same)) == PINNED[1][1]


def test_person_severity_shared_by_all_fingers_and_captures():
    pop = replace(REGISTRY_POPULATION, poor_person_share=1.0, poor_finger_share=0.0, poor_capture_share=0.0)
    for person in (1, 2, 3):
        sev = {capture_severity(person * 16 + p, i, pop) for p in range(1, 11) for i in range(3)}
        assert len(sev) == 1 and 0.0 < sev.pop() < 1.0


def test_shares_are_respected():
    pop = REGISTRY_POPULATION
    persons = 4000
    poor = np.mean([capture_severity(k * 16 + 1, 0, replace(pop, poor_finger_share=0.0, poor_capture_share=0.0)) > 0
                    for k in range(persons)])
    assert abs(poor - pop.poor_person_share) < 4 * np.sqrt(pop.poor_person_share / persons) + 1e-3


def test_poor_people_score_low_on_every_finger():
    from biomatch.match import FingerprintMatcher

    pop = replace(REGISTRY_POPULATION, poor_finger_share=0.0, poor_capture_share=0.0)
    poor = [k for k in range(2000) if capture_severity(k * 16 + 1, 0, pop) > 0.7][:4]
    good = [k for k in range(300) if capture_severity(k * 16 + 1, 0, pop) == 0.0][:4]
    assert len(poor) == 4 and len(good) == 4

    def scores(k):
        return [FingerprintMatcher(a).match(b) for a, b in person_impressions(k, 2, pop).values()]

    poor_scores, good_scores = np.array([scores(k) for k in poor]), np.array([scores(k) for k in good])
    # A poor person's median finger is near the impostor range (FMR 1% at ~0.05-0.07); a good one's far above.
    assert np.median(poor_scores, axis=1).max() < 0.1 < np.median(good_scores, axis=1).min()


def test_invalid_arguments():
    with pytest.raises(InvalidInputError, match="poor_person_share"):
        PopulationModel(poor_person_share=1.5)
    with pytest.raises(InvalidInputError, match="poor_contact_max"):
        PopulationModel(poor_contact_max=0.0)
    with pytest.raises(InvalidInputError, match="model"):
        template_impressions(1, 1, model="registry")
    with pytest.raises(InvalidInputError, match="person_seed"):
        person_impressions(-1, 1)
    with pytest.raises(InvalidInputError, match="positions"):
        person_impressions(1, 1, positions=(0,))
