"""The FAISS PDQ index against the brute-force reference: the same hits at the same distances,
on random hashes and on PDQ hashes of generated images and their altered copies."""

from __future__ import annotations

import io

import numpy as np
import pytest

from workbench.bench.pdq import ALTERATIONS, clustered_hashes, flip_bits, random_hashes, scene
from workbench.services.scan.banks.index import (
    BruteForcePDQIndex,
    MultiHashPDQIndex,
    pdq_array,
)
from workbench.services.scan.banks.signals import PDQ_MATCH_DISTANCE, PDQHasher, pdq_of_pixels


def test_brute_force_distance_is_the_count_of_differing_bits() -> None:
    rng = np.random.default_rng(1)
    stored = random_hashes(50, rng)
    query = stored[7]
    expected = [int(np.unpackbits(row ^ query).sum()) for row in stored]
    assert BruteForcePDQIndex(stored).distances(query).tolist() == expected
    assert expected[7] == 0


@pytest.mark.parametrize("threshold", [0, 15, 31, 63])
def test_multihash_index_finds_exactly_what_brute_force_finds_on_random_hashes(
    threshold: int,
) -> None:
    rng = np.random.default_rng(threshold)
    stored = random_hashes(3000, rng)
    # Copies with 0 to threshold + 8 bits flipped straddle the threshold; strangers match nothing.
    picked = rng.choice(len(stored), size=150, replace=False)
    near = flip_bits(stored[picked], rng.integers(0, threshold + 9, size=150), rng)
    queries = np.concatenate([near, random_hashes(50, rng)])
    brute = BruteForcePDQIndex(stored).search(queries, threshold)
    fast = MultiHashPDQIndex(stored).search(queries, threshold)
    assert fast == brute
    # The comparison means something: some copies are found, some fall beyond the threshold.
    found = sum(1 for hits in brute[:150] if hits)
    assert 0 < found < 150 or threshold == 63


def test_altered_copies_of_generated_images_are_found_by_both_indexes() -> None:
    originals, altered = clustered_hashes(10, seed=3)
    rng = np.random.default_rng(3)
    # The scenes among unrelated hashes, as in a real bank.
    stored = np.concatenate([pdq_array(originals), random_hashes(2000, rng)])
    brute, fast = BruteForcePDQIndex(stored), MultiHashPDQIndex(stored)
    for name in ALTERATIONS:
        queries = pdq_array(altered[name])
        want = brute.search(queries)
        assert fast.search(queries) == want, name
        for i, hits in enumerate(want):
            assert i in {pos for pos, _ in hits}, f"{name} copy of scene {i} not within 31 bits"


def test_an_unrelated_image_matches_no_scene() -> None:
    originals, _ = clustered_hashes(10, seed=4)
    stranger = pdq_array([pdq_of_pixels(np.asarray(scene(999)))[0]])
    index = MultiHashPDQIndex(pdq_array(originals))
    assert index.search(stranger) == [[]]


def test_empty_index_answers_every_query_with_nothing() -> None:
    queries = random_hashes(3, np.random.default_rng(0))
    assert MultiHashPDQIndex(pdq_array([])).search(queries) == [[], [], []]
    assert BruteForcePDQIndex(pdq_array([])).search(queries) == [[], [], []]


def test_hex_layout_matches_threatexchange() -> None:
    """pytx writes PDQ bits high-first per hex digit; the same image gives the same hex here."""
    bits = np.zeros(256, dtype=np.uint8)
    bits[0] = 1  # the first bit is the top bit of the first hex digit
    bits[255] = 1
    assert np.packbits(bits).tobytes().hex() == "8" + "0" * 62 + "1"
    image = scene(5)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    signal = PDQHasher.hash_bytes(buffer.getvalue())
    assert signal.value == pdq_of_pixels(np.asarray(image))[0]
    assert signal.quality is not None and signal.quality >= 50
    assert PDQ_MATCH_DISTANCE == 31
