"""The phantom's renderer: what a synthetic BESS frame looks like. A scene per operation (tissue layout,
nerve tubes, instruments, blood, bubbles, camera path) and :func:`render_frame`, which renders a frame and its
neural-tissue mask at any time of the operation. Kept apart from :mod:`endolib.data.phantom` (which decides how
many frames of which operation are rendered) because it alone defines the images.
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

pass

__all__ = ["make_scene", "render_frame", "frame_times", "Scene", "Look", "APPEARANCE"]


# ------------------------------------------------------------------------------------------- appearance
#: Geometry and appearance of the phantom, in *world units* (the frame side at zoom 1 is one world unit)
#: and linear RGB in [0, 1]. Every number the renderer uses is here, named.
APPEARANCE = {
    # geometry (world units; the camera, the canvas and the anatomy)
    "canvas_half": 1.5,  # the anatomy canvas spans [-1.5, 1.5]^2
    "camera_box": 0.75,  # camera centres stay within [-0.75, 0.75]^2 so the view never leaves the canvas
    "zoom": (0.85, 1.3),  # camera zoom range (1 = the frame side covers one world unit)
    "roll_drift": 0.6,  # radians of camera roll around the operation's base orientation
    "tremor": (0.01, 0.01, 0.015, 0.02),  # hand tremor amplitude of cx, cy, zoom, roll
    "positive_cover": (0.15, 0.5),  # visible nerve area / FOV area at a positive key pose
    "negative_margin": 0.05,  # clearance between the nerve and the FOV edge at a negative key pose
    "sac_radius": (0.17, 0.24),  # dural sac half-width
    "root_radius": (0.065, 0.095),  # nerve root half-width
    "patch_scale": 0.16,  # size of the tissue / ligament / bone / fat patchwork
    "cover_band": 0.03,  # how far ligament remnants and fat reach over the nerve's border
    "lamina_over_p": 0.5,  # share of operations where a lamina edge hides part of the nerve
    "foramen_cover": 2.2,  # radius of the bone over a root's end, in root radii
    "lobule_radius": 0.05,  # fat lobule radius
    "pore_scale": 0.014,  # bone pore size
    "grain_scale": 0.025,  # bone mottling size
    "vessel_scale": 0.08,  # curvature scale of the surface vessels of the dura
    # surface relief (world units): drives shading and where speculars glint
    "relief": {"tissue": 0.012, "nerve": 0.5, "ligament": 0.004, "bone": 0.004, "fat": 0.5},
    "fibre_across": 0.03,  # ligament fibre thickness
    "fibre_along": 0.3,  # ligament fibre length
    "fibre_directions": 8,  # fibre orientations available (multiples of 180 / n degrees)
    "nerve_shadow": (0.45, 0.025),  # darkening and width of the contact shadow around the nerve
    # colours (linear RGB in [0, 1]; per patient: mean + uniform jitter)
    "tissue_rgb": ((0.72, 0.28, 0.25), 0.04),
    "nerve_rgb": ((0.86, 0.72, 0.68), 0.02),
    "ligament_rgb": ((0.88, 0.76, 0.64), 0.02),
    "bone_rgb": ((0.88, 0.79, 0.66), 0.02),
    "fat_rgb": ((0.93, 0.78, 0.45), 0.04),
    # per-patient hue shifts (times a uniform draw in [-1, 1]): the look-alikes range from yellowish to as pink
    # as the nerve, so that no colour is the nerve's alone
    "hue_shift": {"nerve": (0.0, 0.01, -0.015), "ligament": (0.0, -0.06, 0.1), "bone": (0.0, -0.05, 0.09)},
    "vessel_rgb": (0.62, 0.18, 0.16),
    "stain": 0.3,  # strength of blood staining on the dura
    "nerve_shading": (0.45, 0.8, 0.07),  # brightness at the flanks, sheen strength, sheen width (profile units)
    "pit_rgb": (0.55, 0.2, 0.15),
    "metal_rgb": (0.62, 0.63, 0.66),
    "blood_rgb": (0.35, 0.03, 0.03),
    "blood_opacity": 0.5,  # densest blood cloud
    "texture_contrast": {"ligament": 0.3, "bone": 0.25},  # relative brightness SD of the look-alikes
    "gloss": {"tissue": 0.35, "nerve": 0.9, "ligament": 0.35, "bone": 0.1, "fat": 0.6},
    "white_balance": 0.15,  # per-patient channel gain jitter (+-)
    "brightness": (0.72, 1.0),  # per-patient exposure
    "gamma": 1.1,
    # optics and sensor
    "specular_power": 40.0,
    "fov_radius": (0.47, 0.56),  # field-of-view circle radius, fraction of the frame side (per patient)
    "vignette": (0.3, 0.55),  # brightness loss at the FOV edge (per patient)
    "outside_fov": 0.015,  # brightness of the dark corners
    "defocus_px": (0.2, 0.6),  # per-patient baseline defocus (pixels at 160 px)
    "defocus_extra_px": 1.5,  # extra defocus during focus drifts (pixels at 160 px)
    "shutter_s": 0.05,  # exposure time: motion streak length = speed x shutter
    "max_streak": 0.03,  # longest motion streak, fraction of the frame side
    "noise_sd": 0.012,  # sensor noise (fraction of full range)
    # dynamic objects
    "instrument_width": (0.1, 0.18),
    "instrument_reflection_p": 0.3,  # share of instruments with a nerve-coloured reflection
    "instruments_per_minute": 1.5,
    "instrument_dwell_s": (15.0, 60.0),
    "bubbles": 14,
    "bubble_radius": (0.008, 0.035),
    "bubble_life_s": 12.0,
    # annotation
    "min_polygon_area": 0.002,  # components smaller than this fraction of the frame are not annotated
}
#: Canvas side / frame side.
CANVAS_SCALE = 2 * APPEARANCE["canvas_half"]


# -------------------------------------------------------------------------------------------- noise kit
def _spectral_filter(shape: tuple[int, int], spec) -> np.ndarray:
    """Fourier filter of a smooth field: one Gaussian (``spec`` = sigma in pixels) or a weighted sum of terms
    ``((sigma, weight), ...)`` (multi-scale texture) or ``((sigma_along, sigma_across, angle),)`` (streaks)."""
    h, w = shape
    fy = np.fft.fftfreq(h).astype(np.float32)[:, None]
    fx = np.fft.fftfreq(w).astype(np.float32)[None, :]
    terms = ((spec, 1.0),) if np.isscalar(spec) else spec
    out = np.zeros((h, w), np.float32)
    for term in terms:
        if len(term) == 3:  # anisotropic: long along ``angle``
            s_u, s_v, ang = term
            fu = fx * math.cos(ang) + fy * math.sin(ang)
            fv = -fx * math.sin(ang) + fy * math.cos(ang)
            out += np.exp(-2.0 * math.pi ** 2 * (s_u ** 2 * fu ** 2 + s_v ** 2 * fv ** 2))
        else:  # each octave gets about unit variance before weighting
            s_, wt = term
            out += wt * math.sqrt(4 * math.pi) * max(s_, 0.5) * np.exp(-2.0 * (math.pi * s_) ** 2 * (fx ** 2 + fy ** 2))
    return out


def _fft_fields(rng: np.random.Generator, shape: tuple[int, int], spec) -> np.ndarray:
    """Two independent smooth Gaussian random fields (periodic, zero mean, unit SD) from one complex FFT."""
    white = rng.standard_normal(shape, dtype=np.float32) + 1j * rng.standard_normal(shape, dtype=np.float32)
    out = np.fft.ifft2(np.fft.fft2(white) * _spectral_filter(shape, spec))
    pair = np.stack([out.real, out.imag]).astype(np.float32)
    pair -= pair.mean(axis=(1, 2), keepdims=True)
    pair /= pair.std(axis=(1, 2), keepdims=True) + 1e-8
    return pair


#: Texture bank: smooth random fields are made once per (shape, spectrum) and reused by every operation through
#: random periodic shifts and flips -- the expensive FFTs are not repeated per operation.
_BANK: dict = {}
_BANK_SEED = 20240601
_BANK_MAX = 64


def _noise2(rng: np.random.Generator, shape: tuple[int, int], spec) -> tuple[np.ndarray, np.ndarray]:
    """Two independent smooth Gaussian random fields (periodic, zero mean, unit SD).

    Args:
        rng: random generator (chooses the shift and flips of the bank fields).
        shape: field shape.
        spec: correlation length in pixels, ``((sigma, weight), ...)`` for a multi-scale field or
            ``((sigma_along, sigma_across, angle),)`` for streaks (see :func:`_spectral_filter`).
    """
    key = (tuple(shape), repr(spec))
    if key not in _BANK:
        if len(_BANK) >= _BANK_MAX:
            _BANK.pop(next(iter(_BANK)))
        _BANK[key] = _fft_fields(np.random.default_rng([_BANK_SEED, zlib.crc32(repr(key).encode())]), shape, spec)
    pair = np.roll(_BANK[key], (int(rng.integers(shape[0])), int(rng.integers(shape[1]))), axis=(1, 2))
    flip_y, flip_x, swap = rng.integers(0, 2, 3)
    if flip_y:
        pair = pair[:, ::-1]
    if flip_x:
        pair = pair[:, :, ::-1]
    if swap and not np.isscalar(spec) and len(spec[0]) == 3:
        swap = 0  # streaks keep their drawn direction
    if swap and shape[0] == shape[1]:
        pair = pair.transpose(0, 2, 1)
    if rng.integers(0, 2):
        pair = pair[::-1]
    return pair[0], pair[1]


def _ridges(field_: np.ndarray, width: float) -> np.ndarray:
    """Thin curvy lines where a smooth field crosses zero (vessels, fibres): 1 on the line, 0 away."""
    return np.clip(1.0 - np.abs(field_) / width, 0.0, 1.0) ** 2


def _smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


# -------------------------------------------------------------------------------------------------- scene
@dataclass
class Look:
    """Per-patient appearance: tissue colours, white balance, exposure and the endoscope's optics."""

    colours: dict
    gains: np.ndarray
    brightness: float
    fov_radius: float
    fov_centre: tuple[float, float]
    vignette: float
    blur: float


@dataclass
class Scene:
    """One operation: the anatomy canvas, the camera/instrument timelines and the patient's look."""

    size: int
    canvas: np.ndarray  # (C*C, 8) float32 channels: r, g, b, gloss, nerve, gx, gy, (padding)
    canvas_side: int
    look: Look
    key_times: np.ndarray
    key_poses: np.ndarray  # (F, 4): cx, cy, zoom, roll
    key_positive: np.ndarray  # (F,) bool
    tremor: np.ndarray  # (6, 2) frequency (Hz), phase
    instruments: list = field(default_factory=list)
    blood: np.ndarray | None = None  # (2, S, S) drifting blood density fields
    blood_level: tuple = (0.0, 0.0, 1.0)  # amplitude, phase, period (s) of the blood timeline
    bubbles: np.ndarray | None = None  # (n, 6): x0, y0, vx, vy, radius, t_centre
    focus: np.ndarray | None = None  # (3, 2) frequency (Hz), phase of the defocus timeline
    sensor: np.ndarray | None = None  # (3, S + pad, S + pad) sensor noise bank
    seed: int = 0
    gain: tuple | None = None  # cached (gain, fov) maps of :func:`_fov_gain`


def _make_look(rng: np.random.Generator) -> Look:
    a = APPEARANCE
    colours = {}
    for name in ("tissue", "nerve", "ligament", "bone", "fat"):
        mean, jitter = a[f"{name}_rgb"]
        shift = np.array(a["hue_shift"].get(name, (0.0, 0.0, 0.0))) * rng.uniform(-1, 1)
        colours[name] = np.clip(np.array(mean) + shift + rng.uniform(-jitter, jitter, 3), 0, 1).astype(np.float32)
    gains = (1 + rng.uniform(-a["white_balance"], a["white_balance"], 3)).astype(np.float32)
    return Look(colours=colours, gains=gains, brightness=float(rng.uniform(*a["brightness"])),
                fov_radius=float(rng.uniform(*a["fov_radius"])),
                fov_centre=(float(rng.uniform(-0.02, 0.02)), float(rng.uniform(-0.02, 0.02))),
                vignette=float(rng.uniform(*a["vignette"])), blur=float(rng.uniform(*a["defocus_px"])))


def _world_grid(side: int) -> tuple[np.ndarray, np.ndarray]:
    half = APPEARANCE["canvas_half"]
    c = ((np.arange(side, dtype=np.float32) + 0.5) / side * 2 * half - half).astype(np.float32)
    return np.meshgrid(c, c)  # x, y


def _bezier(ctrl, n: int) -> np.ndarray:
    p0, p1, p2 = (np.asarray(p, np.float64) for p in ctrl)
    t = np.linspace(0, 1, n)[:, None]
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t ** 2 * p2


def _tube(ctrl, radius: np.ndarray, side: int, to_canvas) -> tuple[np.ndarray, np.ndarray]:
    """Soft mask, dome height and cross profile of a tube of varying radius along a quadratic Bezier curve.

    The curve is sampled densely, its samples are marked on the canvas and a distance transform gives every
    pixel its distance to the nearest sample, in units of that sample's radius (no per-pixel loops).
    """
    half = APPEARANCE["canvas_half"]
    px = 2 * half / side
    n = max(8, int(4 * np.hypot(*np.diff(np.array(ctrl)[[0, 2]], axis=0)[0]) / px))
    pts = _bezier(ctrl, n)
    r = np.interp(np.linspace(0, 1, n), np.linspace(0, 1, len(radius)), radius)
    ix, iy = to_canvas(pts[:, 0], pts[:, 1])
    inside = (ix >= 0) & (ix < side) & (iy >= 0) & (iy < side)
    seeds = np.full((side, side), -1, np.int32)
    seeds[iy[inside], ix[inside]] = np.nonzero(inside)[0]
    if not inside.any():
        return (np.zeros((side, side), np.float32),) * 3
    dist, (ny, nx) = ndimage.distance_transform_edt(seeds < 0, return_indices=True)
    rad = r[seeds[ny, nx]]
    d = (dist * px / rad).astype(np.float32)
    mask = _smoothstep((1 - d) * (rad / px).astype(np.float32) / 1.5)
    profile = np.sqrt(np.clip(1 - d ** 2, 0, 1)).astype(np.float32)  # 1 on the centre line, 0 at the edge
    dome = profile * rad * APPEARANCE["relief"]["nerve"]
    return mask.astype(np.float32), dome.astype(np.float32), profile


def _nerve_layout(rng, procedure: str, to_canvas, side: int):
    """The neural tissue of one operation (local coordinates: the nerve lies on the -x side).

    Interlaminar decompression: the dural sac (a wide smooth band) with one or two traversing roots;
    foraminal decompression: one thick exiting root with its ganglion; cervical foraminotomy: one root and the
    lateral edge of the dura. Returns soft mask, dome height, cross profile (1 on centre lines, 0 at edges) and
    the roots' ends ``(x, y, radius)`` (local coordinates), where a root leaves the view under bone.
    """
    a = APPEARANCE
    masks, heights, profiles, ends = [], [], [], []

    def add(ctrl, radius, root=True):
        m, h, pr = _tube(ctrl, np.asarray(radius, np.float64), side, to_canvas)
        profiles.append(m * pr)
        masks.append(m)
        heights.append(h)
        if root:
            ends.append((float(ctrl[2][0]), float(ctrl[2][1]), float(radius[-1])))

    if procedure.startswith("lumbar interlaminar"):
        w = rng.uniform(*a["sac_radius"])
        x0 = rng.uniform(-0.95, -0.7)
        add(((x0 - rng.uniform(-0.2, 0.2), -2.0), (x0, 0.0), (x0 - rng.uniform(-0.2, 0.2), 2.0)),
            w * (1 + rng.uniform(-0.1, 0.1, 5)), root=False)
        for k in range(1 + int(rng.random() < 0.5)):
            y = rng.uniform(-0.7, -0.1) + 0.7 * k
            r = rng.uniform(*a["root_radius"])
            add(((x0 + 0.5 * w, y), (x0 + w + rng.uniform(0.15, 0.3), y + rng.uniform(0.1, 0.3)),
                 (x0 + w + rng.uniform(0.3, 0.5), y + rng.uniform(0.8, 1.2))), r * np.array([1.3, 1.0, 0.9]))
    else:
        cervical = procedure.startswith("cervical")
        y0 = rng.uniform(-0.4, 0.0)
        r = rng.uniform(*a["root_radius"]) * (1.15 if cervical else 1.35)
        add(((-2.0, y0 + rng.uniform(-0.3, 0.3)), (-0.6, y0 + rng.uniform(-0.3, 0.3)),
             (rng.uniform(0.0, 0.3), y0 + rng.uniform(0.3, 0.7))),
            r * np.array([1.0, 1.0, 1.35 if not cervical else 1.1, 1.0, 0.8]))  # ganglion bulge
        if cervical:  # the lateral edge of the dura at the far side
            add(((-1.45, -2.0), (-1.35, 0.0), (-1.45, 2.0)), np.array([0.4, 0.4]), root=False)
    mask = np.maximum.reduce(masks)
    height = np.maximum.reduce([m * h for m, h in zip(masks, heights)])
    return mask, height, np.maximum.reduce(profiles), ends


def make_scene(operation: dict, size: int, n_frames: int, interval_s: float, seed: int,
               look: Look | None = None, positives: int | None = None) -> Scene:
    """Build one operation's scene: anatomy canvas, patient look, camera and instrument timelines.

    Args:
        operation: a cohort row (needs ``procedure``; ``split`` sets the share of positive key poses).
        size: frame side in pixels.
        n_frames: frames sampled from the operation (one key pose per sampled frame).
        interval_s: seconds between sampled frames.
        seed: the operation's seed.
        look: the patient's look (default: drawn from ``seed``).
        positives: how many sampled frames show neural tissue (default: the split's paper fraction).

    Example:
        >>> s = make_scene({"procedure": "cervical foraminotomy", "split": "train"}, 64, 4, 10.0, seed=0)
        >>> s.canvas.shape[1], int(s.key_positive.sum())
        (8, 2)
    """
    rng = np.random.default_rng([seed, 7])
    look = look or _make_look(np.random.default_rng([seed, 11]))
    side = int(round(size * CANVAS_SCALE))
    canvas, nerve, theta = _paint_canvas(rng, operation, side, look)
    key_times = frame_times(n_frames, interval_s)
    if positives is None:
        frac = COHORT["positive_fraction"].get(str(operation.get("split", "train")), 0.5)
        positives = int(round(frac * n_frames))
    key_positive = _positive_schedule(rng, n_frames, positives)
    key_poses = _key_poses(rng, nerve, key_positive, look, theta)
    duration = n_frames * interval_s
    a = APPEARANCE
    n_b = a["bubbles"]
    pad = size // 4
    return Scene(
        size=size, canvas=canvas, canvas_side=side, look=look, key_times=key_times, key_poses=key_poses,
        key_positive=key_positive,
        tremor=np.stack([rng.uniform(0.05, 0.4, 6), rng.uniform(0, 2 * math.pi, 6)], axis=1),
        instruments=_instrument_timeline(rng, duration),
        blood=np.stack(_noise2(rng, (size, size), size * 0.08)),
        blood_level=(float(rng.uniform(0.0, 0.8)), float(rng.uniform(0, 2 * math.pi)),
                     float(rng.uniform(40, 120))),
        bubbles=np.stack([rng.uniform(-0.45, 0.45, n_b), rng.uniform(-0.45, 0.45, n_b),
                          rng.normal(0, 0.004, n_b), -rng.uniform(0.002, 0.01, n_b),
                          rng.uniform(*a["bubble_radius"], n_b), rng.uniform(0, duration, n_b)], axis=1),
        focus=np.stack([rng.uniform(0.01, 0.08, 3), rng.uniform(0, 2 * math.pi, 3)], axis=1),
        sensor=rng.normal(0, a["noise_sd"], (3, size + pad, size + pad)).astype(np.float32),
        seed=seed)


def _paint_canvas(rng, operation: dict, side: int, look: Look):
    """Paint the anatomy canvas: background patchwork, neural tissue, then what partly covers it."""
    a = APPEARANCE
    half = a["canvas_half"]
    px = 2 * half / side
    shape = (side, side)
    xx, yy = _world_grid(side)
    theta = rng.uniform(0, 2 * math.pi)  # orientation of the anatomy in the world
    ct, st = math.cos(theta), math.sin(theta)
    lx = xx * ct + yy * st  # local coordinates: nerve on the -x side
    ly = -xx * st + yy * ct

    def to_canvas(x, y):  # local -> canvas pixel
        wx, wy = x * ct - y * st, x * st + y * ct
        return (np.floor((wx + half) / px).astype(int), np.floor((wy + half) / px).astype(int))

    col = look.colours
    procedure = str(operation.get("procedure", "lumbar interlaminar decompression"))
    nmask, nheight, nprofile, root_ends = _nerve_layout(rng, procedure, to_canvas, side)
    dist_out = (ndimage.distance_transform_edt(nmask < 0.5) * px).astype(np.float32)

    # --- background patchwork of tissue / ligament / bone / fat -------------------------------------------
    s_patch = a["patch_scale"] / px
    f_t, f_l = _noise2(rng, shape, s_patch)
    f_b, f_f = _noise2(rng, shape, s_patch)
    near = np.exp(-dist_out / 0.3)
    scores = np.stack([f_t + 0.9 * np.clip(dist_out - 0.4, 0, 1) - 0.5 * near - 0.2,  # soft tissue, farther out
                       f_l + 1.5 * near + 0.3,  # ligamentum flavum, next to the nerve
                       f_b + 0.6 * near + 0.9 * _smoothstep((lx - 0.2) / 0.8) - 0.1,  # bone (lamina, facet)
                       f_f + 0.2 * near - 0.7])  # fat
    labels = np.argmax(scores, axis=0)
    alpha = [ndimage.gaussian_filter((labels == k).astype(np.float32), 0.8) for k in range(4)]

    tex, crev_f = _noise2(rng, shape, ((0.15 / px, 1.0), (0.05 / px, 0.6), (0.015 / px, 0.4)))
    crev = _ridges(_noise2(rng, shape, 0.06 / px)[0], 0.25)
    rgb = col["tissue"][None, None, :] * (1 + 0.14 * tex[..., None]) * (1 - 0.45 * crev[..., None])
    height = a["relief"]["tissue"] * (tex - crev + 0.5 * crev_f)
    gloss = np.full(shape, a["gloss"]["tissue"], np.float32)

    lig_rgb, lig_h = _ligament_texture(rng, shape, px, lx, ly, col["ligament"])
    bone_rgb, bone_h = _bone_texture(rng, shape, px, col["bone"])
    fat_rgb, fat_h, fat_cluster = _fat_texture(rng, shape, px, col["fat"], dist_out)
    for k, (m_rgb, m_h, name) in enumerate([(lig_rgb, lig_h, "ligament"), (bone_rgb, bone_h, "bone"),
                                            (fat_rgb, fat_h, "fat")], start=1):
        rgb, height, gloss = _paint(rgb, height, gloss, alpha[k], m_rgb, m_h, a["gloss"][name])

    # --- neural tissue ----------------------------------------------------------------------------------------
    v1, v2 = _noise2(rng, shape, a["vessel_scale"] / px)
    vessels = _ridges(v1, 0.4) * _smoothstep(v2 + 1.0)  # fine vessels on most of the surface
    shade, stain = _noise2(rng, shape, 0.12 / px)
    stain = a["stain"] * _smoothstep((stain - 1.0) / 0.8)  # blood-stained patches of the dura
    n_rgb = col["nerve"][None, None, :] * (1 + 0.03 * shade[..., None])
    red = np.array(a["vessel_rgb"], np.float32)
    n_rgb = n_rgb + np.maximum(0.85 * vessels, stain)[..., None] * (red - n_rgb)
    edge_dark, sheen, sheen_width = a["nerve_shading"]  # a cord: darker flanks, a glossy line along the crest
    n_rgb = n_rgb * (edge_dark + (1 - edge_dark) * np.sqrt(nprofile))[..., None]
    n_rgb = n_rgb + (sheen * np.exp(-((1 - nprofile) / sheen_width) ** 2))[..., None] * (1 - n_rgb)
    rgb, height, gloss = _paint(rgb, height, gloss, nmask, n_rgb, nheight, a["gloss"]["nerve"])
    nerve = nmask.copy()

    # --- what covers the nerve's border: ligament remnants, a lamina edge, perineural fat ----------------------
    dist_in = (ndimage.distance_transform_edt(nmask >= 0.5) * px).astype(np.float32)
    o1, o2 = _noise2(rng, shape, 0.12 / px)
    band = _smoothstep((a["cover_band"] - dist_in) / 0.03) * (nmask > 0.01)
    lig_over = band * _smoothstep((o1 - 0.5) / 0.3)
    rgb, height, gloss = _paint(rgb, height, gloss, lig_over, lig_rgb, lig_h, a["gloss"]["ligament"])
    nerve *= 1 - lig_over
    fat_over = band * fat_cluster * _smoothstep((o2 - 0.2) / 0.3)
    rgb, height, gloss = _paint(rgb, height, gloss, fat_over, fat_rgb, fat_h, a["gloss"]["fat"])
    nerve *= 1 - fat_over
    for ex, ey, er in root_ends:  # a root leaves the field under bone (foramen, pedicle), not with a round end
        cap_r = a["foramen_cover"] * er
        cap = _smoothstep((cap_r - np.hypot(lx - ex, ly - ey)) / (1.5 * px))
        rgb, height, gloss = _paint(rgb, height, gloss, cap, bone_rgb, bone_h + 0.02, a["gloss"]["bone"])
        nerve *= 1 - cap
    if rng.random() < a["lamina_over_p"]:
        ang = rng.uniform(0, 2 * math.pi)
        edge = lx * math.cos(ang) + ly * math.sin(ang) - rng.uniform(0.6, 0.9)
        wob, _ = _noise2(rng, shape, 0.1 / px)
        bone_over = _smoothstep((edge + 0.04 * wob) / (1.5 * px) + 0.5)
        rgb, height, gloss = _paint(rgb, height, gloss, bone_over, bone_rgb, bone_h + 0.02, a["gloss"]["bone"])
        nerve *= 1 - bone_over

    depth, width = a["nerve_shadow"]  # contact shadow: the nerve stands out of its bed
    rgb = rgb * (1 - depth * np.exp(-dist_out / width) * (1 - nmask))[..., None]
    gy, gx = np.gradient(height, px)
    # 8 channels (the last unused): numpy gathers 32-byte rows much faster than 28-byte ones
    canvas = np.concatenate([np.clip(rgb, 0, 1), gloss[..., None], nerve[..., None], gx[..., None],
                             gy[..., None], np.zeros_like(gy)[..., None]], axis=-1).astype(np.float32)
    return np.ascontiguousarray(canvas.reshape(side * side, -1)), nerve, theta


def _paint(rgb, height, gloss, alpha, new_rgb, new_height, new_gloss):
    a3 = alpha[..., None]
    rgb = rgb + a3 * (new_rgb - rgb)
    height = height + alpha * (new_height - height)
    gloss = gloss + alpha * (new_gloss - gloss)
    return rgb.astype(np.float32), height.astype(np.float32), gloss.astype(np.float32)


def _ligament_texture(rng, shape, px, lx, ly, colour):
    """Ligamentum flavum: whitish and fibrous -- long thin creased streaks along one direction."""
    a = APPEARANCE
    d = int(rng.integers(a["fibre_directions"])) * math.pi / a["fibre_directions"]
    fib, fib2 = _noise2(rng, shape, ((a["fibre_along"] / px, a["fibre_across"] / px, d),))
    tex = 0.6 * (1.6 - 2 * np.abs(fib)) + 0.4 * fib2  # ridged: sharp dark creases between fibres
    rgb = colour[None, None, :] * (1 + a["texture_contrast"]["ligament"] * tex[..., None])
    return rgb.astype(np.float32), (a["relief"]["ligament"] * tex).astype(np.float32)


def _bone_texture(rng, shape, px, colour):
    """Bone: pale, matte and granular, with small blood-filled pores."""
    a = APPEARANCE
    pores, _ = _noise2(rng, shape, a["pore_scale"] / px)
    grain, _ = _noise2(rng, shape, a["grain_scale"] / px)
    pit = _smoothstep((pores - 1.2) / 0.4)
    rgb = colour[None, None, :] * (1 + a["texture_contrast"]["bone"] * grain[..., None])
    rgb = rgb + 0.8 * pit[..., None] * (np.array(a["pit_rgb"], np.float32) - rgb)
    return rgb.astype(np.float32), (a["relief"]["bone"] * (grain - 2 * pit)).astype(np.float32)


def _lobules(shape: tuple[int, int], step: int) -> np.ndarray:
    """Periodic Voronoi lobules on a jittered grid (bank texture): (2, H, W) dome height and septa lines."""
    key = (tuple(shape), f"lobules{step}")
    if key not in _BANK:
        rng = np.random.default_rng([_BANK_SEED, zlib.crc32(repr(key).encode())])
        side = shape[0]
        n = max(1, side // step)
        seeds = np.zeros((n * step, n * step), bool)
        j = max(1, step // 3)
        gy, gx = np.mgrid[step // 2:n * step:step, step // 2:n * step:step]
        seeds[(gy + rng.integers(-j, j + 1, gy.shape)) % (n * step), (gx + rng.integers(-j, j + 1, gx.shape)) % (n * step)] = 1
        tiled = np.tile(seeds, (3, 3))  # periodic: the nearest seed may lie across the border
        dist, (iy, ix) = ndimage.distance_transform_edt(~tiled, return_indices=True)
        c = slice(n * step, 2 * n * step)
        dist, lab = dist[c, c], ((iy % (n * step)) * side + ix % (n * step))[c, c]
        septa = (lab != np.roll(lab, 1, 0)) | (lab != np.roll(lab, 1, 1))
        septa = np.clip(ndimage.gaussian_filter(septa.astype(np.float32), 0.7, mode="wrap") * 2.0, 0, 1)
        dome = np.clip(1 - (dist / (0.8 * step)) ** 2, 0, 1)
        field_ = np.stack([dome, septa]).astype(np.float32)
        if field_.shape[1:] != tuple(shape):  # the grid period does not divide the side: stretch to fit
            field_ = ndimage.zoom(field_, (1, shape[0] / field_.shape[1], shape[1] / field_.shape[2]), order=1)
        _BANK[key] = field_
    return _BANK[key]


def _fat_texture(rng, shape, px, colour, dist_out):
    """Fat: yellow lobules (a dome each, dark septa between), in clusters; also returns a cluster field."""
    a = APPEARANCE
    step = max(2, int(round(2 * a["lobule_radius"] / px)))
    dome, septa = np.roll(_lobules(shape, step), (int(rng.integers(shape[0])), int(rng.integers(shape[1]))),
                          axis=(1, 2))
    rgb = colour[None, None, :] * (0.82 + 0.25 * dome[..., None]) * (1 - 0.35 * septa[..., None])
    cl, _ = _noise2(rng, shape, 0.1 / px)
    cluster = _smoothstep(cl + 1.5 * np.exp(-dist_out / 0.15) - 0.3)
    height = a["relief"]["fat"] * a["lobule_radius"] * np.sqrt(dome)
    return rgb.astype(np.float32), height.astype(np.float32), cluster.astype(np.float32)


def _positive_schedule(rng, n: int, positives: int) -> np.ndarray:
    """Which sampled frames show neural tissue: runs of frames, exposure more likely later in the operation."""
    positives = int(np.clip(positives, 0, n))
    score = np.cumsum(rng.standard_normal(n)) * 0.6 + np.linspace(0, 1.5, n) + rng.normal(0, 0.3, n)
    out = np.zeros(n, bool)
    out[np.argsort(-score, kind="stable")[:positives]] = True
    return out


def _disc_points(n: int = 15) -> np.ndarray:
    """Points filling the unit disc (coverage tests of camera poses)."""
    g = (np.arange(n) + 0.5) / n * 2 - 1
    x, y = np.meshgrid(g, g)
    keep = x ** 2 + y ** 2 <= 1
    return np.stack([x[keep], y[keep]], axis=1)


def _key_poses(rng, nerve: np.ndarray, positive: np.ndarray, look: Look, theta: float,
               n_candidates: int = 256) -> np.ndarray:
    """Camera key poses (cx, cy, zoom, roll) at the sampling times: looking at the nerve, or away from it.

    Candidates are drawn near the previous pose (a coherent video) and scored all at once: a positive pose
    sees a nerve cover in ``positive_cover``, a negative pose keeps the nerve out of the field of view.
    """
    a = APPEARANCE
    side = nerve.shape[0]
    half, box = a["canvas_half"], a["camera_box"]
    pts = _disc_points()
    near = nerve > 0.5
    lo, hi = a["positive_cover"]
    poses = []
    prev = None
    for pos in positive:
        centre = rng.uniform(-box, box, (n_candidates, 2))
        if prev is not None:
            k = n_candidates // 2
            centre[:k] = np.clip(prev[:2] + rng.normal(0, 0.2, (k, 2)), -box, box)
        zoom = rng.uniform(*a["zoom"], n_candidates)
        roll = theta + rng.uniform(-a["roll_drift"], a["roll_drift"], n_candidates)
        r_world = look.fov_radius / zoom
        # nerve samples inside each candidate's field of view (the FOV edge is widened for negatives)
        grow = np.where(pos, 1.0, 1.0 + a["negative_margin"] / r_world)
        wx = centre[:, :1] + pts[None, :, 0] * (r_world * grow)[:, None]
        wy = centre[:, 1:] + pts[None, :, 1] * (r_world * grow)[:, None]
        ix = np.clip(((wx + half) / (2 * half) * side).astype(int), 0, side - 1)
        iy = np.clip(((wy + half) / (2 * half) * side).astype(int), 0, side - 1)
        cover = near[iy, ix].mean(axis=1)
        if pos:
            target = rng.uniform(lo, hi)
            score = -np.abs(cover - target) - 10 * ((cover < lo) | (cover > hi))
        else:
            score = -cover * 100
        if prev is not None:  # prefer small moves
            score = score - 0.02 * np.hypot(*(centre - prev[:2]).T)
        best = int(np.argmax(score))
        prev = np.array([centre[best, 0], centre[best, 1], zoom[best], roll[best]])
        poses.append(prev)
    return np.array(poses, dtype=np.float32)


def _instrument_timeline(rng, duration: float) -> list[dict]:
    """Instrument episodes: each enters from the edge of the view, works, and leaves."""
    a = APPEARANCE
    n = max(1, int(rng.poisson(a["instruments_per_minute"] * duration / 60.0)))
    episodes = []
    for _ in range(n):
        dwell = rng.uniform(*a["instrument_dwell_s"])
        t0 = rng.uniform(-dwell / 2, duration - dwell / 2)
        episodes.append({
            "t0": float(t0), "t1": float(t0 + dwell),
            "angle": float(rng.uniform(0, 2 * math.pi)), "swing": float(rng.uniform(-0.4, 0.4)),
            "width": float(rng.uniform(*a["instrument_width"])),
            "depth": float(rng.uniform(0.3, 0.8)), "offset": float(rng.uniform(-0.12, 0.12)),
            "tip": str(rng.choice(["round", "jaw", "burr"])),
            "reflection": bool(rng.random() < a["instrument_reflection_p"]),
            "refl_pos": float(rng.uniform(0.15, 0.45)), "refl_len": float(rng.uniform(0.12, 0.25)),
            "tint": float(rng.uniform(0.0, 0.15)),
        })
    return episodes


# ------------------------------------------------------------------------------------------------ render
def frame_times(n_frames: int, interval_s: float) -> np.ndarray:
    """Sampling times (s) of the annotated frames: 0, interval, 2*interval, ..."""
    return np.arange(n_frames, dtype=np.float64) * float(interval_s)


def _pose_at(scene: Scene, t: float) -> np.ndarray:
    """Camera pose at time ``t``: eased interpolation between key poses plus a little hand tremor."""
    kt, kp = scene.key_times, scene.key_poses.astype(np.float64)
    if len(kt) == 1 or t <= kt[0]:
        pose = kp[0]
    elif t >= kt[-1]:
        pose = kp[-1]
    else:
        i = int(np.searchsorted(kt, t, side="right") - 1)
        f = float(_smoothstep((t - kt[i]) / (kt[i + 1] - kt[i])))
        pose = kp[i] + f * (kp[i + 1] - kp[i])
    w = np.sin(scene.tremor[:, 0] * t * 2 * math.pi + scene.tremor[:, 1])
    return pose + APPEARANCE["tremor"] * w[:4]


_GRIDS: dict = {}  # per frame size: view coordinates; "gamma": the output LUT


def _view_grid(s: int) -> tuple[np.ndarray, np.ndarray]:
    if s not in _GRIDS:
        g = ((np.arange(s, dtype=np.float32) + 0.5) / s - 0.5).astype(np.float32)
        _GRIDS[s] = tuple(np.meshgrid(g, g))
    return _GRIDS[s]


def render_frame(scene: Scene, t: float, with_mask: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """Render the frame at time ``t`` (s) of an operation.

    Args:
        scene: from :func:`make_scene`.
        t: time in seconds since the start of the operation.
        with_mask: also return the soft map of visible neural tissue (the ground truth before tracing).

    Returns:
        ``(image, nerve)``: uint8 (S, S, 3) and float32 (S, S) in [0, 1] (or None).

    Example:
        >>> s = make_scene({"procedure": "lumbar interlaminar decompression"}, 48, 2, 10.0, seed=1)
        >>> img, m = render_frame(s, 0.0); img.shape, img.dtype, m.shape
        ((48, 48, 3), dtype('uint8'), (48, 48))
    """
    a = APPEARANCE
    s = scene.size
    look = scene.look
    vx, vy = _view_grid(s)
    cx, cy, zoom, roll = (float(v) for v in _pose_at(scene, t))
    cr, sr = math.cos(roll), math.sin(roll)
    wx = cx + (cr * vx - sr * vy) / zoom
    wy = cy + (sr * vx + cr * vy) / zoom
    samp = _bilinear(scene.canvas, scene.canvas_side, wx, wy).reshape(-1, s, s)  # channels first
    rgb, gloss, nerve, gx, gy = samp[:3], samp[3], samp[4], samp[5], samp[6]
    # surface slopes in view orientation (the canvas turns with the camera roll)
    nvx = cr * gx + sr * gy
    nvy = cr * gy - sr * gx
    # light and camera at the endoscope tip: a surface facing the tip is lit and glints
    tilt = np.log1p((nvx + vx) ** 2 + (nvy + vy) ** 2)  # cos(angle to the tip) = exp(-tilt / 2)
    rgb = rgb * (0.35 + 0.7 * np.exp(-0.5 * tilt))
    spec = gloss * np.exp(-0.5 * a["specular_power"] * tilt)

    inst = np.zeros((s, s), np.float32)
    for ep in scene.instruments:
        if ep["t0"] < t < ep["t1"]:
            rgb, inst, spec = _draw_instrument(rgb, inst, spec, ep, t, vx, vy, look)
    rgb = _blood(rgb, scene, t)
    rgb, spec = _bubbles(rgb, spec, scene, t, vx, vy)
    rgb = rgb + np.clip(spec, 0, 1) * (1.0 - rgb)

    # optics: defocus (varies in time) and motion blur (from the camera's speed)
    wob = float(np.sin(scene.focus[:, 0] * t * 2 * math.pi + scene.focus[:, 1]).sum()) / 3.0
    sigma = (look.blur + a["defocus_extra_px"] * max(0.0, wob) ** 2) * s / 160.0
    vel = (_pose_at(scene, t + 0.25) - _pose_at(scene, t - 0.25)) / 0.5
    streak = float(np.hypot(vel[0], vel[1])) * zoom * s * a["shutter_s"]
    rgb = _optics(rgb, sigma, streak, math.atan2(vel[1], vel[0]) - roll)

    # field of view, vignetting and the patient's colour (one gain map per scene), sensor noise
    gain, fov = _fov_gain(scene)
    rgb = rgb * gain
    k = int(round(t * 1000)) * 7919
    pad = scene.sensor.shape[-1] - s
    oy, ox = (k // (pad + 1)) % (pad + 1), k % (pad + 1)
    rgb = rgb + scene.sensor[:, oy:oy + s, ox:ox + s]
    img = _gamma_lut()[(np.clip(rgb, 0, 1) * (_LUT_SIZE - 1) + 0.5).astype(np.int32)].transpose(1, 2, 0)
    img = np.ascontiguousarray(img)
    if not with_mask:
        return img, None
    return img, (nerve * (1 - inst) * fov).astype(np.float32)


def _fov_gain(scene: Scene) -> tuple[np.ndarray, np.ndarray]:
    """(3, S, S) gain (FOV circle, vignetting, exposure, white balance) and the (S, S) inside-FOV mask."""
    if scene.gain is None:
        a, look, s = APPEARANCE, scene.look, scene.size
        vx, vy = _view_grid(s)
        fx, fy = look.fov_centre
        r = np.sqrt((vx - fx) ** 2 + (vy - fy) ** 2) / look.fov_radius
        fov = _smoothstep((1 - r) * look.fov_radius * s / 1.5)
        gain = (1 - look.vignette * np.clip(r, 0, 1) ** 2) * look.brightness * fov + (1 - fov) * a["outside_fov"]
        scene.gain = (gain[None] * look.gains[:, None, None]).astype(np.float32), (fov > 0.5).astype(np.float32)
    return scene.gain


_LUT_SIZE = 4096


def _gamma_lut() -> np.ndarray:
    """Linear [0, 1] (quantised to ``_LUT_SIZE`` levels) -> gamma-encoded uint8."""
    if "gamma" not in _GRIDS:
        x = np.linspace(0, 1, _LUT_SIZE)
        _GRIDS["gamma"] = (x ** (1 / APPEARANCE["gamma"]) * 255 + 0.5).astype(np.uint8)
    return _GRIDS["gamma"]


def _bilinear(canvas: np.ndarray, side: int, wx: np.ndarray, wy: np.ndarray) -> np.ndarray:
    """Bilinear samples of the (side * side, K) canvas at world points, channels first: (K, N)."""
    half = APPEARANCE["canvas_half"]
    scale = side / (2 * half)
    u = np.clip((wx.ravel() + half) * scale - 0.5, 0, side - 1.001).astype(np.float32)
    v = np.clip((wy.ravel() + half) * scale - 0.5, 0, side - 1.001).astype(np.float32)
    x0 = u.astype(np.int32)
    y0 = v.astype(np.int32)
    fx = (u - x0)[:, None]
    fy = (v - y0)[:, None]
    i = y0 * side + x0
    c00, c01 = np.take(canvas, i, axis=0), np.take(canvas, i + 1, axis=0)  # whole rows: cache friendly
    c10, c11 = np.take(canvas, i + side, axis=0), np.take(canvas, i + side + 1, axis=0)
    top = c00 + fx * (c01 - c00)
    bot = c10 + fx * (c11 - c10)
    return np.ascontiguousarray((top + fy * (bot - top)).T)


def _draw_instrument(rgb, inst, spec, ep: dict, t: float, vx, vy, look: Look):
    """A metal shaft from the edge of the view toward its centre: cylinder-shaded, a specular streak, a tip
    (round, jaw or burr), and on some instruments a pale smooth reflection that looks like nerve."""
    a = APPEARANCE
    s = rgb.shape[-1]
    life = (t - ep["t0"]) / (ep["t1"] - ep["t0"])
    reach = ep["depth"] * math.sin(math.pi * life) ** 0.5  # in, stay, out
    ang = ep["angle"] + ep["swing"] * math.sin(2 * math.pi * life)
    dx, dy = -math.cos(ang), -math.sin(ang)  # shaft direction, into the view
    ex, ey = math.cos(ang) * 0.7 - dy * ep["offset"], math.sin(ang) * 0.7 + dx * ep["offset"]
    along = (vx - ex) * dx + (vy - ey) * dy  # distance from the entry point along the shaft
    across = (vy - ey) * dx - (vx - ex) * dy
    tip = 0.2 + reach
    w = ep["width"] / 2
    e = 1.5 / s
    shaft = _smoothstep((w - np.abs(across)) / e) * _smoothstep((tip - along) / e)
    if ep["tip"] == "jaw":  # two tapering jaws
        f = np.clip((along - tip) / (1.4 * w), 0, 1)
        half_w = w * np.sqrt(1 - f)
        head = ((along >= tip) & (f < 1) & (np.abs(across) < half_w) & (np.abs(across) > 0.18 * w))
        head = head.astype(np.float32)
    else:
        rad = w * (1.35 if ep["tip"] == "burr" else 1.0)
        head = _smoothstep((rad - np.hypot(along - tip, across)) / e)
    body = np.maximum(shaft, head)
    if not body.any():
        return rgb, inst, spec
    q = np.clip(across / (w * 1.2), -1, 1)
    cyl = np.sqrt(1 - q ** 2)
    metal = np.array(a["metal_rgb"], np.float32)[:, None, None] * (0.3 + 0.8 * cyl)
    metal = metal + ep["tint"] * (look.colours["tissue"][:, None, None] - metal)  # reddish environment reflection
    if ep["reflection"]:  # the nerve mirrored in the metal: pale, smooth, elongated
        c = tip - ep["refl_pos"]
        patch = _smoothstep((1 - np.abs(along - c) / ep["refl_len"]) * 3) * _smoothstep((0.35 - np.abs(q + 0.3)) * 6)
        metal = metal + patch * (look.colours["nerve"][:, None, None] * (0.75 + 0.3 * cyl) - metal)
    streak = np.exp(-((q - 0.35) / 0.1) ** 2)
    rgb = rgb + body * (metal - rgb)
    spec = spec * (1 - body) + body * streak
    return rgb, np.maximum(inst, body), spec


def _blood(rgb, scene: Scene, t: float):
    """Blood clouds drifting in the irrigation fluid (a timeline of bleeding episodes)."""
    amp, phase, period = scene.blood_level
    level = amp * max(0.0, math.sin(2 * math.pi * t / period + phase))
    if level <= 0.02:
        return rgb
    s = scene.size
    shift = int(t * 2) % s
    f = 0.7 * np.roll(scene.blood[0], shift, axis=1) + 0.3 * np.roll(scene.blood[1], -shift, axis=0)
    dens = _smoothstep(f - 1.4 + 1.5 * level) * (APPEARANCE["blood_opacity"] * min(1.0, 1.5 * level))
    return rgb + dens * (np.array(APPEARANCE["blood_rgb"], np.float32)[:, None, None] - rgb)


def _bubbles(rgb, spec, scene: Scene, t: float, vx, vy):
    """Air bubbles: bright rims and a highlight, rising slowly."""
    s = scene.size
    life_s = APPEARANCE["bubble_life_s"]
    rgb = rgb.copy()
    for x0, y0, vxb, vyb, rad, tc in scene.bubbles:
        if abs(t - tc) > life_s:
            continue
        bx, by = x0 + vxb * (t - tc), y0 + vyb * (t - tc)
        lo_x, hi_x = int(max(0, (bx - rad + 0.5) * s - 2)), int(min(s, (bx + rad + 0.5) * s + 3))
        lo_y, hi_y = int(max(0, (by - rad + 0.5) * s - 2)), int(min(s, (by + rad + 0.5) * s + 3))
        if lo_x >= hi_x or lo_y >= hi_y:
            continue
        sx, sy = vx[lo_y:hi_y, lo_x:hi_x], vy[lo_y:hi_y, lo_x:hi_x]
        d = np.hypot(sx - bx, sy - by) / rad
        rim = np.exp(-((d - 0.9) / 0.15) ** 2)
        hl = np.exp(-(np.hypot(sx - bx + 0.35 * rad, sy - by + 0.35 * rad) / (0.22 * rad)) ** 2)
        patch = rgb[:, lo_y:hi_y, lo_x:hi_x]
        rgb[:, lo_y:hi_y, lo_x:hi_x] = patch * (1 - 0.2 * (d < 1)) + 0.55 * rim * (0.95 - patch)
        spec[lo_y:hi_y, lo_x:hi_x] = np.maximum(spec[lo_y:hi_y, lo_x:hi_x], hl)
    return rgb, spec


def _optics(rgb: np.ndarray, sigma: float, streak: float, direction: float) -> np.ndarray:
    """Defocus (Gaussian) and motion blur (mean of copies shifted along the motion); channels first."""
    if sigma > 0.3:
        rgb = ndimage.gaussian_filter(rgb, (0, sigma, sigma), mode="nearest", truncate=2.5)
    n = int(min(streak, APPEARANCE["max_streak"] * rgb.shape[-1]))
    if n >= 2:
        acc = np.zeros_like(rgb)
        for k in range(n):
            off = k - (n - 1) / 2
            acc += np.roll(rgb, (int(round(off * math.sin(direction))), int(round(off * math.cos(direction)))),
                           axis=(1, 2))
        rgb = acc / n
    return rgb


#: Table 1 of the paper: what the phantom cohort reproduces.
COHORT = {
    "n_patients": {"train": 22, "test": 6},
    "twice_operated_split": "test",  # one test patient was operated twice -> 29 operations
    "procedures": {  # operations per procedure, with the levels the paper lists
        "lumbar interlaminar decompression": (21, ("L2-3", "L3-4", "L4-5", "L5-S1")),
        "lumbar foraminal decompression": (5, ("L3", "L4", "L5")),
        "cervical foraminotomy": (3, ("C4-5", "C5-6", "C6-7")),
    },
    "procedures_test": {"lumbar interlaminar decompression": 5, "lumbar foraminal decompression": 1,
                        "cervical foraminotomy": 1},
    "age_mean_sd": {"train": (65.4, 10.7), "test": (63.8, 14.1)},
    "age_range": (30, 90),
    "sex_mf": {"train": (9, 13), "test": (3, 3)},
    "positive_fraction": {"train": 0.495, "test": 0.363},  # frames showing neural tissue
}
