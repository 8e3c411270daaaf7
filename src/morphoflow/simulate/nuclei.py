"""Wide-domain synthetic fluorescence nuclei, for training nucleus models that generalise.

Each image draws its own acquisition and biology: nucleus size (4-30 px radius), shape
(eccentricity, irregular outlines), density (sparse to crowded, touching and overlapping),
chromatin texture, nucleoli, bright mitotic nuclei, per-nucleus brightness, uneven background
and haze, focus blur, photon shot noise and read noise, and bit depth (8, 12 or 16 bit, with a
random share of the range used and occasional saturation). The label image follows the drawing
order: where nuclei overlap, the one drawn last owns the pixels.

The Cell Painting screen simulator (:mod:`morphoflow.simulate`) renders one narrow
domain on purpose (its cell lines); this generator is deliberately broad.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from scipy import ndimage as ndi


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    noise = ndi.gaussian_filter(rng.standard_normal(shape), sigma)
    std = noise.std()
    return noise / std if std > 0 else noise


def random_nuclei_image(
    rng: np.random.Generator, shape: tuple[int, int] = (256, 256)
) -> tuple[np.ndarray, np.ndarray]:
    """Draw one synthetic nucleus image and its instance labels.

    Args:
        rng: Random generator (the image is a deterministic function of its state).
        shape: (H, W) of the image.

    Returns:
        The image (uint8 or uint16, depending on the drawn bit depth) and the labels (uint32).
    """
    h, w = shape
    radius = float(np.exp(rng.uniform(np.log(4.0), np.log(30.0))))
    radius_cv = rng.uniform(0.08, 0.3)
    axis_ratio_min = rng.uniform(0.45, 0.95)
    irregularity = rng.uniform(0.0, 0.12)
    coverage = rng.uniform(0.03, 0.5)
    n_target = max(1, int(coverage * h * w / (np.pi * radius**2)))
    n_target = min(n_target, 600)
    brightness_cv = rng.uniform(0.1, 0.5)
    texture_amp = rng.uniform(0.0, 0.5)
    texture_sigma = rng.uniform(0.7, 2.5)
    rim_falloff = rng.uniform(0.0, 0.5)
    max_overlap = rng.uniform(0.0, 0.25)

    signal = np.zeros(shape, np.float32)
    labels = np.zeros(shape, np.uint32)
    texture = 1.0 + texture_amp * _smooth_noise(rng, shape, texture_sigma)
    yy_full, xx_full = np.mgrid[:h, :w]
    count = 0
    for _ in range(n_target * 3):
        if count >= n_target:
            break
        r = radius * float(np.clip(rng.normal(1.0, radius_cv), 0.4, 2.0))
        mitotic = rng.random() < 0.03
        if mitotic:
            r *= 0.6
        a = r / np.sqrt(rng.uniform(axis_ratio_min, 1.0))
        b = r * np.sqrt(rng.uniform(axis_ratio_min, 1.0))
        cy, cx = rng.uniform(-0.3 * r, h + 0.3 * r), rng.uniform(-0.3 * r, w + 0.3 * r)
        ext = int(np.ceil(max(a, b) * (1 + 3 * irregularity))) + 2
        y0, y1 = max(0, int(cy) - ext), min(h, int(cy) + ext + 1)
        x0, x1 = max(0, int(cx) - ext), min(w, int(cx) + ext + 1)
        if y1 <= y0 or x1 <= x0:
            continue
        yy = yy_full[y0:y1, x0:x1] - cy
        xx = xx_full[y0:y1, x0:x1] - cx
        angle = rng.uniform(0, np.pi)
        u = xx * np.cos(angle) + yy * np.sin(angle)
        v = -xx * np.sin(angle) + yy * np.cos(angle)
        theta = np.arctan2(v, u)
        outline = np.ones_like(theta)
        for k in range(2, 6):
            outline += (
                irregularity
                / (k - 1)
                * rng.normal()
                * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
            )
        rho = np.sqrt((u / a) ** 2 + (v / b) ** 2) / np.maximum(outline, 0.5)
        inside = rho <= 1.0
        area = int(inside.sum())
        if area < 6:
            continue
        box_labels = labels[y0:y1, x0:x1]
        if np.count_nonzero(box_labels[inside]) > max_overlap * area:
            continue
        count += 1
        peak = float(np.exp(rng.normal(0.0, brightness_cv))) * (2.5 if mitotic else 1.0)
        profile = peak * (1.0 - rim_falloff * rho**2)
        if not mitotic and rng.random() < 0.4 and r > 6:
            for _ in range(int(rng.integers(1, 4))):
                ny, nx = rng.normal(0, 0.35 * b), rng.normal(0, 0.35 * a)
                spot = np.exp(-(((v - ny) ** 2 + (u - nx) ** 2) / (2 * (0.15 * r) ** 2)))
                profile = profile * (1 - 0.5 * spot)
        box_signal = signal[y0:y1, x0:x1]
        box_signal[inside] = profile[inside]
        box_labels[inside] = count

    # drop fragments left by later nuclei covering earlier ones
    areas = np.bincount(labels.ravel(), minlength=count + 1)
    small = np.flatnonzero(areas < 6)
    small = small[small > 0]
    if small.size:
        mask = np.isin(labels, small)
        labels[mask] = 0
        signal[mask] = 0
    from skimage.segmentation import relabel_sequential

    labels = relabel_sequential(labels)[0].astype(np.uint32)

    image = signal * np.clip(texture, 0.2, None)
    # background: offset, smooth gradient / vignetting, out-of-focus haze near nuclei
    background = rng.uniform(0.0, 0.25) * (
        1 + rng.uniform(0, 0.8) * _smooth_noise(rng, shape, h / 4)
    )
    haze = ndi.gaussian_filter(signal, rng.uniform(3, 10)) * rng.uniform(0.0, 0.4)
    image = image + np.clip(background, 0, None) + haze
    image = ndi.gaussian_filter(image, rng.uniform(0.0, 0.12 * radius + 0.8))
    # photons: shot noise + read noise
    photons = float(np.exp(rng.uniform(np.log(15.0), np.log(3000.0))))
    image = rng.poisson(np.clip(image, 0, None) * photons).astype(np.float32) / photons
    image += rng.normal(0, rng.uniform(0.0, 0.04), shape).astype(np.float32)
    # camera: bit depth, share of the range used, offset, occasional saturation
    bits = int(rng.choice([8, 12, 16], p=[0.35, 0.35, 0.3]))
    full = 2**bits - 1
    top = float(np.percentile(image, 99.9)) or 1.0
    scale = full * rng.uniform(0.05, 1.1) / top
    offset = full * rng.uniform(0.0, 0.05)
    digital = np.clip(np.round(image * scale + offset), 0, full)
    dtype = np.uint8 if bits == 8 else np.uint16
    return digital.astype(dtype), labels


def nuclei_images(
    seed: int, shape: tuple[int, int] = (256, 256)
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Endless stream of :func:`random_nuclei_image` draws from one seed."""
    rng = np.random.default_rng(seed)
    while True:
        yield random_nuclei_image(rng, shape)


def empty_field(
    rng: np.random.Generator,
    shape: tuple[int, int] = (256, 256),
    background: float = 400.0,
    gradient: float = 0.2,
    electrons_per_adu: float = 2.0,
    read_noise: float = 3.0,
    offset: float = 100.0,
) -> np.ndarray:
    """A background-only uint16 camera image: a left-to-right illumination gradient and noise.

    Pixel (y, x) collects ``background * (1 + gradient * x / (W - 1))`` ADU of light, i.e.
    that many ADU times ``electrons_per_adu`` photo-electrons, drawn from a Poisson distribution
    (shot noise); Gaussian read noise of ``read_noise`` ADU and a camera ``offset`` are added,
    and the result is rounded and clipped to uint16. No nucleus: a correct segmentation is
    empty.

    Args:
        rng: Random generator.
        shape: (H, W) in pixels.
        background: Background light at the left edge, ADU (>= 0).
        gradient: Relative brightening from the left to the right edge (0.2 = 20 %).
        electrons_per_adu: Camera gain, photo-electrons per ADU (> 0).
        read_noise: Read noise standard deviation, ADU (>= 0).
        offset: Camera offset (bias), ADU.

    Returns:
        uint16 array of ``shape``.

    Raises:
        ValueError: A parameter is out of range.
    """
    h, w = (int(s) for s in shape)
    if h < 1 or w < 1:
        raise ValueError(f"shape must be positive, got {shape!r}")
    if background < 0 or electrons_per_adu <= 0 or read_noise < 0:
        raise ValueError(
            "need background >= 0, electrons_per_adu > 0 and read_noise >= 0, got "
            f"{background}, {electrons_per_adu}, {read_noise}"
        )
    ramp = background * (1.0 + gradient * np.arange(w) / max(w - 1, 1))
    light = np.broadcast_to(ramp[None, :], (h, w))
    electrons = rng.poisson(light * electrons_per_adu)
    adu = electrons / electrons_per_adu + offset + rng.normal(0.0, read_noise, (h, w))
    return np.clip(np.round(adu), 0, 65535).astype(np.uint16)
