"""Procedural dry (mono) signals for the 13 classes of the synthetic scene generator.

Every class is a distribution: pitch, timing, timbre and rhythm are drawn per instance from the
``numpy.random.Generator`` passed in. Signals are normalised so that their loudest 100-ms window
has unit RMS (a short-term level that treats impulsive and steady classes alike); the scene sets
levels.
Sound inside an event has no silent stretch much longer than a 100-ms label frame (rhythmic
classes keep their inter-onset gaps short or let decays fill them), so frame labels that follow
the event's extent also follow its energy.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import signal
from scipy.ndimage import uniform_filter1d

from glfer_edge.errors import InputError

__all__ = ["SOURCE_CLASSES", "synthesize", "short_term_power"]

_FADE_S = 0.005  # onset/offset ramps: no clicks at event boundaries


def synthesize(class_name: str, duration_s: float, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """One random instance of ``class_name``: float64 mono, at most ``duration_s`` long.

    The loudest 100-ms window has unit RMS.

    Impulsive classes (doorSlam) end with their decay and may be shorter than ``duration_s``.
    """
    try:
        recipe = _RECIPES[class_name]
    except KeyError:
        raise InputError(
            f"unknown synthetic class {class_name!r}; choose from {', '.join(_RECIPES)}"
        ) from None
    n = int(round(duration_s * sample_rate))
    x = recipe(n, sample_rate, rng)[:n]
    ramp = min(int(_FADE_S * sample_rate), len(x) // 2)
    fade = np.linspace(0.0, 1.0, ramp, endpoint=False)
    x[:ramp] *= fade
    x[len(x) - ramp:] *= fade[::-1]
    return x / max(np.sqrt(short_term_power(x, sample_rate).max()), 1e-12)


def short_term_power(x: np.ndarray, sample_rate: int, window_s: float = 0.1) -> np.ndarray:
    """Mean power of ``x`` in a sliding window of ``window_s`` (centred, zero outside ``x``)."""
    return uniform_filter1d(x**2, max(1, int(window_s * sample_rate)), mode="constant")


# -- building blocks ------------------------------------------------------------------------
def _contour(n: int, fs: int, knot_s: float, rng: np.random.Generator) -> np.ndarray:
    """Smooth random curve in [-1, 1]: random knots every ``knot_s`` seconds, linearly joined."""
    knots = np.arange(0.0, n / fs + knot_s, knot_s)
    return np.interp(np.arange(n) / fs, knots, rng.uniform(-1.0, 1.0, len(knots)))


def _phase(freq_hz: np.ndarray, fs: int) -> np.ndarray:
    """Phase (radians) of an oscillator following a per-sample frequency track."""
    return 2 * np.pi * np.cumsum(freq_hz) / fs


def _harmonics(phase: np.ndarray, amps: np.ndarray, f0_max: float, fs: int) -> np.ndarray:
    """Sum of harmonics k*phase with amplitudes ``amps``, dropping those that would alias."""
    k_max = max(1, min(len(amps), int(0.45 * fs / max(f0_max, 1.0))))
    return sum(a * np.sin((k + 1) * phase) for k, a in enumerate(amps[:k_max]))


def _gate(n: int, fs: int, starts_s, lengths_s, ramp_s: float = 0.004) -> np.ndarray:
    """0/1 on-off pattern with linear ramps of ``ramp_s``."""
    g = np.zeros(n)
    for s, d in zip(starts_s, lengths_s):
        g[int(s * fs):int((s + d) * fs)] = 1.0
    return uniform_filter1d(g, max(1, int(ramp_s * fs)))


def _decay(n: int, fs: int, tau_s: float, attack_s: float = 0.001) -> np.ndarray:
    """Impulsive envelope: linear attack then exponential decay with time constant ``tau_s``."""
    t = np.arange(n) / fs
    return np.minimum(t / attack_s, 1.0) * np.exp(-t / tau_s)


def _place(out: np.ndarray, x: np.ndarray, start: int) -> None:
    """Add ``x`` into ``out`` at sample ``start`` (truncated at the end)."""
    if start >= len(out):
        return
    m = min(len(x), len(out) - start)
    out[start:start + m] += x[:m]


def _bandpass(x: np.ndarray, lo: float, hi: float, fs: int, order: int = 2) -> np.ndarray:
    hi = min(hi, 0.45 * fs)
    return signal.sosfilt(signal.butter(order, [lo, hi], "bandpass", fs=fs, output="sos"), x)


def _resonate(x: np.ndarray, freqs, q: float, fs: int) -> np.ndarray:
    """Cascade of peaking resonators (formants / body modes)."""
    for f in freqs:
        b, a = signal.iirpeak(min(f, 0.45 * fs), q, fs=fs)
        x = signal.lfilter(b, a, x)
    return x


def _onsets(total_s: float, interval_s: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
    """Onset times from 0 with random inter-onset intervals, all before ``total_s``."""
    times, t = [], 0.0
    while t < total_s:
        times.append(t)
        t += rng.uniform(*interval_s)
    return np.array(times)


# -- the 13 classes ---------------------------------------------------------------------------
def _alarm(n: int, fs: int, rng: np.random.Generator) -> np.ndarray:
    """Electronic alarm: square-ish tone beeping fast, or a two-tone hi-lo alternation."""
    t = np.arange(n) / fs
    f0 = rng.uniform(700, 3000)
    if rng.random() < 0.5:
        on, off = rng.uniform(0.08, 0.25), rng.uniform(0.03, 0.08)
        starts = np.arange(0.0, n / fs, on + off)
        freq = np.full(n, f0)
        env = _gate(n, fs, starts, np.full(len(starts), on))
    else:
        period = rng.uniform(0.2, 0.7)
        freq = np.where(t % period < period / 2, f0, f0 * rng.uniform(1.2, 1.5))
        env = np.ones(n)
    odd = np.array([1.0, 0, 1 / 3, 0, 1 / 5, 0, 1 / 7])
    return env * _harmonics(_phase(freq, fs), odd, freq.max(), fs)


def _phone(n: int, fs: int, rng: np.random.Generator) -> np.ndarray:
    """Telephone ring: two-tone trill in double bursts; the ringer decays through the pauses."""
    t = np.arange(n) / fs
    f1 = rng.uniform(650, 1100)
    f2 = f1 * rng.uniform(1.15, 1.35)
    tone = np.sin(2 * np.pi * f1 * t) + np.sin(2 * np.pi * f2 * t) + 0.3 * np.sin(4 * np.pi * f1 * t)
    trill = (0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(15, 25) * t)) ** 2
    burst, gap, pause = rng.uniform(0.25, 0.45), rng.uniform(0.04, 0.08), rng.uniform(0.1, 0.2)
    tau = rng.uniform(0.05, 0.1)
    env = np.zeros(n)
    for start in np.arange(0.0, n / fs, 2 * burst + gap + pause):
        for s in (start, start + burst + gap):
            g = _gate(int((burst + 6 * tau) * fs), fs, [0.0], [burst])
            ring = np.where(np.arange(len(g)) < burst * fs, g, np.exp(-(np.arange(len(g)) / fs - burst) / tau))
            _place(env, ring, int(s * fs))
    return env * trill * tone


_VOWELS = np.array([  # F1, F2, F3 (Hz) of /a e i o u/ for an adult male voice
    [730, 1090, 2440], [530, 1840, 2480], [270, 2290, 3010], [570, 840, 2410], [300, 870, 2240],
])


def _speech(n: int, fs: int, rng: np.random.Generator) -> np.ndarray:
    """Speech-like babble: glottal pulses with a pitch contour through per-syllable vowel formants."""
    f0 = rng.uniform(90, 240)
    scale = np.interp(f0, [90, 240], [1.0, 1.2]) * rng.uniform(0.95, 1.05)  # vocal-tract size
    semitones = np.linspace(2.0, -2.0, n) + 2.5 * _contour(n, fs, rng.uniform(0.15, 0.35), rng)
    pitch = f0 * 2 ** (semitones / 12)
    glottal = signal.lfilter([1.0], [1.0, -0.9], signal.sawtooth(_phase(pitch, fs)))
    out = np.zeros(n)
    t = 0.0
    while t < n / fs:
        syl = rng.uniform(0.1, 0.3)
        i0, m = int(t * fs), int(syl * fs)
        seg = glottal[i0:i0 + m] * np.hanning(m)[: len(glottal[i0:i0 + m])]
        formants = _VOWELS[rng.integers(len(_VOWELS))] * scale * rng.uniform(0.92, 1.08, 3)
        voiced = _resonate(seg, formants, 5.0, fs)
        if rng.random() < 0.4:  # fricative or plosive onset
            k = min(int(rng.uniform(0.03, 0.08) * fs), len(voiced))
            fric = _bandpass(rng.standard_normal(k), rng.uniform(2500, 4000), 9000, fs) * np.hanning(k)
            voiced[:k] += rng.uniform(0.3, 1.0) * fric * np.std(voiced) / max(np.std(fric), 1e-12)
        _place(out, voiced, i0)
        t += syl * rng.uniform(0.7, 0.9) + (rng.uniform(0.03, 0.08) if rng.random() < 0.15 else 0.0)
    return out


def _footsteps(n: int, fs: int, rng: np.random.Generator) -> np.ndarray:
    """Walking: heel and toe impacts (thump + filtered click) over a scuffing noise bed."""
    hard = rng.random() < 0.5
    cutoff = rng.uniform(2500, 6000) if hard else rng.uniform(800, 2000)
    f_thump, tau_click = rng.uniform(50, 120), rng.uniform(0.006, 0.02)
    out = np.zeros(n)
    bed_env = np.full(n, 0.02)
    m = int(0.3 * fs)
    tt = np.arange(m) / fs
    for onset in _onsets(n / fs, (0.35, 0.6), rng):
        for delay, gain in ((0.0, 1.0), (rng.uniform(0.04, 0.08), rng.uniform(0.3, 0.6))):
            click = _bandpass(rng.standard_normal(m), 80, cutoff, fs) * _decay(m, fs, tau_click)
            thump = np.sin(2 * np.pi * f_thump * tt) * _decay(m, fs, rng.uniform(0.02, 0.04))
            _place(out, gain * rng.uniform(0.7, 1.0) * (click + 0.8 * thump), int((onset + delay) * fs))
        _place(bed_env, 0.15 * _decay(m, fs, 0.12, attack_s=0.02), int(onset * fs))
    bed = _bandpass(rng.standard_normal(n), 400, 3000, fs) * bed_env
    return out + bed * np.std(out) / max(np.std(bed), 1e-12) * 0.3


def _knock(n: int, fs: int, rng: np.random.Generator) -> np.ndarray:
    """Knocking on wood: damped panel modes plus a knuckle click, in accented groups."""
    modes = rng.uniform(150, 700, rng.integers(2, 4))
    m = int(0.25 * fs)
    tt = np.arange(m) / fs
    out = np.zeros(n)
    interval = rng.uniform(0.12, 0.2)
    group = rng.integers(2, 6)
    for i, onset in enumerate(_onsets(n / fs, (interval * 0.9, interval * 1.1), rng)):
        tone = sum(np.sin(2 * np.pi * f * tt + rng.uniform(0, 2 * np.pi)) for f in modes)
        knock = tone * _decay(m, fs, rng.uniform(0.025, 0.05)) + 2.0 * rng.standard_normal(m) * _decay(m, fs, 0.002)
        accent = 1.0 if i % group == 0 else rng.uniform(0.5, 0.8)
        _place(out, accent * knock, int(onset * fs))
    return out


def _door_slam(n: int, fs: int, rng: np.random.Generator) -> np.ndarray:
    """Door slam: optional hinge creak, then a broadband impact with low rumble and latch rattle."""
    creak_s = rng.uniform(0.2, 0.5) if rng.random() < 0.5 else 0.0
    tau_low = rng.uniform(0.1, 0.2)
    length = min(n, int((creak_s + max(0.5, 4 * tau_low)) * fs))
    out = np.zeros(length)
    if creak_s:
        k = int(creak_s * fs)
        rate = rng.uniform(25, 80) * (1 + 0.3 * _contour(k, fs, 0.1, rng))
        pulses = (np.diff(np.floor(np.cumsum(rate) / fs), prepend=0.0) > 0).astype(float)
        creak = _resonate(pulses, rng.uniform(300, 1500, 2), 8.0, fs) * np.hanning(k)
        out[:k] = 0.15 * creak / max(np.abs(creak).max(), 1e-12)
    m = length - int(creak_s * fs)
    tt = np.arange(m) / fs
    impact = _bandpass(rng.standard_normal(m), 60, rng.uniform(2000, 6000), fs) * _decay(m, fs, rng.uniform(0.02, 0.05))
    rumble = sum(np.sin(2 * np.pi * f * tt) for f in rng.uniform(40, 110, 2)) * _decay(m, fs, tau_low)
    panel = sum(np.sin(2 * np.pi * f * tt) for f in rng.uniform(150, 400, 3)) * _decay(m, fs, rng.uniform(0.05, 0.1))
    slam = impact + 0.5 * rumble + 0.3 * panel
    for delay in rng.uniform(0.02, 0.08, rng.integers(1, 4)):  # latch rattle
        _place(slam, 0.3 * rng.standard_normal(int(0.01 * fs)) * _decay(int(0.01 * fs), fs, 0.002), int(delay * fs))
    out[length - m:] += slam / max(np.abs(slam).max(), 1e-12)
    return out


def _water(n: int, fs: int, rng: np.random.Generator) -> np.ndarray:
    """Running water: band-limited noise with slow level changes plus random rising bubbles."""
    noise = _bandpass(rng.standard_normal(n), rng.uniform(300, 1000), rng.uniform(3000, 8000), fs)
    noise *= 1 + rng.uniform(0.3, 0.6) * _contour(n, fs, rng.uniform(0.1, 0.4), rng)
    bubbles = np.zeros(n)
    for onset in rng.uniform(0, n / fs, int(rng.uniform(20, 80) * n / fs)):
        tau = rng.uniform(0.003, 0.015)
        m = int(6 * tau * fs)
        freq = rng.uniform(400, 2500) * (1 + rng.uniform(0.5, 2.0) * np.arange(m) / (tau * fs) / 6)
        _place(bubbles, rng.uniform(0.3, 1.0) * np.sin(_phase(freq, fs)) * _decay(m, fs, tau), int(onset * fs))
    return noise / max(np.std(noise), 1e-12) + rng.uniform(0.5, 1.5) * bubbles / max(np.std(bubbles), 1e-12)


def _music(n: int, fs: int, rng: np.random.Generator) -> np.ndarray:
    """Chord progression of harmonic tones (triads in a random key), sometimes with a melody."""
    root = rng.integers(45, 61)
    scale = np.array([0, 2, 4, 5, 7, 9, 11] if rng.random() < 0.5 else [0, 2, 3, 5, 7, 8, 10])
    amps = 1.0 / np.arange(1, 9) ** rng.uniform(1.0, 2.0)
    chord_s = rng.uniform(0.3, 0.9)
    out = np.zeros(n)
    m = int((chord_s + 0.1) * fs)
    env = np.minimum(np.arange(m) / (rng.uniform(0.01, 0.04) * fs), 1.0) * np.exp(-np.arange(m) / (chord_s * fs))
    env[-int(0.1 * fs):] *= np.linspace(1.0, 0.0, int(0.1 * fs))
    tt = np.arange(m) / fs
    melody = rng.random() < 0.5
    for onset in np.arange(0.0, n / fs, chord_s):
        degree = rng.integers(7)
        notes = [root + 12 * ((degree + s) // 7) + scale[(degree + s) % 7] for s in (0, 2, 4)]
        if melody:
            notes.append(notes[rng.integers(3)] + 12)
        for note in notes:
            f = 440.0 * 2 ** ((note - 69) / 12)
            _place(out, env * _harmonics(2 * np.pi * f * tt, amps, f, fs), int(onset * fs))
    return out


_BELL_RATIOS = np.array([0.5, 1.0, 1.2, 1.5, 2.0, 2.5, 2.67, 3.0, 4.2])  # hum, prime, tierce, quint, nominal...


def _bell(n: int, fs: int, rng: np.random.Generator) -> np.ndarray:
    """Struck bell: inharmonic partials with frequency-dependent decay, tolled repeatedly."""
    f0 = rng.uniform(250, 1500)
    freqs = f0 * _BELL_RATIOS * rng.uniform(0.98, 1.02, len(_BELL_RATIOS))
    keep = freqs < 0.45 * fs
    freqs, amps = freqs[keep], rng.uniform(0.2, 1.0, keep.sum())
    taus = rng.uniform(0.5, 1.5) * (f0 / freqs) ** 0.7
    tt = np.arange(n) / fs
    strike = sum(a * np.sin(2 * np.pi * f * tt) * _decay(n, fs, tau) for f, a, tau in zip(freqs, amps, taus))
    out = np.zeros(n)
    for onset in _onsets(n / fs, (0.8, 2.0), rng):
        _place(out, rng.uniform(0.7, 1.0) * strike, int(onset * fs))
    return out


def _bark(n: int, fs: int, rng: np.random.Generator) -> np.ndarray:
    """Dog bark: rough harmonic bursts with a rise-fall pitch, formant-filtered, in quick series."""
    f0 = rng.uniform(250, 650)
    formants = (rng.uniform(500, 1000), rng.uniform(1200, 2000))
    out = np.zeros(n)
    t = 0.0
    while t < n / fs:
        d = rng.uniform(0.08, 0.2)
        m = int(d * fs)
        pitch = f0 * rng.uniform(0.9, 1.1) * (1 + 0.3 * np.sin(np.pi * np.arange(m) / m))
        voiced = signal.sawtooth(_phase(pitch, fs)) + rng.uniform(0.2, 0.5) * rng.standard_normal(m)
        burst = _resonate(voiced, formants, 3.0, fs) * _decay(m, fs, d / 2, attack_s=0.01)
        _place(out, rng.uniform(0.6, 1.0) * burst, int(t * fs))
        t += d + rng.uniform(0.04, 0.09)
    return out


def _engine(n: int, fs: int, rng: np.random.Generator) -> np.ndarray:
    """Idling engine: firing-rate harmonics with slow rpm drift, cylinder AM and rumble."""
    f_fire = rng.uniform(25, 70) * (1 + 0.08 * _contour(n, fs, rng.uniform(0.5, 1.5), rng))
    phase = _phase(f_fire, fs)
    amps = rng.uniform(0.3, 1.0, 20) / np.arange(1, 21) ** rng.uniform(0.5, 1.0)
    hum = _harmonics(phase, amps, f_fire.max(), fs)
    hum *= 1 + rng.uniform(0.2, 0.5) * np.sin(phase / rng.choice([2, 4]))
    rumble = _bandpass(rng.standard_normal(n), 30, rng.uniform(300, 800), fs)
    return hum / np.std(hum) + rng.uniform(0.1, 0.3) * rumble / np.std(rumble)


def _clapping(n: int, fs: int, rng: np.random.Generator) -> np.ndarray:
    """Hand claps: bright noise bursts; one fast clapper or a few slower ones."""
    clappers = 1 if rng.random() < 0.5 else rng.integers(3, 7)
    interval = (0.11, 0.16) if clappers == 1 else (0.18, 0.25)
    out = np.zeros(n)
    m = int(0.2 * fs)
    for i in range(clappers):
        centre = rng.uniform(800, 2500)
        start = rng.uniform(0.0, 0.1) if i else 0.0
        for onset in start + _onsets(n / fs - start, interval, rng):
            clap = _bandpass(rng.standard_normal(m), centre / 2, centre * 3, fs) * _decay(m, fs, rng.uniform(0.01, 0.025))
            _place(out, rng.uniform(0.6, 1.0) * clap, int(onset * fs))
    return out


def _bird(n: int, fs: int, rng: np.random.Generator) -> np.ndarray:
    """Bird song: a motif of 2-4 FM chirp types (sweeps or trills), repeated with variation."""
    motif = []
    for _ in range(rng.integers(2, 5)):
        d = rng.uniform(0.03, 0.15)
        f_a, f_b = rng.uniform(2000, 6500, 2)
        trill = (rng.uniform(20, 60), rng.uniform(100, 600)) if rng.random() < 0.3 else (0.0, 0.0)
        motif.append((d, f_a, f_b, trill))
    out = np.zeros(n)
    t = 0.0
    while t < n / fs:
        for d, f_a, f_b, (rate, depth) in motif:
            m = int(d * fs)
            tt = np.arange(m) / fs
            freq = f_a * (f_b / f_a) ** (tt / d) * rng.uniform(0.97, 1.03) + depth * np.sin(2 * np.pi * rate * tt)
            ph = _phase(freq, fs)
            _place(out, (np.sin(ph) + 0.2 * np.sin(2 * ph)) * np.hanning(m), int(t * fs))
            t += d + rng.uniform(0.02, 0.07)
    return out


_RECIPES: dict[str, Callable[[int, int, np.random.Generator], np.ndarray]] = {
    "alarm": _alarm, "phone": _phone, "speech": _speech, "footsteps": _footsteps, "knock": _knock,
    "doorSlam": _door_slam, "water": _water, "music": _music, "bell": _bell, "bark": _bark,
    "engine": _engine, "clapping": _clapping, "bird": _bird,
}
SOURCE_CLASSES: tuple[str, ...] = tuple(_RECIPES)
