"""Procedural person-like crops for testing cross-resolution ReID without any real dataset.

Identity is carried by two kinds of cue:

* coarse cues that survive down-sampling: clothing colours (from small palettes, so many people
  share them), body proportions, hair, a bag;
* fine cues that down-sampling by r in {2, 3, 4} destroys: 1-pixel stripe or dot textures on the
  top, pinstripes on the trousers, a small emblem on the chest, a thin belt, bag straps, shoe
  colour.

So an HR->HR match can use everything while an LR->HR match must rely on coarse cues, which are
ambiguous: the resolution gap the MLR task is about. Each camera has its own illumination gain,
colour cast and background clutter; each image draws a viewpoint (front/back/side changes which
cues show), pose and scale jitter, an offset, occasional occlusion and sensor noise.

Everything is deterministic: an identity from ``(seed, pid)``, an image from
``(seed, pid, camera, index)``, independent of the order in which images are made.
Drawing uses array slicing (rectangles, strided 1-pixel lines, small cached masks), no per-pixel
Python, so a 128x64 crop takes a fraction of a millisecond.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

#: bump when the drawing changes: it is part of generated data's fingerprint (run identity)
GENERATOR_VERSION = 1

# Coarse palettes (RGB 0..255). Small on purpose: many identities share coarse colours.
TOP_COLOURS = np.array(
    [[200, 30, 30], [30, 60, 170], [30, 140, 60], [230, 200, 40], [235, 235, 235],
     [25, 25, 25], [120, 40, 140], [240, 120, 30], [120, 120, 125], [90, 170, 210]],
    dtype=np.float32,
)
BOTTOM_COLOURS = np.array(
    [[30, 35, 60], [20, 20, 20], [110, 110, 115], [150, 120, 80], [60, 90, 150],
     [200, 195, 185], [70, 50, 35]],
    dtype=np.float32,
)
SKIN = np.array([[240, 200, 170], [210, 160, 120], [160, 110, 75], [100, 65, 45]], np.float32)
HAIR = np.array([[20, 15, 10], [90, 60, 30], [200, 170, 90], [140, 140, 140]], np.float32)
ACCENT = np.array(  # fine-cue colours: textures, emblem, shoes, belt, straps
    [[250, 250, 250], [10, 10, 10], [220, 20, 60], [20, 200, 220], [250, 220, 0],
     [0, 160, 80], [250, 100, 180], [120, 60, 200]],
    dtype=np.float32,
)
BAG_COLOURS = np.array(
    [[60, 40, 30], [20, 20, 25], [150, 30, 30], [40, 80, 40], [180, 150, 100]], np.float32
)

TOP_TEXTURES = ("plain", "hstripes", "vstripes", "dots")
EMBLEMS = ("none", "square", "plus", "diamond")
BAGS = ("none", "backpack", "shoulder")
VIEWS = ("front", "back", "side")


@dataclass(frozen=True)
class Identity:
    """The appearance of one person (fixed across cameras and images)."""

    pid: int
    top: np.ndarray
    bottom: np.ndarray
    skin: np.ndarray
    hair: np.ndarray
    long_hair: bool
    height_scale: float
    width_scale: float
    leg_ratio: float
    top_texture: str
    texture_colour: np.ndarray
    texture_period: int
    pinstripes: bool
    pinstripe_colour: np.ndarray
    emblem: str
    emblem_colour: np.ndarray
    emblem_pos: float  # -1 (left) .. 1 (right) across the chest
    belt: bool
    belt_colour: np.ndarray
    shoes: np.ndarray
    bag: str
    bag_colour: np.ndarray
    strap_colour: np.ndarray


@dataclass(frozen=True)
class Camera:
    """What one camera does to every image: colour cast, gain, background clutter."""

    gain: np.ndarray  # per channel
    backgrounds: np.ndarray  # (n, 2H, 2W, 3) float32 clutter to crop from
    noise_sigma: float


def _jitter(rng: np.random.Generator, colour: np.ndarray, amount: float) -> np.ndarray:
    return np.clip(colour + rng.normal(0.0, amount, 3), 0, 255).astype(np.float32)


@lru_cache(maxsize=256)
def _disc(radius: int) -> np.ndarray:
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return (yy * yy + xx * xx) <= radius * radius + radius * 0.5


@lru_cache(maxsize=256)
def _emblem_mask(shape: str, size: int) -> np.ndarray:
    size = max(size, 3)
    c = size // 2
    yy, xx = np.mgrid[0:size, 0:size]
    if shape == "square":
        m = np.ones((size, size), bool)
        m[1:-1, 1:-1] = size < 5  # a hollow square once there is room for a hole
    elif shape == "plus":
        m = (np.abs(yy - c) <= size // 6) | (np.abs(xx - c) <= size // 6)
    else:  # diamond
        m = (np.abs(yy - c) + np.abs(xx - c)) <= c
    return m


def _paint(img: np.ndarray, y0: float, y1: float, x0: float, x1: float, colour: np.ndarray,
           mask: np.ndarray | None = None, step_y: int = 1, step_x: int = 1) -> None:
    """Fill the clipped box [y0, y1) x [x0, x1) (every step-th row/column), optionally masked."""
    h, w = img.shape[:2]
    iy0, iy1, ix0, ix1 = int(round(y0)), int(round(y1)), int(round(x0)), int(round(x1))
    if mask is not None:
        my0, mx0 = max(0, -iy0), max(0, -ix0)
        iy1, ix1 = min(h, iy0 + mask.shape[0]), min(w, ix0 + mask.shape[1])
        iy0, ix0 = max(0, iy0), max(0, ix0)
        if iy1 <= iy0 or ix1 <= ix0:
            return
        sub = mask[my0 : my0 + iy1 - iy0, mx0 : mx0 + ix1 - ix0]
        img[iy0:iy1, ix0:ix1][sub] = colour
        return
    iy0, iy1, ix0, ix1 = max(0, iy0), min(h, iy1), max(0, ix0), min(w, ix1)
    if iy1 > iy0 and ix1 > ix0:
        img[iy0:iy1:step_y, ix0:ix1:step_x] = colour


class PersonGenerator:
    """Deterministic generator of person-like RGB crops of a fixed size.

    Args:
        seed: the dataset seed; identities, cameras and images all derive from it.
        height, width: crop size in pixels (the fine cues are 1 pixel wide at any size).
        num_cameras: cameras with their own colour cast, gain and background clutter.
    """

    def __init__(self, seed: int, height: int = 128, width: int = 64, num_cameras: int = 2):
        if height < 32 or width < 16:
            raise ValueError(f"generated crops must be at least 32x16; got {height}x{width}")
        self.seed, self.height, self.width = int(seed), int(height), int(width)
        self.cameras = [self._make_camera(c) for c in range(num_cameras)]
        noise_rng = np.random.default_rng([self.seed, 7, 7])
        self._noise = noise_rng.normal(0, 1, (2 * height, 2 * width, 3)).astype(np.float32)
        self._identities: dict[int, Identity] = {}

    # -- identities and cameras -------------------------------------------------------------
    def identity(self, pid: int) -> Identity:
        """The appearance of person ``pid`` (cached)."""
        found = self._identities.get(pid)
        if found is not None:
            return found
        rng = np.random.default_rng([self.seed, 1, pid])
        pick = lambda table: table[rng.integers(len(table))]  # noqa: E731
        ident = Identity(
            pid=pid,
            top=_jitter(rng, pick(TOP_COLOURS), 12),
            bottom=_jitter(rng, pick(BOTTOM_COLOURS), 10),
            skin=_jitter(rng, pick(SKIN), 6),
            hair=_jitter(rng, pick(HAIR), 6),
            long_hair=bool(rng.random() < 0.35),
            height_scale=float(rng.uniform(0.86, 1.0)),
            width_scale=float(rng.uniform(0.8, 1.15)),
            leg_ratio=float(rng.uniform(0.42, 0.5)),
            top_texture=str(TOP_TEXTURES[rng.integers(len(TOP_TEXTURES))]),
            texture_colour=pick(ACCENT).copy(),
            texture_period=int(rng.integers(2, 5)),
            pinstripes=bool(rng.random() < 0.4),
            pinstripe_colour=pick(ACCENT).copy(),
            emblem=str(EMBLEMS[rng.integers(len(EMBLEMS))]),
            emblem_colour=pick(ACCENT).copy(),
            emblem_pos=float(rng.choice([-0.5, 0.0, 0.5])),
            belt=bool(rng.random() < 0.5),
            belt_colour=pick(ACCENT).copy(),
            shoes=pick(ACCENT).copy(),
            bag=str(BAGS[rng.choice(3, p=[0.4, 0.3, 0.3])]),
            bag_colour=_jitter(rng, pick(BAG_COLOURS), 8),
            strap_colour=pick(ACCENT).copy(),
        )
        self._identities[pid] = ident
        return ident

    def _make_camera(self, cam: int) -> Camera:
        rng = np.random.default_rng([self.seed, 2, cam])
        h, w = 2 * self.height, 2 * self.width
        banks = []
        base = rng.uniform(60, 200, 3)
        for _ in range(12):
            bg = np.empty((h, w, 3), np.float32)
            bg[:] = np.clip(base + rng.normal(0, 25, 3), 0, 255)
            # a vertical gradient (floor/wall), then clutter boxes and bars
            bg *= np.linspace(0.75, 1.15, h, dtype=np.float32)[:, None, None]
            for _ in range(int(rng.integers(6, 14))):
                y0, x0 = rng.integers(0, h), rng.integers(0, w)
                bh, bw = rng.integers(h // 20, h // 3), rng.integers(w // 12, w // 2)
                _paint(bg, y0, y0 + bh, x0, x0 + bw, rng.uniform(20, 235, 3).astype(np.float32))
            banks.append(np.clip(bg, 0, 255))
        gain = np.clip(rng.normal(1.0, 0.12, 3), 0.75, 1.25).astype(np.float32)
        return Camera(gain=gain, backgrounds=np.stack(banks),
                      noise_sigma=float(rng.uniform(3.0, 7.0)))

    # -- rendering ----------------------------------------------------------------------------
    def render(self, pid: int, cam: int, index: int) -> np.ndarray:
        """Image ``index`` of person ``pid`` in camera ``cam``: uint8 array (H, W, 3)."""
        if not 0 <= cam < len(self.cameras):
            raise ValueError(f"camera {cam} out of range 0..{len(self.cameras) - 1}")
        ident = self.identity(pid)
        camera = self.cameras[cam]
        rng = np.random.default_rng([self.seed, 3, pid, cam, index])
        u = rng.random(20)
        H, W = self.height, self.width

        # background: a random crop of one of the camera's clutter panels
        bg = camera.backgrounds[int(u[0] * len(camera.backgrounds))]
        oy, ox = int(u[1] * H), int(u[2] * W)
        img = bg[oy : oy + H, ox : ox + W].copy()

        view = VIEWS[int(u[3] * 3)]
        mirror = u[4] < 0.5
        scale = 0.84 + 0.14 * u[5]
        ph = scale * ident.height_scale * H  # person height in pixels
        cx = W / 2 + (u[6] - 0.5) * 0.16 * W
        feet = H - 0.03 * H + (u[7] - 0.5) * 0.04 * H
        top = feet - ph
        width = 0.38 * W * ident.width_scale * (0.62 if view == "side" else 1.0)
        head_r = max(2, int(round(0.062 * ph)))
        neck = top + 2 * head_r
        hip = neck + (1.0 - ident.leg_ratio) * ph - 2 * head_r
        stride = (u[8] - 0.5) * 0.25 * width  # walking pose: legs apart

        x0, x1 = cx - width / 2, cx + width / 2
        # legs and shoes
        leg_w = 0.42 * width
        shoe_h = max(2.0, 0.035 * ph)
        for side, sgn in ((x0 + 0.04 * width, -1), (x1 - 0.04 * width - leg_w, 1)):
            lx = side + sgn * stride
            _paint(img, hip, feet - shoe_h, lx, lx + leg_w, ident.bottom)
            if ident.pinstripes:  # fine: 1-pixel vertical pinstripes every 3 columns
                _paint(img, hip, feet - shoe_h, lx + 1, lx + leg_w - 1, ident.pinstripe_colour,
                       step_x=3)
            _paint(img, feet - shoe_h, feet, lx - 1, lx + leg_w + 1, ident.shoes)
        # arms (sleeves) then torso
        arm_w = 0.16 * width / (0.62 if view == "side" else 1.0)
        arm_swing = (u[9] - 0.5) * 0.06 * H
        if view == "side":
            ax = cx - arm_w / 2 + (u[10] - 0.5) * 0.2 * width
            _paint(img, neck + 1 + arm_swing, hip + 0.12 * ph + arm_swing, ax, ax + arm_w,
                   ident.top * 0.85)
        else:
            for ax in (x0 - arm_w, x1):
                _paint(img, neck + 1, hip + 0.1 * ph, ax, ax + arm_w, ident.top * 0.9)
                _paint(img, hip + 0.1 * ph, hip + 0.14 * ph, ax, ax + arm_w, ident.skin)
        _paint(img, neck, hip, x0, x1, ident.top)
        # fine texture on the top
        period = max(2, int(round(ident.texture_period * H / 128)))
        if ident.top_texture == "hstripes":
            _paint(img, neck + 1, hip, x0, x1, ident.texture_colour, step_y=period)
        elif ident.top_texture == "vstripes":
            _paint(img, neck + 1, hip, x0 + 1, x1, ident.texture_colour, step_x=period)
        elif ident.top_texture == "dots":
            _paint(img, neck + 1, hip, x0 + 1, x1, ident.texture_colour, step_y=period,
                   step_x=period)
        if ident.belt:  # fine: a 1-2 pixel belt
            _paint(img, hip - max(1, H // 100), hip + max(1, H // 128), x0, x1, ident.belt_colour)

        # bag: shows differently with the viewpoint
        torso_h = hip - neck
        if ident.bag == "backpack":
            if view == "back":
                _paint(img, neck + 0.1 * torso_h, neck + 0.8 * torso_h, x0 + 0.12 * width,
                       x1 - 0.12 * width, ident.bag_colour)
            elif view == "front":  # only the two straps show: fine cues
                for sx in (x0 + 0.22 * width, x1 - 0.22 * width):
                    _paint(img, neck, neck + 0.7 * torso_h, sx, sx + max(1, W // 64),
                           ident.strap_colour)
            else:
                bx = x1 if not mirror else x0 - 0.35 * width
                _paint(img, neck + 0.1 * torso_h, neck + 0.75 * torso_h, bx, bx + 0.35 * width,
                       ident.bag_colour)
        elif ident.bag == "shoulder":
            bx = x1 - 0.05 * width if not mirror else x0 - 0.3 * width
            _paint(img, hip - 0.2 * torso_h, hip + 0.25 * torso_h, bx, bx + 0.35 * width,
                   ident.bag_colour)
            steps = max(4, int(torso_h // 2))  # a diagonal 1-pixel strap across the torso
            for k in range(steps):
                t = k / steps
                sy = neck + t * 0.8 * torso_h
                sx = (x0 + t * width) if not mirror else (x1 - t * width)
                _paint(img, sy, sy + 1, sx, sx + 1, ident.strap_colour)

        if view == "front" and ident.emblem != "none":  # fine: a small emblem on the chest
            size = max(3, int(round(0.05 * ph)))
            ex = cx + ident.emblem_pos * 0.25 * width - size / 2
            ey = neck + 0.22 * torso_h
            _paint(img, ey, ey, ex, ex, ident.emblem_colour, mask=_emblem_mask(ident.emblem, size))

        # head and hair
        disc = _disc(head_r)
        hx, hy = cx - head_r + (0.15 * width if view == "side" and not mirror else 0), top
        if view == "side" and mirror:
            hx -= 0.15 * width
        if ident.long_hair:
            _paint(img, hy + head_r, neck + 0.25 * torso_h, hx, hx + 2 * head_r + 1, ident.hair)
        _paint(img, hy, hy, hx, hx, ident.skin if view != "back" else ident.hair, mask=disc)
        _paint(img, hy, hy + max(1, 0.7 * head_r), hx, hx, ident.hair,
               mask=disc[: max(1, int(0.7 * head_r))])

        # occlusion by a foreground object (15 %)
        if u[11] < 0.15:
            oh, ow = (0.2 + 0.25 * u[12]) * H, (0.3 + 0.5 * u[13]) * W
            oxx = (W - ow) * u[14]
            _paint(img, H - oh, H, oxx, oxx + ow, bg[int(u[15] * (H - 1)), int(u[16] * (W - 1))]
                   * 0.6)
        if mirror:
            img = img[:, ::-1]

        # camera: illumination and colour cast, then sensor noise
        brightness = 0.85 + 0.3 * u[17]
        img = img * (camera.gain * brightness)
        ny, nx = int(u[18] * self.height), int(u[19] * self.width)
        img += self._noise[ny : ny + H, nx : nx + W] * camera.noise_sigma
        return np.clip(img, 0, 255).astype(np.uint8)
