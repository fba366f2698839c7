"""The real-time runtime on the CPU (``python -m endolib video --realtime IN ...``, :class:`RealtimeRunner`):
reader, gate and segmenter in three threads (the two model threads one core each), a latest-frame policy for live
sources (frames are dropped, and counted, rather than falling behind), per-frame latency p50/p95 and sustained
FPS, saved as ``<out>/realtime_frames.csv`` + ``realtime_summary.json``; an ended or stalled source stops cleanly.

Its stages are any of :mod:`endolib.deploy.stages` (fp32/bf16 on torch, fp32/int8 on onnxruntime, precisions
chosen per CPU by :mod:`endolib.deploy.precision`); the students it deploys are distilled by
:func:`endolib.training.runs.train_students`; :mod:`endolib.deploy.realtime_bench` measures every variant.

Example:
    >>> slot = LatestSlot()
    >>> slot.put(1); slot.put(2); slot.dropped
    1
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from endolib.config import Profile, get_profile, paths
from endolib.deploy.precision import (
    PRECISIONS,
    _calibration,
    cpu_features,
    fastest_precision,
    precision_plan,
)
from endolib.deploy.stages import make_stage

__all__ = ["LatestSlot", "RealtimeRunner", "RealtimeReport", "open_source", "run_realtime", "realtime_main"]


#: the latency percentiles reported
PERCENTILES = (50, 95)


#: frame rate of an in-memory source (and of the benchmark's simulated camera): the phantom clips' 30 FPS
LIVE_FPS = 30.0
#: seconds without a new frame after which a source counts as stalled
STALL_S = 5.0


# ----------------------------------------------------------------------------------------------- students
# ----------------------------------------------------------------------------------------------- runtime
class LatestSlot:
    """A one-frame mailbox between threads. ``put(item, drop=True)`` replaces an item not yet taken (counted in
    ``dropped``: the latest-frame policy of a live source); ``drop=False`` waits until it was taken (a file
    read as fast as possible: nothing is lost). ``close()`` wakes the reader; ``get`` then returns None.

    Example:
        >>> s = LatestSlot(); s.put(1); s.put(2); s.get(), s.dropped
        (2, 1)
    """

    def __init__(self):
        self._cond = threading.Condition()
        self._item, self._full, self.closed, self.dropped = None, False, False, 0

    def put(self, item, drop: bool = True) -> None:
        with self._cond:
            if self._full:
                if drop:
                    self.dropped += 1
                else:
                    while self._full and not self.closed:
                        self._cond.wait(0.1)
            self._item, self._full = item, True
            self._cond.notify_all()

    def get(self, timeout: float | None = None):
        with self._cond:
            end = None if timeout is None else time.perf_counter() + timeout
            while not self._full and not self.closed:
                left = None if end is None else end - time.perf_counter()
                if left is not None and left <= 0:
                    return None
                self._cond.wait(0.1 if left is None else min(0.1, left))
            if not self._full:
                return None
            item, self._item, self._full = self._item, None, False
            self._cond.notify_all()
            return item

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()


def open_source(source, max_frames: int | None = None,
                timeout_s: float = STALL_S) -> tuple[Iterator[np.ndarray], float]:
    """Frames of a file, a capture device or a stream URL (anything PyAV opens), and its frame rate.

    ``source`` may also be a sequence of RGB frames (tests, in-memory clips; rate 30).
    A digit or ``/dev/video*`` opens a V4L2 capture device; ``scheme://`` a stream with a ``timeout_s`` network
    timeout. Returns ``(iterator of RGB uint8 (H, W, 3), fps)``.
    """
    if not isinstance(source, (str, Path)):
        return itertools.islice(iter(source), max_frames), LIVE_FPS
    import av

    text = str(source)
    kw = {}
    if text.isdigit() or text.startswith("/dev/video"):
        kw = {"format": "v4l2"}
        text = f"/dev/video{text}" if text.isdigit() else text
    elif "://" in text:
        kw = {"options": {"rw_timeout": str(int(timeout_s * 1e6)), "timeout": str(int(timeout_s * 1e6))},
              "timeout": timeout_s}
    elif not Path(text).is_file():
        raise FileNotFoundError(f"{text}: no such video file (nor a device or stream URL)")
    try:
        container = av.open(text, **kw)
    except (av.FFmpegError, EOFError, OSError) as e:
        raise ValueError(f"{text}: cannot open as video ({type(e).__name__}: {e})") from None
    if not container.streams.video:
        container.close()
        raise ValueError(f"{text}: contains no video stream")
    stream = container.streams.video[0]
    rate = float(stream.average_rate or stream.guessed_rate or stream.base_rate or 30)

    def gen():
        n = 0
        try:
            for frame in container.decode(stream):
                yield frame.to_ndarray(format="rgb24")
                n += 1
                if max_frames and n >= max_frames:
                    break
        except (av.FFmpegError, EOFError, OSError):
            return  # a broken / ended stream ends the source; the runner reports how far it got
        finally:
            container.close()
    return gen(), rate


@dataclass
class RealtimeReport:
    """Outcome of a real-time run: one row per frame read (``frames``) and the summary printed and saved."""

    frames: pd.DataFrame
    summary: dict
    files: dict = field(default_factory=dict)


class RealtimeRunner:
    """Gate and segmenter in separate threads (one core each) fed by a reader thread.

    Every frame is stamped when read; the gate thread pre-processes and classifies it, passes open frames on to
    the segmenter thread and the segmenter thread produces the mask. Latency = finished - read. With
    ``live=True`` (devices, streams, ``--pace``) the reader never waits: a frame not yet taken by the gate is
    replaced by the newer one (``dropped_gate``), a frame waiting for the segmenter likewise (``dropped_seg``).
    With ``live=False`` (a file read as fast as possible) nothing is dropped and the threads apply
    back-pressure; the sustained FPS is then the pipelined throughput.

    Args:
        classifier: stage ``f(x) -> logit`` with ``size`` (:mod:`endolib.deploy.stages`).
        segmenter: stage ``f(x) -> logits map`` with ``size``.
        gate: classifier probability at which the segmenter runs.
        force_open: run the segmenter on every frame (the worst case: every frame with tissue).
        torch_threads: torch intra-op threads while running (1: one core per model thread).
    """

    def __init__(self, classifier, segmenter, gate: float = 0.5, force_open: bool = False,
                 torch_threads: int | None = 1):
        self.classifier, self.segmenter = classifier, segmenter
        self.gate, self.force_open, self.torch_threads = gate, force_open, torch_threads

    def run(self, source, live: bool = False, pace: bool = False, max_frames: int | None = None,
            stall_s: float = STALL_S, progress: bool = False, keep_masks: bool = False,
            stop_after: int | None = None) -> RealtimeReport:
        """Process ``source`` (see :func:`open_source`); ``pace`` replays a file at its native rate (implies
        live). Stops cleanly when the source ends, yields nothing for ``stall_s`` seconds, or (``stop_after``)
        once that many frames were processed (an endless live source, e.g. a camera in a benchmark)."""
        from endolib.deploy.preprocess import preprocess, sigmoid

        frames_it, rate = open_source(source, max_frames, stall_s)
        live = live or pace
        slot_gate, slot_seg = LatestSlot(), LatestSlot()
        records: dict[int, dict] = {}
        lock = threading.Lock()
        state = {"last_read": time.perf_counter(), "reader_done": False, "error": None, "stalled": False}
        stop = threading.Event()
        masks = {}

        def record(i, **kw):
            with lock:
                records[i].update(kw)

        def reader():
            t0 = time.perf_counter()
            try:
                for i, frame in enumerate(frames_it):
                    if stop.is_set():
                        break
                    if pace:
                        delay = t0 + i / rate - time.perf_counter()
                        if delay > 0:
                            time.sleep(delay)
                    now = time.perf_counter()
                    state["last_read"] = now
                    with lock:
                        records[i] = {"frame": i, "t_read": now}
                    slot_gate.put((i, now, frame), drop=live)
            except Exception as e:  # noqa: BLE001 - reported in the summary, the run still stops cleanly
                state["error"] = f"{type(e).__name__}: {e}"
            finally:
                state["reader_done"] = True
                slot_gate.close()

        def gate_worker():
            while True:
                item = slot_gate.get()
                if item is None:
                    break
                i, t_read, frame = item
                t0 = time.perf_counter()
                x = preprocess(frame, self.classifier.size)
                prob = float(sigmoid(self.classifier(x)).reshape(-1)[0])
                t1 = time.perf_counter()
                is_open = self.force_open or prob >= self.gate
                record(i, gate_prob=prob, gate_open=is_open, classifier_ms=1e3 * (t1 - t0))
                if is_open:
                    slot_seg.put((i, t_read, frame, x), drop=live)
                else:
                    record(i, t_done=t1)
            slot_seg.close()

        def seg_worker():
            while True:
                item = slot_seg.get()
                if item is None:
                    break
                i, t_read, frame, x_cls = item
                t0 = time.perf_counter()
                x = x_cls if self.segmenter.size == self.classifier.size else preprocess(frame, self.segmenter.size)
                prob = sigmoid(self.segmenter(x))[0, 0]
                t1 = time.perf_counter()
                if keep_masks:
                    masks[i] = prob
                record(i, segmenter_ms=1e3 * (t1 - t0), t_done=t1, segmented=True)

        before = torch.get_num_threads()
        if self.torch_threads:
            torch.set_num_threads(int(self.torch_threads))
        threads = [threading.Thread(target=f, name=f"endolib-{n}", daemon=True)
                   for n, f in (("reader", reader), ("gate", gate_worker), ("segmenter", seg_worker))]
        t_start = time.perf_counter()
        bar = tqdm(desc="realtime", unit="frame", disable=not progress, leave=False)
        try:
            for t in threads:
                t.start()
            while any(t.is_alive() for t in threads[1:]):
                threads[2].join(0.05)
                bar.n = len(records)
                bar.refresh()
                if stop_after and not stop.is_set():
                    with lock:
                        n_done = sum("t_done" in r for r in records.values())
                    if n_done >= stop_after:
                        stop.set()
                        slot_gate.close()  # frames already past the gate still finish
                if not state["reader_done"] and time.perf_counter() - state["last_read"] > stall_s:
                    state["stalled"] = True  # the reader may be blocked inside the demuxer: stop without it
                    stop.set()
                    slot_gate.close()
        finally:
            bar.close()
            stop.set()
            slot_gate.close()
            slot_seg.close()
            torch.set_num_threads(before)
        wall = time.perf_counter() - t_start
        with lock:
            df = pd.DataFrame(sorted(records.values(), key=lambda r: r["frame"]))
        summary = self._summary(df, wall, rate, live, pace, slot_gate.dropped, slot_seg.dropped, state,
                                bool(stop_after) and not state["stalled"] and len(df) > 0
                                and sum(df.get("t_done", pd.Series(dtype=float)).notna()) >= stop_after)
        return RealtimeReport(df, summary, {"masks": masks} if keep_masks else {})

    def _summary(self, df: pd.DataFrame, wall: float, rate: float, live: bool, pace: bool, dropped_gate: int,
                 dropped_seg: int, state: dict, stop_requested: bool = False) -> dict:
        for col in ("t_done", "gate_open", "segmented", "classifier_ms", "segmenter_ms"):
            if col not in df:
                df[col] = np.nan
        done = df.dropna(subset=["t_done"]) if len(df) else df
        lat = 1e3 * (done["t_done"] - done["t_read"]) if len(done) else pd.Series(dtype=float)
        seg_done = done[done["segmented"].eq(True)] if len(done) else done
        span = (done["t_done"].max() - df["t_read"].min()) if len(done) else float("nan")
        pct = {f"latency_p{q}_ms": float(np.percentile(lat, q)) if len(lat) else float("nan") for q in PERCENTILES}
        end = "stalled" if state["stalled"] else ("error" if state["error"] else
                                                  ("stopped" if stop_requested else "ended"))
        return {"frames_read": int(len(df)), "frames_processed": int(len(done)), "frames_segmented": int(len(seg_done)),
                "dropped_gate": int(dropped_gate), "dropped_seg": int(dropped_seg),
                "dropped": int(len(df) - len(done)), "fps": float(len(done) / span) if len(done) else 0.0,
                "segmented_fps": float(len(seg_done) / span) if len(seg_done) else 0.0, **pct,
                "classifier_ms_p50": float(np.nanmedian(df["classifier_ms"])) if df["classifier_ms"].notna().any()
                else float("nan"),
                "segmenter_ms_p50": float(np.nanmedian(df["segmenter_ms"])) if df["segmenter_ms"].notna().any()
                else float("nan"),
                "source_fps": rate, "live": live, "paced": pace, "wall_s": wall, "end": end,
                "error": state["error"] or "", "classifier": getattr(self.classifier, "arch", ""),
                "segmenter": getattr(self.segmenter, "arch", ""),
                "precision": getattr(self.segmenter, "precision", "fp32"),
                "backend": getattr(self.segmenter, "backend", ""), "torch_threads": self.torch_threads,
                "load_average": [round(v, 2) for v in os.getloadavg()]}


def format_summary(s: dict) -> str:
    """The printed summary of a real-time run."""
    return (f"{s['frames_read']} frames read ({s['source_fps']:.1f} FPS source, {'live' if s['live'] else 'file'}"
            f"{', paced' if s['paced'] else ''}), {s['frames_processed']} processed, {s['frames_segmented']} "
            f"segmented, dropped {s['dropped']} (at gate {s['dropped_gate']}, at segmenter {s['dropped_seg']}); "
            f"stream {s['end']}{': ' + s['error'] if s['error'] else ''}\n"
            f"sustained {s['fps']:.1f} FPS ({s['segmented_fps']:.1f} FPS segmented); latency p50 "
            f"{s['latency_p50_ms']:.1f} ms, p95 {s['latency_p95_ms']:.1f} ms; per frame classifier "
            f"{s['classifier_ms_p50']:.1f} ms, segmenter {s['segmenter_ms_p50']:.1f} ms (medians); load average "
            f"{s['load_average']}")


def save_report(report: RealtimeReport, out_dir: str | Path) -> dict:
    """Write ``realtime_frames.csv`` (per frame) and ``realtime_summary.json`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    f_csv, f_json = out / "realtime_frames.csv", out / "realtime_summary.json"
    report.frames.to_csv(f_csv, index=False)
    f_json.write_text(json.dumps(report.summary, indent=2, default=float) + "\n")
    report.files.update(frames=f_csv, summary=f_json)
    return {"frames": f_csv, "summary": f_json}


def run_realtime(source, classifier, segmenter, out_dir: str | Path | None = None, **kw) -> RealtimeReport:
    """:class:`RealtimeRunner` on ``source``; saves the per-frame CSV and the summary JSON when ``out_dir``
    is given (also after a stream ended or stalled)."""
    runner_kw = {k: kw.pop(k) for k in ("gate", "force_open", "torch_threads") if k in kw}
    report = RealtimeRunner(classifier, segmenter, **runner_kw).run(source, **kw)
    if out_dir is not None:
        save_report(report, out_dir)
    return report


# ----------------------------------------------------------------------------------------------- CLI
def _stage_for_run(run_dir, precision: str, data_dir: Path | None, p: Profile):
    from endolib.training.load import load_run

    run = load_run(run_dir)
    backend = "torch" if precision in ("fp32", "bf16") else "onnxruntime"
    cal = _calibration(p, data_dir, run.input_size) if precision == "int8" else None
    return make_stage(run.model, run.input_size, run.task, precision, backend, cal, arch=run.arch)


def realtime_main(argv: list[str]) -> int:
    """``python -m endolib video --realtime IN --classifier RUN --segmenter RUN [--precision auto] [--pace]``."""
    ap = argparse.ArgumentParser(prog="python -m endolib video --realtime",
                                 description="Real-time two-stage runtime: gate and segmenter in separate threads, "
                                             "latest-frame policy for live sources; prints and saves latency p50/p95, "
                                             "sustained FPS and dropped frames.")
    ap.add_argument("--realtime", required=True, metavar="IN", help="video file, capture device (0, /dev/video0) or "
                                                                    "stream URL")
    ap.add_argument("--classifier", required=True, metavar="RUN")
    ap.add_argument("--segmenter", required=True, metavar="RUN")
    ap.add_argument("--precision", default="fp32", choices=("auto",) + PRECISIONS,
                    help="fp32 | bf16 | int8 | auto (the fastest measured on this CPU kind: fastest_precision); a "
                         "precision the CPU lacks falls back to fp32 with a printed reason")
    ap.add_argument("--profile", default="quick", help="profile whose training frames calibrate int8")
    ap.add_argument("--pace", action="store_true", help="replay a file at its native frame rate, as if live")
    ap.add_argument("--live", action="store_true", help="latest-frame policy even for a file read at full speed")
    ap.add_argument("--gate", type=float, default=0.5)
    ap.add_argument("--max-frames", type=int, default=None)
    ap.add_argument("--stall", type=float, default=STALL_S, help="seconds without a frame = stalled stream")
    ap.add_argument("--out-dir", default=None, help="where realtime_frames.csv / realtime_summary.json go "
                                                    "(default: next to IN, or ./realtime_out)")
    args = ap.parse_args(argv)
    p = get_profile(args.profile)
    plan = precision_plan()
    prec = args.precision
    if prec == "auto":
        prec = fastest_precision(plan, cpu_features())
    elif not plan[prec]["available"]:
        prec = "fp32"
    src = args.realtime
    out_dir = Path(args.out_dir) if args.out_dir else (Path(src).with_suffix("").parent / f"{Path(src).stem}_realtime"
                                                      if Path(src).is_file() else Path("realtime_out"))
    data_dir = paths(p).phantom
    cls = _stage_for_run(args.classifier, prec, data_dir, p)
    seg = _stage_for_run(args.segmenter, prec, data_dir, p)
    print(f"precision {prec} ({plan[prec]['reason']}); gate {cls.arch} @ {cls.size}px, segmenter {seg.arch} @ "
          f"{seg.size}px, one thread each")
    report = run_realtime(src, cls, seg, out_dir, gate=args.gate, live=args.live, pace=args.pace,
                          max_frames=args.max_frames, stall_s=args.stall, progress=True)
    print(format_summary(report.summary))
    print(f"saved {report.files['frames']} and {report.files['summary']}")
    return 0
