"""Device-clock alignment: offset and drift of a device's timestamps against host receive time.

Every message carries ``host_ns`` (the host's monotonic clock when the frame's last byte was
read); many devices also put their own time in the message (the dmapickle firmware's ``t_us``).
:class:`DeviceClock` estimates, from those pairs alone, the line

    host_ns = offset_ns + device_ns * 10**6 / (10**6 + drift_ppm)

so a device time can be put on the host's time axis (and several devices on one axis), and the
latency of each message measured against it.

The fit
-------
Transport delay is never negative: a message can be late, never early. So the pairs lie on or
above the line "device time -> host time + minimum delay", scattered upwards by jitter (USB
polling, scheduler, a busy socket), and that *lower envelope* is what tracks the two clocks.
The estimator (a minimum-delay fit, as in NTP/PTP skew estimation):

1. Keep the latest ``window`` pairs (default 4096 messages); a device time that goes backwards
   (a reboot) starts a new window.
2. Cut the window's device-time span into ``segments`` (default 16; fewer, down to 6, so that
   each holds about 12 pairs) equal parts and keep the pair with the least delay in each (delay measured against the current line, so a steep
   drift does not pull the choice to one end of a segment).
3. Fit a straight line through those minima robustly: the Theil-Sen slope (the median of the
   slopes between every two minima) and the median intercept; minima further than 3 robust
   standard deviations (1.4826 MAD) from it are outliers (a segment in which the link stalled
   and every message was late, or a device whose clock stepped: QEMU under load drops timer
   ticks). Up to about a quarter of the segments may be outliers, at either end or in between.
   The line is then the least-squares fit through the remaining minima; the choice of minima is
   repeated once against it.

The uncertainties are the least-squares standard errors of that final fit (1 sigma), from the
scatter of the kept minima about the line: ``drift_sigma_ppm``, ``offset_sigma_ns`` (at device time
0, extrapolated) and :meth:`ClockEstimate.host_sigma_ns` at any device time.

What the offset means: one-way timing cannot tell a clock offset from the minimum latency, so
``offset_ns`` is the host time at device time 0 *plus the minimum delay* of the link (for the
firmware, ``t_us`` is the first sample of a block, so that includes filling the block).
:meth:`ClockEstimate.latency_ns` is therefore latency above the fastest message.
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass
from typing import Any, Deque, List, Optional, Tuple

__all__ = ["ClockEstimate", "DeviceClock"]


@dataclass(frozen=True)
class ClockEstimate:
    """The fitted line ``host_ns = offset_ns + device_ns / (1 + drift_ppm * 1e-6)``."""

    #: Host monotonic ns at device time 0, plus the link's minimum delay.
    offset_ns: float
    #: How fast the device clock runs against the host's, in parts per million (+500: the device
    #: counts 1.0005 s per host second).
    drift_ppm: float
    #: 1-sigma uncertainty of ``offset_ns`` (at device time 0).
    offset_sigma_ns: float
    #: 1-sigma uncertainty of ``drift_ppm``.
    drift_sigma_ppm: float
    #: Scatter of the segment minima about the line (the floor's jitter), ns.
    floor_sigma_ns: float
    #: Pairs in the window, and minima the line went through.
    samples: int
    minima: int
    #: Device-time span of the window, seconds.
    span_s: float
    # Internal: the line in a local frame (x = device ns - x0, y = host ns - y0 - x).
    _x0: float = 0.0
    _y0: float = 0.0
    _alpha: float = 0.0
    _beta: float = 0.0
    _xbar: float = 0.0
    _sxx: float = 1.0
    _s2: float = 0.0
    _k: int = 0
    _unit_ns: float = 1000.0

    def to_host_ns(self, device_time: float) -> float:
        """Host monotonic ns of device time ``device_time`` (in the clock's unit)."""
        x = device_time * self._unit_ns - self._x0
        return self._y0 + self._alpha + (1.0 + self._beta) * x

    def host_sigma_ns(self, device_time: float) -> float:
        """1-sigma uncertainty of :meth:`to_host_ns` at ``device_time``."""
        x = device_time * self._unit_ns - self._x0
        return math.sqrt(self._s2 * (1.0 / self._k + (x - self._xbar) ** 2 / self._sxx))

    def to_device(self, host_ns: float) -> float:
        """Device time (in the clock's unit) at host monotonic ns ``host_ns``."""
        x = (host_ns - self._y0 - self._alpha) / (1.0 + self._beta)
        return (x + self._x0) / self._unit_ns

    def latency_ns(self, device_time: float, host_ns: float) -> float:
        """How much later than the fastest message one stamped ``device_time`` arrived."""
        return host_ns - self.to_host_ns(device_time)

    def __str__(self) -> str:
        return (
            f"drift {self.drift_ppm:+.1f} +- {self.drift_sigma_ppm:.1f} ppm, offset "
            f"{self.offset_ns / 1e9:.6f} s +- {self.offset_sigma_ns / 1e3:.1f} us, floor jitter "
            f"{self.floor_sigma_ns / 1e3:.1f} us ({self.samples} messages over {self.span_s:.2f} s)"
        )


def _median(values: List[float]) -> float:
    v = sorted(values)
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


def _inliers(points: List[Tuple[float, float]]) -> List[Tuple[float, float]]:
    """The points within 3 robust sigma of their Theil-Sen line (all of them if that leaves
    fewer than 3)."""
    slopes = [(q[1] - p[1]) / (q[0] - p[0]) for i, p in enumerate(points) for q in points[i + 1:]
              if q[0] != p[0]]
    if not slopes:
        return points
    b = _median(slopes)
    a = _median([p[1] - b * p[0] for p in points])
    r = [p[1] - a - b * p[0] for p in points]
    mad = _median([abs(x) for x in r]) * 1.4826
    kept = [p for p, x in zip(points, r) if abs(x) <= 3 * mad] if mad > 0 else points
    return kept if len(kept) >= 3 else points


def _line(points: List[Tuple[float, float]]) -> Tuple[float, float, float, float, float]:
    """Least squares y = a + b x: (a, b, residual variance, mean x, Sxx)."""
    k = len(points)
    xbar = sum(p[0] for p in points) / k
    ybar = sum(p[1] for p in points) / k
    sxx = sum((p[0] - xbar) ** 2 for p in points)
    sxy = sum((p[0] - xbar) * (p[1] - ybar) for p in points)
    b = sxy / sxx if sxx > 0 else 0.0
    a = ybar - b * xbar
    s2 = sum((p[1] - a - b * p[0]) ** 2 for p in points) / max(k - 2, 1)
    return a, b, s2, xbar, sxx


class DeviceClock:
    """Collects (device time, host_ns) pairs and fits the device clock (see the module docs).

    ``field``: the key of a loaded message's dict that holds the device time (``t_us``);
    ``unit_s``: its unit in seconds (1e-6 for microseconds). :attr:`dmapickle.Stream.clock` is
    one of these, fed by every ``msg.load()`` whose result has ``field``.
    """

    #: Fewest pairs an estimate needs.
    MIN_SAMPLES = 24

    def __init__(self, field: str = "t_us", unit_s: float = 1e-6, *, window: int = 4096,
                 segments: int = 16) -> None:
        if window < self.MIN_SAMPLES or segments < 6:
            raise ValueError(f"window must be >= {self.MIN_SAMPLES} and segments >= 6")
        self.field = field
        self.unit_s = unit_s
        self.segments = segments
        self._pairs: Deque[Tuple[float, int]] = collections.deque(maxlen=window)
        self._last: Optional[Tuple[int, Any]] = None
        self._cached: Optional[ClockEstimate] = None
        #: Times the device time went backwards (a reboot) and the window started over.
        self.restarts = 0

    def add(self, device_time: float, host_ns: int) -> None:
        """One pair: the device's timestamp (in ``unit_s``) and the message's ``host_ns``."""
        pairs = self._pairs
        if pairs and device_time < pairs[-1][0]:
            pairs.clear()
            self.restarts += 1
        pairs.append((device_time, host_ns))
        self._cached = None

    def observe(self, seq: int, host_ns: int, obj: Any) -> None:
        """Feeds a loaded message (``msg.load()`` does this): its ``field`` if it has one, once."""
        if not isinstance(obj, dict):
            return
        t = obj.get(self.field)
        if isinstance(t, (int, float)) and self._last != (seq, host_ns):
            self._last = (seq, host_ns)
            self.add(t, host_ns)

    def __len__(self) -> int:
        return len(self._pairs)

    @property
    def estimate(self) -> Optional[ClockEstimate]:
        """The current fit, or ``None`` with fewer than :attr:`MIN_SAMPLES` pairs or no span."""
        if self._cached is None and len(self._pairs) >= self.MIN_SAMPLES:
            self._cached = self._fit()
        return self._cached

    def _fit(self) -> Optional[ClockEstimate]:
        unit_ns = self.unit_s * 1e9
        d0, h0 = self._pairs[0]
        x0, y0 = d0 * unit_ns, float(h0)
        # Local frame: x in device ns from the first pair, y the host delay against slope 1.
        pts = [((d - d0) * unit_ns, (h - h0) - (d - d0) * unit_ns) for d, h in self._pairs]
        span = pts[-1][0] - pts[0][0]
        if span <= 0:
            return None
        # At least ~12 messages a segment: the minimum of fewer is too often a late one.
        k = max(6, min(self.segments, len(pts) // 12))
        width = span / k
        a = b = 0.0
        for _ in range(2):
            best: List[Optional[Tuple[float, float]]] = [None] * k
            for x, y in pts:
                j = min(int((x - pts[0][0]) / width), k - 1)
                r = y - a - b * x
                cur = best[j]
                if cur is None or r < cur[1] - a - b * cur[0]:
                    best[j] = (x, y)
            minima = _inliers([p for p in best if p is not None])
            a, b, s2, xbar, sxx = _line(minima)
        n = len(minima)
        # host = y0 + a + (1 + b) x  with x = device ns - x0.
        slope = 1.0 + b
        drift_ppm = (1.0 / slope - 1.0) * 1e6
        var_b = s2 / sxx if sxx > 0 else math.inf
        offset = y0 + a - slope * x0
        var_offset = s2 * (1.0 / n + (x0 + xbar) ** 2 / sxx) if sxx > 0 else math.inf
        return ClockEstimate(
            offset_ns=offset,
            drift_ppm=drift_ppm,
            offset_sigma_ns=math.sqrt(var_offset),
            drift_sigma_ppm=math.sqrt(var_b) / slope ** 2 * 1e6,
            floor_sigma_ns=math.sqrt(s2),
            samples=len(pts),
            minima=n,
            span_s=span / 1e9,
            _x0=x0,
            _y0=y0,
            _alpha=a,
            _beta=b,
            _xbar=xbar,
            _sxx=sxx,
            _s2=s2,
            _k=n,
            _unit_ns=unit_ns,
        )

    def __repr__(self) -> str:
        est = self.estimate
        return f"<dmapickle.DeviceClock {self.field!r}: {est if est else f'{len(self)} pairs, no estimate yet'}>"
