"""Causal, streaming QRS (R-peak) detection for one ECG channel (Pan & Tompkins 1985; Hamilton & Tompkins 1986).

>>> detector = StreamingRPeakDetector(fs=360.0)
>>> peaks = np.concatenate([detector.update(chunk) for chunk in chunks] + [detector.flush()])

Written by hand because NeuroKit2's detectors are offline (zero-phase filters and thresholds
over the whole record), so they cannot give the same peaks when a record arrives chunk by chunk.

The pipeline: causal 5-15 Hz Butterworth band-pass, first difference, absolute value (as
Hamilton & Tompkins; on MIT-BIH it misses fewer small beats than squaring), 150 ms moving-window
integration (MWI). Candidates are the MWI maxima that dominate 200 ms either side; adaptive
signal/noise levels (learnt from the first 2 s) classify them, with T-wave discrimination under
360 ms and search-back after 1.66 x the median RR. After 2 s without a beat the signal level is
relearnt (at most halved each time), so an amplitude drop does not leave the detector deaf.
Each beat is placed on the R-peak of the raw signal: the largest deviation from the local median
around the band-passed QRS, the band-pass group delay removed.

Every step is a function of the sample stream alone, never of where the chunks start or end:
filters carry their exact state (``zi``), candidates are decided only once their whole window
has arrived, and the decisions run as events in sample order. So any chunking gives exactly the
peaks of :func:`detect_r_peaks` on the whole record.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import maximum_filter1d
from scipy.signal import butter, group_delay, lfilter, sos2tf, sosfilt, sosfilt_zi

BAND_HZ = (5.0, 15.0)  # the QRS band
INTEGRATION_S = 0.150  # moving-window integration: about the widest QRS
REFRACTORY_S = 0.200  # no two beats closer than this; also the candidates' dominance window
T_WAVE_S = 0.360  # a beat this soon after the last one may be its T wave
LEARNING_S = 2.0  # thresholds start from the first two seconds (and relearn after two seconds without a beat)
RELEARN_FLOOR = 0.5  # a relearning at most halves the signal level
SEARCH_HALF_S = 0.080  # half-width of the R-peak search in the raw signal
BASE_BEFORE_S, BASE_AFTER_S = 0.2, 0.1  # the baseline (median) extends the search window this much
RR_BEATS = 8  # the RR is the median of the last eight intervals
RR_MISSED = 1.66  # search back when no beat for 1.66 x the RR (median of the last eight)
RR_DEFAULT_S, RR_MIN_S, RR_MAX_S = 1.0, 0.3, 1.5  # the RR before two beats, and its limits


@dataclass(frozen=True)
class _Candidate:
    """A dominant MWI maximum: its position ``at``, height, slope (for T waves) and R-peak in the raw signal."""

    at: int
    height: float
    slope: float
    r_peak: int


class _Front:
    """The causal filters: band-pass, first difference, absolute value, moving-window integration (state carried exactly)."""

    def __init__(self, fs: float, width: int):
        self.sos = butter(2, BAND_HZ, btype="band", fs=fs, output="sos")
        self.sos_state: np.ndarray | None = None
        self.last_bp = 0.0
        # FIR through lfilter's recursive path (a padded with zeros): exact per sample, unlike its FIR shortcut
        self.b = np.full(width, 1.0 / width)
        self.a = np.zeros(width)
        self.a[0] = 1.0
        self.mwi_state = np.zeros(width - 1)

    def __call__(self, chunk: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Band-passed signal, absolute slope and MWI of ``chunk`` (float64, same length)."""
        if self.sos_state is None:  # start in steady state for the first sample: no step at the start
            self.sos_state = sosfilt_zi(self.sos) * chunk[0]
        bp, self.sos_state = sosfilt(self.sos, chunk, zi=self.sos_state)
        slope = np.diff(bp, prepend=self.last_bp)
        self.last_bp = float(bp[-1])
        mwi, self.mwi_state = lfilter(self.b, self.a, np.abs(slope), zi=self.mwi_state)
        return bp, np.abs(slope), mwi


class _Tape:
    """The recent raw, band-passed, slope and MWI samples, indexed from the record start."""

    def __init__(self) -> None:
        self.start = 0
        self.raw = self.bp = self.slope = self.mwi = np.zeros(0)

    @property
    def end(self) -> int:
        return self.start + len(self.raw)

    def append(self, raw: np.ndarray, bp: np.ndarray, slope: np.ndarray, mwi: np.ndarray) -> None:
        self.raw = np.concatenate([self.raw, raw])
        self.bp = np.concatenate([self.bp, bp])
        self.slope = np.concatenate([self.slope, slope])
        self.mwi = np.concatenate([self.mwi, mwi])

    def drop_before(self, index: int) -> None:
        cut = min(max(0, index - self.start), len(self.raw))
        if cut:
            self.raw, self.bp, self.slope, self.mwi = (a[cut:] for a in (self.raw, self.bp, self.slope, self.mwi))
            self.start += cut

    def span(self, name: str, lo: int, hi: int) -> np.ndarray:
        """Samples ``lo`` to ``hi`` (exclusive, absolute, clipped to the record) of one series."""
        series = getattr(self, name)
        return series[max(lo, 0) - self.start : max(hi, 0) - self.start]


class StreamingRPeakDetector:
    """Feed chunks of one ECG channel; get R-peak sample indices (absolute, from the record start) as soon as each is decided.

    >>> detector = StreamingRPeakDetector(fs=360.0)
    >>> new_peaks = detector.update(chunk)   # after each chunk; detector.flush() at the end of the record
    """

    def __init__(self, fs: float):
        if not fs > 0:
            raise ValueError(f"the sampling rate must be positive, not {fs}")
        self.fs = float(fs)
        self._width = max(2, round(INTEGRATION_S * fs))
        self._reach = max(1, round(REFRACTORY_S * fs))  # candidates dominate this far either side
        self._t_wave = round(T_WAVE_S * fs)
        self._learning = max(1, round(LEARNING_S * fs))
        self._half = max(1, round(SEARCH_HALF_S * fs))
        self._front = _Front(fs, self._width)
        self._bp_delay = round(float(group_delay(sos2tf(self._front.sos), w=[10.0], fs=fs)[1][0]))
        self._base_before, self._base_after = round(BASE_BEFORE_S * fs), round(BASE_AFTER_S * fs)
        # how far before a candidate the samples of its R-peak search (and baseline) may lie
        self._back = self._width + self._bp_delay + self._half + self._base_before
        self._missed_max = round(RR_MISSED * RR_MAX_S * fs)
        # kept behind the scan: a candidate's R-peak search, and a relearning window after a late search-back
        self._keep = self._back + self._missed_max + self._learning + 2 * self._reach + 2
        self._tape = _Tape()
        self._scanned = 0  # candidates before this sample have been found
        self._pending: deque[_Candidate] = deque()  # found, not yet decided
        self._noise: list[_Candidate] = []  # noise since the last beat: the search-back pool
        self._levels: tuple[float, float] | None = None  # (signal, noise) MWI peak levels, once learnt
        self._last: _Candidate | None = None  # the last beat
        self._rr: list[int] = []
        self._learnt_to = 0  # the levels were last (re)learnt from the MWI before this sample
        self._searched = False  # search-back already tried at the missed-beat time of the last beat
        self._emitted = -1
        self._out: list[int] = []
        self._final = False
        self._last_finite = 0.0

    @property
    def delay_seconds(self) -> float:
        """Upper bound on how long after the R-peak a peak is decided (learning, lookahead, or search-back)."""
        lag = self._width + self._bp_delay + self._half  # how far an R-peak may lie before its MWI peak
        return max(self._reach + lag, self._learning, self._missed_max + lag) / self.fs

    def update(self, chunk: np.ndarray) -> np.ndarray:
        """Process the next samples (1-D, physical units); returns the newly decided R-peaks (int64, sorted)."""
        if self._final:
            raise RuntimeError("the record was flushed; start a new detector")
        chunk = self._held(_one_channel(chunk))
        if chunk.size:
            self._tape.append(chunk, *self._front(chunk))
            self._advance()
        return self._take()

    def flush(self) -> np.ndarray:
        """End of the record: decide whatever is still pending; returns those R-peaks (int64, sorted)."""
        if not self._final:
            self._final = True
            self._advance()
        return self._take()

    # ------------------------------------------------------------ the stream
    def _held(self, chunk: np.ndarray) -> np.ndarray:
        """Missing samples (NaN, inf) hold the last finite value, so one gap does not stop the filters for good."""
        finite = np.isfinite(chunk)
        if not finite.all():
            last = np.maximum.accumulate(np.where(finite, np.arange(chunk.size), -1))
            chunk = np.where(last >= 0, chunk[np.maximum(last, 0)], self._last_finite)
        if chunk.size:
            self._last_finite = float(chunk[-1])
        return chunk

    def _take(self) -> np.ndarray:
        out, self._out = np.asarray(self._out, dtype=np.int64), []
        return out

    def _advance(self) -> None:
        self._scan()
        if self._levels is None and not self._learn():
            return
        self._run_events()
        self._trim()

    def _scan(self) -> None:
        """Find the candidates whose dominance window has fully arrived (or the record ended)."""
        end = self._tape.end
        stop = end if self._final else end - self._reach
        if stop <= self._scanned:
            return
        lo = self._scanned - self._reach
        mwi = self._tape.span("mwi", lo, stop + self._reach)
        pad_left = max(0, -lo)  # before the record start
        pad_right = self._reach - (min(stop + self._reach, end) - stop)  # after the record end
        padded = np.concatenate([np.full(pad_left, -np.inf), mwi, np.full(pad_right, -np.inf)])
        before = _window_max(padded[: -self._reach - 1], self._reach)  # max of the reach before each position
        after = _window_max(padded[self._reach + 1 :], self._reach)  # max of the reach after each position
        centre = padded[self._reach : len(padded) - self._reach]
        hits = np.flatnonzero((centre > before) & (centre >= after) & (centre > 0.0))
        self._pending.extend(self._candidate(self._scanned + int(i)) for i in hits)
        self._scanned = stop

    def _candidate(self, at: int) -> _Candidate:
        window = (max(at - self._width + 1, 0), at + 1)  # the samples the MWI peak integrated
        bp = np.abs(self._tape.span("bp", *window))
        centre = max(window[0] + int(np.argmax(bp)) - self._bp_delay, 0)
        lo, hi = centre - self._half, centre + self._half + 1
        raw = self._tape.span("raw", lo, hi)
        baseline = np.median(self._tape.span("raw", lo - self._base_before, hi + self._base_after))
        deviation = np.abs(raw - baseline)
        r_peak = max(lo, 0) + int(np.argmax(deviation))
        slope = float(np.max(self._tape.span("slope", *window)))
        height = float(self._tape.mwi[at - self._tape.start]) if np.ptp(raw) > 0 else 0.0  # flat raw: not a beat
        return _Candidate(at, height, slope, r_peak)

    def _learn(self) -> bool:
        """Start the signal and noise levels from the first ``LEARNING_S`` of MWI, once they have arrived."""
        if self._tape.end < self._learning and not self._final or not self._tape.end:
            return False
        self._levels = self._learnt(min(self._learning, self._tape.end))
        return True

    def _learnt(self, until: int) -> tuple[float, float]:
        """Signal level a third of the highest MWI, noise level half its mean, over the ``LEARNING_S`` before ``until``."""
        mwi = self._tape.span("mwi", until - self._learning, until)
        self._learnt_to = until
        return float(np.max(mwi)) / 3.0, math.fsum(mwi) / mwi.size / 2.0  # fsum: exact, whatever the memory layout

    def _relearn(self, until: int) -> None:
        """No beat for ``LEARNING_S``: lower the signal level towards the relearnt one, at most halving it."""
        signal, noise = self._levels
        relearnt, _ = self._learnt(until)
        self._levels = (min(signal, max(relearnt, RELEARN_FLOOR * signal)), noise)

    # ------------------------------------------------------------ decisions, as events in sample order
    def _run_events(self) -> None:
        """Decide candidates, search back and relearn, in the order of the sample at which each is due."""
        horizon = self._tape.end - 1 + (self._reach if self._final else 0)  # the last sample that has arrived
        while True:
            due = (self._candidate_time(), self._missed_time(), self._relearn_time())
            when = min(due)
            if when > horizon:
                return
            if due[0] == when:
                self._decide(self._pending.popleft())
                if self._searched:  # past the missed-beat time: try again with this new noise peak
                    self._search_back(int(when))
            elif due[1] == when:
                self._searched = True
                self._search_back(int(when))
            else:  # no beat for LEARNING_S: the signal may have changed (amplitude drop, new lead)
                self._relearn(int(when))
                self._search_back(int(when))

    def _candidate_time(self) -> float:
        """A candidate is decided once its dominance window has passed."""
        return self._pending[0].at + self._reach if self._pending else math.inf

    def _missed_time(self) -> float:
        """When a beat is overdue (1.66 x the RR after the last one): time to search back (once)."""
        if self._searched:
            return math.inf
        last = self._last.at if self._last else 0
        return last + round(RR_MISSED * self._typical_rr())

    def _relearn_time(self) -> float:
        """``LEARNING_S`` after the last beat's refractory period, or after the last (re)learning, with no beat."""
        since = self._last.at + self._reach if self._last else 0
        return max(since, self._learnt_to) + self._learning

    def _typical_rr(self) -> float:
        rr = self._rr[-RR_BEATS:]
        typical = float(np.median(rr)) if rr else RR_DEFAULT_S * self.fs  # median: a missed beat does not stretch it
        return min(max(typical, RR_MIN_S * self.fs), RR_MAX_S * self.fs)

    def _thresholds(self) -> tuple[float, float]:
        signal, noise = self._levels
        high = noise + 0.25 * (signal - noise)
        return high, 0.5 * high

    def _is_t_wave(self, candidate: _Candidate) -> bool:
        last = self._last
        return last is not None and candidate.at - last.at < self._t_wave and candidate.slope < 0.5 * last.slope

    def _decide(self, candidate: _Candidate) -> None:
        if self._last is not None and candidate.at - self._last.at < self._reach:
            return  # refractory
        high, _ = self._thresholds()
        if candidate.height > high and not self._is_t_wave(candidate):
            self._accept(candidate, weight=0.125)
        else:
            self._noise.append(candidate)
            signal, noise = self._levels
            self._levels = (signal, 0.125 * candidate.height + 0.875 * noise)

    def _search_back(self, now: int) -> None:
        """Take the highest noise peak above the lower threshold since the last beat (and not too old), if any."""
        _, low = self._thresholds()
        self._noise = [c for c in self._noise if c.at >= now - self._missed_max]  # bounds the decision delay
        eligible = [c for c in self._noise if c.height > low and not self._is_t_wave(c)]
        if eligible:
            self._accept(max(eligible, key=lambda c: c.height), weight=0.25)

    def _accept(self, beat: _Candidate, weight: float) -> None:
        signal, noise = self._levels
        self._levels = (weight * beat.height + (1.0 - weight) * signal, noise)
        if self._last is not None:
            self._rr.append(beat.at - self._last.at)
            del self._rr[:-RR_BEATS]
        self._last = beat
        self._noise = [c for c in self._noise if c.at > beat.at]
        self._searched = False
        if beat.r_peak > self._emitted:
            self._out.append(beat.r_peak)
            self._emitted = beat.r_peak

    def _trim(self) -> None:
        if self._levels is not None:
            self._tape.drop_before(self._scanned - self._keep)


def _one_channel(chunk: np.ndarray) -> np.ndarray:
    """``chunk`` as 1-D float64; a (n, 1) or (1, n) array is fine, several channels are not."""
    chunk = np.asarray(chunk, dtype=np.float64)
    if sum(n > 1 for n in chunk.shape) > 1:
        raise ValueError(f"one ECG channel at a time: got a chunk of shape {chunk.shape}")
    return chunk.reshape(-1)


def _window_max(x: np.ndarray, size: int) -> np.ndarray:
    """``out[j] = max(x[j : j + size])`` for every full window (exact: maxima do not round)."""
    if len(x) < size:
        return np.zeros(0)
    return maximum_filter1d(x, size)[size // 2 : size // 2 + len(x) - size + 1]


def detect_r_peaks(signal: np.ndarray, fs: float) -> np.ndarray:
    """Offline = the streaming detector fed the whole record in one chunk, then flushed.

    >>> peaks = detect_r_peaks(ecg, fs=360.0)   # int64 sample indices of the R-peaks
    """
    detector = StreamingRPeakDetector(fs)
    return np.concatenate([detector.update(signal), detector.flush()])
