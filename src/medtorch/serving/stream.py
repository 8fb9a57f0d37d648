"""Real-time predictions of a biosignal bundle over a signal that arrives in chunks.

>>> for decision in stream(bundle, monitor_chunks(), fs=360.0):
...     print(decision.time, decision.label, decision.probability)
>>> report = stream_record("runs/mitbih/bundle", "record_233.hea", chunk_seconds=1.0)   # a stored record, timed

Each beat (or window) is labelled as soon as it can be decided: a beat once the next R-peak
is found (its post-RR interval needs it) and its window has arrived; a window once its last
sample has arrived. Every step is causal and keeps its state between chunks (band-pass,
resampling, R-peak detection, RR features), so streaming gives exactly the labels of
``bundle.predict`` on the whole record.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from medtorch.bundle import Bundle, load_bundle
from medtorch.errors import DataError


@dataclass
class Decision:
    """One labelled beat or window: ``time`` (s from the record start: the R-peak, or the window's
    start), ``label`` and its ``probability``, and ``decided_at`` (s of signal received when decided)."""

    time: float
    label: Any
    probability: float
    decided_at: float
    scores: np.ndarray

    @property
    def delay(self) -> float:
        """Seconds of signal between the event and its decision."""
        return self.decided_at - self.time


class SignalStream:
    """Push chunks ``(channels, samples)`` of one record at rate ``fs``; get :class:`Decision` lists back.

    >>> stream = SignalStream(load_bundle("runs/af/bundle"), fs=300.0)
    >>> decisions = stream.push(chunk) + stream.close()
    """

    def __init__(self, bundle: Bundle | str | Path, fs: float):
        from medtorch.data import signal_io

        self.bundle = load_bundle(bundle) if not isinstance(bundle, Bundle) else bundle
        if self.bundle.modality.name != "signal":
            raise DataError(f"streaming needs a biosignal bundle; this one is {self.bundle.modality.name!r}")
        preprocessor = self.bundle.preprocessor
        self.io, self.fs, self.unit = signal_io, float(fs), preprocessor.unit
        self.model_fs, self.leads = preprocessor.fs, preprocessor.leads
        self.conditioner = signal_io.Conditioner(self.fs, self.model_fs, channels=self.leads, powerline=preprocessor.powerline)
        self.buffer = np.zeros((self.leads, 0), dtype=np.float32)  # conditioned samples from absolute index `offset`
        self.offset = 0
        self.received = 0  # raw samples pushed
        self.emitted = 0  # beats or windows decided
        self.peaks: list[int] = []  # R-peaks at the model's rate
        self.template: np.ndarray | None = None  # the record's typical beat so far (bundles with beat_template)
        if self.unit == "beat":
            from medtorch.data.rpeaks import StreamingRPeakDetector

            self.detector = StreamingRPeakDetector(self.fs)
            self.history = 2 * self.detector.delay_seconds + 1.0  # seconds of conditioned signal kept for late peaks

    def push(self, chunk: np.ndarray) -> list[Decision]:
        """Add the next samples (``(channels, n)``, or ``(n,)`` for one lead); the decisions they complete."""
        chunk = np.asarray(chunk, dtype=np.float32)
        chunk = chunk[None] if chunk.ndim == 1 else chunk
        if len(chunk) < self.leads:
            raise DataError(f"the signal has {len(chunk)} lead(s); the model reads {self.leads}")
        chunk = chunk[: self.leads]
        self.received += chunk.shape[1]
        self.buffer = np.concatenate([self.buffer, self.conditioner(chunk)], axis=1)
        if self.unit == "beat":
            self._add_peaks(self.detector.update(chunk[0].astype(np.float64)))
            return self._decide_beats(final=False)
        return self._decide_windows(final=False)

    def close(self) -> list[Decision]:
        """End of the record: decide what is still pending."""
        if self.unit == "beat":
            self._add_peaks(self.detector.flush())
            return self._decide_beats(final=True)
        return self._decide_windows(final=True)

    def _add_peaks(self, native: np.ndarray) -> None:
        self.peaks += np.round(np.asarray(native) * self.model_fs / self.fs).astype(int).tolist()

    def _decide_beats(self, *, final: bool) -> list[Decision]:
        before, after = self.io.beat_window(self.model_fs)
        end = self.offset + self.buffer.shape[1]
        ready = []
        # beat k needs peak k+1 (its post-RR) unless the record has ended, and its whole window
        for k in range(self.emitted, len(self.peaks) if final else len(self.peaks) - 1):
            if self.peaks[k] + after > end:
                if final:
                    continue
                break
            ready.append(k)
        if not ready:
            return []
        peaks = np.asarray(self.peaks)
        rr = self.io.rr_features(peaks[: ready[-1] + 2] if not final else peaks, self.model_fs)
        keep = [k for k in ready if peaks[k] - before >= 0]  # offline drops beats whose window starts before the record
        self.emitted = ready[-1] + 1
        if not keep:
            return []
        windows = self.io.beat_windows(self.buffer, peaks[keep] - self.offset, self.model_fs)
        template = self.bundle.preprocessor.beat_template
        if template:
            windows, self.template = self.io.with_template_channels(windows, self.template, premature=self.io.premature_beats(rr[keep]))
        features = self.io.flat_features(windows, self.io.beat_extra(windows, rr[keep], self.model_fs, template))
        decisions = self._label(features, peaks[keep] / self.model_fs)
        # a peak still undetected lies at most the detector's delay behind the newest sample
        pending = self.peaks[self.emitted] if self.emitted < len(self.peaks) else end
        self._trim(min(pending, end - int(self.history * self.model_fs)) - before)
        return decisions

    def _decide_windows(self, *, final: bool) -> list[Decision]:
        seconds, step_seconds = self.bundle.preprocessor.window_seconds, self.bundle.preprocessor.window_step_seconds
        pad = final and self.emitted == 0
        windows = self.io.windows_of(self.buffer, "", fs=self.model_fs, window_seconds=seconds, step_seconds=step_seconds, first=self.offset, pad=pad)
        if not len(windows.starts):
            return []
        self.emitted += len(windows.starts)
        self._trim(self.offset + len(windows.starts) * self.io.window_step(self.model_fs, seconds, step_seconds))
        return self._label(windows.features, windows.starts / self.model_fs)

    def _label(self, features: np.ndarray, times: np.ndarray) -> list[Decision]:
        scores = self.bundle.predict_scores(features)
        labels, probability = self.bundle.decide(scores)
        labels = labels.tolist()
        decided_at = self.received / self.fs
        return [Decision(float(t), label, float(p), decided_at, s) for t, label, p, s in zip(times, labels, probability, scores)]

    def _trim(self, keep_from: int) -> None:
        """Forget conditioned samples before absolute index ``keep_from`` (never needed again)."""
        drop = max(0, min(keep_from - self.offset, self.buffer.shape[1]))
        self.buffer, self.offset = self.buffer[:, drop:], self.offset + drop


def stream(bundle: Bundle | str | Path, chunks: Iterable[np.ndarray], fs: float) -> Iterator[Decision]:
    """Decisions over ``chunks`` of one record, yielded as soon as each is decided.

    >>> for decision in stream(bundle, chunks_from_the_monitor(), fs=360.0): alert(decision)
    """
    engine = SignalStream(bundle, fs)
    for chunk in chunks:
        yield from engine.push(chunk)
    yield from engine.close()


@dataclass
class StreamReport:
    """What :func:`stream_record` measured: the decisions, seconds of signal, and the processing time of each chunk."""

    decisions: list[Decision]
    signal_seconds: float
    chunk_seconds: list[float]

    @property
    def speed(self) -> float:
        """How many times faster than real time the processing kept up."""
        return self.signal_seconds / max(sum(self.chunk_seconds), 1e-9)

    def table(self) -> Any:
        """The decisions as a DataFrame: time, label, probability, decided_at, delay."""
        import pandas as pd

        rows = [(d.time, d.label, d.probability, d.decided_at, d.delay) for d in self.decisions]
        return pd.DataFrame(rows, columns=["time", "label", "probability", "decided_at", "delay"])

    def summary(self) -> str:
        """One line: decisions, how much faster than real time, latency per chunk and decision delay."""
        timings, delays = self.chunk_seconds, [d.delay for d in self.decisions]
        line = (
            f"{len(self.decisions)} decisions over {self.signal_seconds:.1f} s of signal in {len(timings)} chunks; "
            f"processing took {sum(timings):.2f} s ({self.speed:.0f}x faster than real time); "
            f"latency per chunk: median {1000 * float(np.median(timings)):.1f} ms, max {1000 * max(timings):.1f} ms"
        )
        return line + (f"; decision delay: median {float(np.median(delays)):.2f} s, max {max(delays):.2f} s" if delays else "")


def stream_record(
    bundle: Bundle | str | Path,
    record: Any,
    *,
    chunk_seconds: float = 1.0,
    record_sampling_rate: float | None = None,
    on_decisions: Callable[[list[Decision]], None] | None = None,
) -> StreamReport:
    """Replay a stored record (a path or a ``SignalRecord``) in chunks of ``chunk_seconds`` as if it were
    arriving, timing each chunk; ``on_decisions`` sees each chunk's decisions as soon as they are made."""
    from medtorch.data import signal_io

    source = record if isinstance(record, signal_io.SignalRecord) else signal_io.read_record(record, fs=record_sampling_rate)
    engine = SignalStream(bundle, source.fs)
    step = max(1, int(round(chunk_seconds * source.fs)))
    chunks = [source.signal[:, start : start + step] for start in range(0, source.signal.shape[1], step)]
    decisions, timings = [], []
    for chunk in [*chunks, None]:  # None: the end of the record
        began = time.perf_counter()
        made = engine.push(chunk) if chunk is not None else engine.close()
        timings.append(time.perf_counter() - began)
        decisions += made
        if on_decisions is not None:
            on_decisions(made)
    return StreamReport(decisions, source.signal.shape[1] / source.fs, timings)
