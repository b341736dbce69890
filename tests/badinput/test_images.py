"""Bad images, as a job's upload and as a data-set upload: corrupt, truncated and polyglot
files, pixel and zlib bombs, extreme aspect ratios; and odd but valid images, accepted with
the map of the picture the test decoded itself."""

from __future__ import annotations

import pytest

from badinput.cases import (
    ASPECT,
    ASPECT_ACCEPTED,
    BOMBS,
    CORRUPT,
    ODD_MODES,
    POLYGLOTS,
)
from badinput.helpers import check_real_job, check_refused, tally

ROUTES = ("jobs", "uploads")


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("case", CORRUPT, ids=str)
def test_a_corrupt_or_truncated_file_is_refused_and_stores_nothing(bad, mallory, bad_model,
                                                                    case, route):
    check_refused(bad, mallory, bad_model, case, route, "corrupt/truncated/polyglot")


def test_after_corrupt_files_polyglots_that_are_valid_images_get_their_maps(
        bad, mallory, bad_model, reference, worker):
    check_real_job(bad, mallory, bad_model, reference, worker, POLYGLOTS)
    tally("corrupt/truncated/polyglot", len(POLYGLOTS))


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("case", BOMBS, ids=str)
def test_a_pixel_or_zlib_bomb_is_refused_before_decoding(bad, mallory, bad_model, case, route):
    check_refused(bad, mallory, bad_model, case, route, "pixel/zlib bombs")


def test_after_bombs_the_worker_lives_and_a_job_succeeds(bad, mallory, bad_model, reference,
                                                          worker):
    check_real_job(bad, mallory, bad_model, reference, worker)


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("case", ASPECT, ids=str)
def test_an_extreme_aspect_ratio_is_refused_at_the_api(bad, mallory, bad_model, case, route):
    check_refused(bad, mallory, bad_model, case, route, "aspect ratio")


def test_after_aspect_ratios_images_at_the_limit_get_their_maps(bad, mallory, bad_model,
                                                                 reference, worker):
    check_real_job(bad, mallory, bad_model, reference, worker, ASPECT_ACCEPTED)
    tally("aspect ratio", len(ASPECT_ACCEPTED))


def test_odd_modes_are_accepted_with_the_map_of_the_picture_decoded_here(
        bad, mallory, bad_model, reference, worker):
    check_real_job(bad, mallory, bad_model, reference, worker, ODD_MODES)
    tally("odd modes", len(ODD_MODES))
