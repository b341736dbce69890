"""`.npy` inputs: wrong shapes and dtypes, NaN and infinities, truncated files, hostile
headers and pickled objects are refused with their documented error; Fortran order, the
other byte order and newer format versions are accepted with the array's own map."""

from __future__ import annotations

import pytest
from e2e.helpers import side_effects

from badinput.cases import NPY_ACCEPTED, NPY_REFUSED, pickled_npy
from badinput.helpers import assert_error, check_real_job, check_refused, post_file, tally

FAMILY = ".npy arrays"


@pytest.mark.parametrize("case", NPY_REFUSED, ids=str)
def test_a_bad_array_is_refused_and_stores_nothing(bad, mallory, bad_model, case):
    check_refused(bad, mallory, bad_model, case, "jobs", FAMILY)


def test_the_pickled_array_would_run_if_unpickled(tmp_path):
    import io
    import os

    import numpy as np

    control = tmp_path / "control"
    array = np.load(io.BytesIO(pickled_npy(str(control))), allow_pickle=True)
    os.close(array[0, 0, 0])
    assert control.is_file()


@pytest.mark.parametrize("route", ["jobs", "uploads"])
def test_a_pickled_object_array_is_refused_without_unpickling(bad, mallory, bad_model, route,
                                                              tmp_path):
    created = tmp_path / "unpickled"
    before = side_effects(bad)
    response = post_file(mallory, bad.url, route, bad_model, "evil.npy",
                         pickled_npy(str(created)))
    assert_error(response, 422, "undecodable_input", "float32")
    assert not created.exists()
    assert side_effects(bad) == before
    tally(FAMILY)


def test_after_arrays_unusual_but_valid_ones_get_their_maps(bad, mallory, bad_model, reference,
                                                             worker):
    check_real_job(bad, mallory, bad_model, reference, worker, NPY_ACCEPTED)
    tally(FAMILY, len(NPY_ACCEPTED))
