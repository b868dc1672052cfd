import numpy as np
import pytest

from datasets.generator import PersonGenerator
from datasets.images import prepare


def test_deterministic_and_order_independent():
    a = PersonGenerator(5, 128, 64)
    b = PersonGenerator(5, 128, 64)
    first = a.render(3, 1, 2)
    b.render(9, 0, 0)  # another image made before does not change it
    np.testing.assert_array_equal(first, b.render(3, 1, 2))
    assert first.shape == (128, 64, 3) and first.dtype == np.uint8
    assert not np.array_equal(first, PersonGenerator(6, 128, 64).render(3, 1, 2))


def test_sizes_and_bad_size():
    assert PersonGenerator(0, 64, 32).render(0, 0, 0).shape == (64, 32, 3)
    assert PersonGenerator(0, 256, 128).render(0, 0, 0).shape == (256, 128, 3)
    with pytest.raises(ValueError, match="at least"):
        PersonGenerator(0, 20, 10)
    with pytest.raises(ValueError, match="camera"):
        PersonGenerator(0, 64, 32).render(0, 5, 0)


def _centre(img):
    h, w = img.shape[:2]
    return img[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4].astype(float)


def test_same_identity_closer_than_other_identities():
    g = PersonGenerator(1, 128, 64)
    # mean colour of the person's centre: images of one person agree more than across people
    same, other = [], []
    for pid in range(20):
        a, b = _centre(g.render(pid, 0, 0)).mean((0, 1)), _centre(g.render(pid, 0, 1)).mean((0, 1))
        c = _centre(g.render(pid + 1, 0, 0)).mean((0, 1))
        same.append(np.abs(a - b).sum())
        other.append(np.abs(a - c).sum())
    assert np.mean(same) < np.mean(other)


def test_downsampling_removes_fine_detail():
    g = PersonGenerator(2, 128, 64)
    hf_hr, hf_lr = [], []
    for pid in range(10):
        img = g.render(pid, 0, 0)
        lr = prepare(img, 4, (128, 64)).transpose(1, 2, 0).astype(float)
        hr = img.astype(float)
        hf_hr.append(np.abs(np.diff(hr, axis=0)).mean() + np.abs(np.diff(hr, axis=1)).mean())
        hf_lr.append(np.abs(np.diff(lr, axis=0)).mean() + np.abs(np.diff(lr, axis=1)).mean())
    assert np.mean(hf_lr) < 0.6 * np.mean(hf_hr)


def test_identity_attributes_vary():
    g = PersonGenerator(0)
    ids = [g.identity(p) for p in range(60)]
    assert len({i.top_texture for i in ids}) == 4
    assert len({i.emblem for i in ids}) == 4
    assert len({i.bag for i in ids}) == 3
