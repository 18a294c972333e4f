"""The in-app telemetry client: the caller appends, one daemon thread does everything else."""

from __future__ import annotations

import atexit
import collections
import email.utils
import itertools
import logging
import operator
import os
import queue
import threading
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from telemetry_shunt.client import _options as check
from telemetry_shunt.client._aggregate import Aggregator, folded_records
from telemetry_shunt.client._breaker import CircuitBreaker
from telemetry_shunt.client._encoding import compress, encode_aggregates, encode_records
from telemetry_shunt.client._http import Connection, ProtocolError, RequestTimeout
from telemetry_shunt.client._killswitch import FlagPoller, KillSwitchSource, ScheduleClock, SystemScheduleClock
from telemetry_shunt.client._records import GAUGE_NAME, HISTOGRAM_NAME, RAW_NAME, RAW_VALUE, SUM_NAME, TIME, VALUE
from telemetry_shunt.core.contract import BATCH_ID_HEADER, METRICS_CONTENT_TYPE, METRICS_PATH

if TYPE_CHECKING:
    import ssl

    from botocore.credentials import Credentials

logger = logging.getLogger("telemetry_shunt.client")

# Why data was dropped. Every record emitted ends up sent, queued or counted under one of these.
DROP_REASONS = (
    "buffer_full",  # the buffer was full: the oldest record (or aggregate batch) made room for a new one
    "cardinality",  # count/gauge/distribution: a new series when max_series were live this interval
    "disabled",  # the kill switch was off (emitted while off, or buffered when it turned off)
    "config_error",  # sending stopped on a configuration error (403, 404, no credentials, ...)
    "invalid",  # the value was not a finite number (or a series' sum overflowed), or the name not a non-empty string
    "oversized",  # the record's line would reach the collector's 1 MiB line limit (it would discard it)
    "unconfirmed",  # at-most-once: the body was sent but no answer came (may have arrived; not retried)
    "timeout",  # the last attempt of the batch ran out of its deadline
    "connection",  # the last attempt could not connect, or the connection broke
    "server_error",  # the last attempt got a 5xx (or 408) answer
    "throttled",  # the last attempt got a 429 (or 503 with Retry-After)
    "credentials",  # the last attempt could not get credentials (a failing refresh)
    "internal_error",  # a bug in this client dropped the batch (logged once at ERROR)
    "shutdown",  # still unsent when close() or interpreter exit ran out of time
    "closed",  # emitted after close()
)
_EMIT_REJECT_REASONS = ("disabled", "config_error", "closed")

# What a batch whose request was sent but not answered (a timeout, a broken connection) becomes:
AT_MOST_ONCE = "at_most_once"  # dropped as "unconfirmed": a count is never inflated (the default)
AT_LEAST_ONCE = "at_least_once"  # retried: a whole batch may arrive twice, with the same batch id
DELIVERY_GUARANTEES = (AT_MOST_ONCE, AT_LEAST_ONCE)

STARTING = "starting"  # waiting for the first kill-switch read; records are buffered, not sent
SENDING = "sending"
DISABLED = "disabled"  # the kill switch is off
STOPPED = "stopped"  # a configuration error stopped sending for good
CLOSED = "closed"

_time = time.time
_monotonic = time.monotonic
_DISCARD = collections.deque(maxlen=0).append
# While a response is awaited, the worker looks this often whether a fold chunk waits (see Connection).
_BUSY_POLL_SECONDS = 0.01
# Sleep between checks while starting, disabled or stopped (the kill switch's reader and close() wake the
# worker; emits racing a switch-off are drained then).
_IDLE_SECONDS = 1.0


class _Waker:
    """The worker's wake-up call, with threading.Event's set/wait/clear. ``set`` is safe from any thread and
    from a signal handler that interrupted one inside ``set``: ``SimpleQueue.put`` takes no lock and never
    blocks (Python documents it as reentrant), where ``Event.set`` takes the lock the waiter holds and would
    deadlock there. A caller's nudge (see TelemetryClient._nudge) must never wait, so the calls stay
    lock-free."""

    __slots__ = ("_queue",)

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[None] = queue.SimpleQueue()

    def set(self) -> None:
        self._queue.put(None)

    def wait(self, timeout: float) -> bool:
        """Until set, or ``timeout`` seconds; whether it was set (the wake stays pending until ``clear``)."""
        try:
            self._queue.get(timeout=timeout)
        except queue.Empty:
            return False
        self._queue.put(None)
        return True

    def clear(self) -> None:
        get = self._queue.get_nowait
        try:
            while True:
                get()
        except queue.Empty:
            pass


def _nudge_mask(threshold: int) -> int:
    """The callers look whether to wake the worker on every record whose accepted count ``n`` has
    ``n & mask == 0``: every power of two records at most half of ``threshold`` (the smaller of a fold chunk
    and a batch), so a threshold reached is seen within half a threshold more records, at an int test a call.
    """
    return (1 << max(0, (threshold // 2).bit_length() - 1)) - 1


def _series_waiting(entry: list) -> int:
    """Series of a closed interval still to be sent (an Aggregator until its groups are folded)."""
    if entry[0].__class__ is Aggregator:
        return entry[0].series_bound()
    return len(entry[0]) - entry[1]


# Closed intervals whose aggregates wait to be sent (the gateway down): at most this many (and at most
# max_series series in all), the oldest dropped.
_MAX_CLOSED_INTERVALS = 10
# At most this many batches in one go, so the worker looks at close() and the kill switch between rounds.
_MAX_BATCHES_PER_ROUND = 32
# Values (one float each, the records themselves freed) that may wait in an interval's groups before they
# are folded into its series, per record of max_buffered_records: folding fewer times, in bigger groups, is
# what keeps up with many series at high rates (see Aggregator).
_PENDING_PER_BUFFERED = 4


@dataclass(frozen=True)
class ClientStats:
    """A snapshot of the client's counters: ``emitted == sent + dropped_total + queued``."""

    emitted: int
    sent: int
    queued: int
    dropped: Mapping[str, int]
    state: str
    breaker: str
    requests: int
    failed_requests: int
    connections_opened: int
    error: str | None = None
    # Reasons that dropped nothing are present with 0, so dashboards see a stable shape.
    dropped_total: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "dropped_total", sum(self.dropped.values()))


def load_worker_modules() -> None:
    """Import what the worker needs to send (botocore's session and exceptions, the signer). The worker calls
    this when it starts, off the caller's thread; the bench calls it before its CPU clock starts."""
    import botocore.exceptions  # noqa: F401
    import botocore.session  # noqa: F401

    from telemetry_shunt.client import _signing  # noqa: F401


class TelemetryClient:
    """Sends metrics to the telemetry gateway without ever slowing down or failing its host.

    ``emit`` only appends a tuple to a bounded buffer (no lock, no I/O, never raises); a daemon thread
    batches records into the gateway's ``POST /metrics`` format, signs each batch once with SigV4 for
    VPC Lattice and sends it over a kept-alive connection with a total deadline. Failures trip a circuit
    breaker; configuration errors (403, 404, no credentials) stop sending and are logged once at
    ERROR on the ``telemetry_shunt.client`` logger. ``close()`` and interpreter exit wait at most their
    bound. See ``docs/client.md``.

    Args:
        endpoint: The gateway, ``https://<service-dns-name>`` (no path; the client posts to ``/metrics``).
        region: The gateway's region, for the signature.
        credentials: botocore credentials; by default the worker resolves the default provider chain
            (environment, profile, container or instance role) off the caller's thread.
        kill_switch: Where to read the kill switch (a ``KillSwitchSource``); ``None`` runs without one. By
            default the AppConfig agent on ``localhost:2772``, read every 15 s by a thread of its own:
            nothing is sent until its flags read as "on".
        max_buffered_records: Buffer bound; when full the oldest record is dropped (``buffer_full``).
        max_batch_records: Records per request at most.
        flush_interval_seconds: A partial batch waits at most this long.
        request_timeout_seconds: Total deadline of one request: connect, send and the whole response.
        max_attempts: Attempts per batch before it is dropped under the last failure's reason.
        failure_threshold: Consecutive failures that open the circuit breaker.
        base_backoff_seconds, max_backoff_seconds: Breaker backoff, doubled per trip, jittered to
            50-100 %; also caps how long a ``Retry-After`` is honoured.
        exit_timeout_seconds: How long interpreter exit may spend flushing this client.
        compress: gzip request bodies (``Content-Encoding: gzip``).
        ssl_context: For ``https`` endpoints; the system trust store by default.
        delivery: What happens to a batch whose request was sent but not answered (a timeout after the
            body went out, a connection broken while waiting): ``"at_most_once"`` (default) drops it as
            ``unconfirmed``, so no count is ever inflated; ``"at_least_once"`` retries it, so a batch may
            arrive twice, whole and with the same batch id (the buffer fleet drops repeats it sees).
        clock: The kill-switch poll schedule's time source; tests pass a simulated one.
        max_series: ``count``/``gauge``/``distribution`` series (kind, name and attributes) live in one
            flush interval at most; a new one beyond is dropped as ``cardinality``.

    Every argument is checked here: a bad one raises ``ValueError`` naming it, never later.
    """

    def __init__(
        self,
        endpoint: str,
        *,
        region: str,
        credentials: Credentials | None = None,
        kill_switch: KillSwitchSource | None = KillSwitchSource(),  # noqa: B008 - immutable value
        max_buffered_records: int = 20_000,
        max_batch_records: int = 1_000,
        flush_interval_seconds: float = 1.0,
        request_timeout_seconds: float = 1.0,
        max_attempts: int = 3,
        failure_threshold: int = 3,
        base_backoff_seconds: float = 0.5,
        max_backoff_seconds: float = 30.0,
        exit_timeout_seconds: float = 1.0,
        compress: bool = True,
        ssl_context: ssl.SSLContext | None = None,
        delivery: str = AT_MOST_ONCE,
        clock: ScheduleClock | None = None,
        max_series: int = 10_000,
    ) -> None:
        self._endpoint = check.endpoint(endpoint)
        self._region = check.region(region)
        self._given_credentials = check.credentials(credentials)
        self._kill_switch = check.instance("kill_switch", kill_switch, KillSwitchSource, "a KillSwitchSource")
        self._max_buffered = check.integer("max_buffered_records", max_buffered_records, low=1, high=10_000_000)
        self._max_batch = check.integer("max_batch_records", max_batch_records, low=1, high=10_000)
        self._flush_interval = check.seconds("flush_interval_seconds", flush_interval_seconds, low=0, high=3600)
        self._request_timeout = check.seconds("request_timeout_seconds", request_timeout_seconds, low=0, high=300)
        self._max_attempts = check.integer("max_attempts", max_attempts, low=1, high=100)
        self._breaker_args = {
            "failure_threshold": check.integer("failure_threshold", failure_threshold, low=1, high=1_000_000),
            "base_backoff": check.seconds("base_backoff_seconds", base_backoff_seconds, low=0, high=3600),
            "max_backoff": check.seconds("max_backoff_seconds", max_backoff_seconds, low=0, high=3600),
        }
        if base_backoff_seconds > max_backoff_seconds:
            raise ValueError(f"base_backoff_seconds must not exceed max_backoff_seconds (need base_backoff <= "
                             f"max_backoff), got {base_backoff_seconds!r} > {max_backoff_seconds!r}")
        CircuitBreaker(**self._breaker_args)  # validate now, in the caller's thread
        self._exit_timeout = check.seconds("exit_timeout_seconds", exit_timeout_seconds, low=0, high=300,
                                           low_inclusive=True)
        self._compress = check.boolean("compress", compress)
        self._ssl_context = check.ssl_context(ssl_context)
        self._delivery = check.one_of("delivery", delivery, DELIVERY_GUARANTEES)
        self._max_series = check.integer("max_series", max_series, low=1, high=1_000_000)

        if clock is not None and not (callable(getattr(clock, "monotonic", None))
                                      and callable(getattr(clock, "sleep_until", None))):
            raise ValueError(f"clock must have monotonic() and sleep_until(event, deadline), got {clock!r}")
        self._clock: ScheduleClock = clock if clock is not None else SystemScheduleClock()
        self._url = f"{self._endpoint.scheme}://{self._endpoint.host_header}{METRICS_PATH}"
        self._start()
        _live_clients.add(self)

    # --- the caller's side ------------------------------------------------------------------------

    def emit(self, name: str, value: float, /, **attributes: Any) -> None:
        """Record ``value`` for metric ``name`` with string ``attributes``. Never blocks, never raises.

        Costs a counter increment, an int test (every few hundred calls a look at the buffers: _nudge) and a
        deque append; the worker validates and encodes later (a value that is not a finite number is dropped
        as ``invalid``).
        """
        # One attribute read gives a consistent (counter, buffers, nudge mask) even while the worker swaps it.
        count, append, _, mask = self._sink
        if not count() & mask:  # every few hundred records: wake the worker if a batch waits (_nudge)
            self._nudge()
        # The record is the attributes dict itself (see _records): nothing allocated, nothing for the
        # garbage collector to track.
        attributes[RAW_VALUE] = value
        attributes[RAW_NAME] = name
        attributes[TIME] = _time()
        append(attributes)

    # emit, count, gauge and distribution repeat the same few lines on purpose: a shared helper would add a
    # Python call to every call, about a tenth of what a call costs (the bound: 1.5x a bare append).

    def count(self, name: str, value: float = 1, /, **attributes: Any) -> None:
        """Add ``value`` (>= 0) to counter ``name`` for these attributes. Never blocks, never raises.

        Summed in the worker per flush interval and per series; sent as one delta sum a series and interval.
        """
        count, _, append, mask = self._sink
        if not count() & mask:
            self._nudge()
        attributes[VALUE] = value
        attributes[SUM_NAME] = name
        append(attributes)

    def gauge(self, name: str, value: float, /, **attributes: Any) -> None:
        """Set gauge ``name`` to ``value`` for these attributes; the last value of each interval is sent."""
        count, _, append, mask = self._sink
        if not count() & mask:
            self._nudge()
        attributes[VALUE] = value
        attributes[GAUGE_NAME] = name
        append(attributes)

    def distribution(self, name: str, value: float, /, **attributes: Any) -> None:
        """Record ``value`` in distribution ``name``: sent per interval and series as count, sum, min, max
        and an OTLP exponential histogram."""
        count, _, append, mask = self._sink
        if not count() & mask:
            self._nudge()
        attributes[VALUE] = value
        attributes[HISTOGRAM_NAME] = name
        append(attributes)

    def stats(self) -> ClientStats:
        """Counters so far; ``emitted == sent + dropped_total + queued`` in every snapshot. While other
        threads are inside ``emit``, a record in flight may count as ``buffer_full`` instead of queued."""
        with self._lock:
            queued = len(self._buffer) + len(self._agg_buffer)
            accepted = _peek(self._accepted)
            rejected = {reason: _peek(counter) for reason, counter in self._rejected.items()}
            dropped = dict.fromkeys(DROP_REASONS, 0)
            dropped.update(self._worker_drops)
            for reason, n in rejected.items():
                dropped[reason] += n
            dropped["buffer_full"] += accepted - self._taken - queued
            return ClientStats(
                emitted=accepted + sum(rejected.values()),
                sent=self._sent,
                queued=queued + self._held,
                dropped=dropped,
                state=self._state,
                breaker=self._breaker.state,
                requests=self._requests,
                failed_requests=self._failed_requests,
                connections_opened=self._connection.connections_opened,
                error=self._error,
            )

    def close(self, timeout: float = 1.0) -> None:
        """Send what the remaining time allows and stop; returns within ``timeout`` seconds.

        Records still unsent when time runs out are dropped as ``shutdown``; later emits as ``closed``.
        """
        deadline = _monotonic() + max(0.0, timeout)
        self._begin_close(deadline)
        self._finish_close(deadline)

    def __enter__(self) -> TelemetryClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- lifecycle ----------------------------------------------------------------------------------

    def _start(self) -> None:
        """(Re)initialise every piece of state and start the worker: at construction and in a forked child."""
        self._lock = threading.Lock()
        self._wake = _Waker()
        self._closing = False
        self._close_deadline = float("inf")
        self._buffer: collections.deque = collections.deque(maxlen=self._max_buffered)
        # count/gauge/distribution records: the worker folds them a chunk at a time (see _fold_chunk).
        self._agg_buffer: collections.deque = collections.deque(maxlen=self._max_buffered)
        self._accepted = itertools.count()
        self._rejected = {reason: itertools.count() for reason in _EMIT_REJECT_REASONS}
        # Aggregate records are folded a chunk at a time (bulk folding gets cheaper per record with bigger
        # chunks), at the latest when the interval closes; a quarter of the buffer leaves room for bursts.
        self._fold_chunk = max(1, self._max_buffered // 4)
        # The worker sleeps until the flush interval ends; the callers wake it sooner when a fold chunk or a
        # full batch waits (_nudge), looking every _nudge_mask + 1 records.
        self._nudge_mask = _nudge_mask(min(self._fold_chunk, self._max_batch))
        self._raw_nudge = True  # whether a full batch of emitted records may wake the worker (the breaker allows)
        self._sink = self._accepting_sink()
        # This interval's aggregates (their records are "held"); values wait in groups, at most
        # _PENDING_PER_BUFFERED x max_buffered_records of them, before they are folded into the series.
        self._canonical: dict[tuple, tuple] = {}  # the aggregators' bulk key -> series key, across intervals
        self._aggregator = self._new_aggregator()
        # Attribute set -> its JSON, across intervals (cleared past 2 x max_series entries).
        self._attribute_json: dict[frozenset, str] = {}
        self._series_held = 0
        self._interval_start = _time()
        # Closed intervals still to send: [series items (the Aggregator until its groups are folded), next
        # position, start, end, records still held].
        # Encoded a batch at a time when one is due, folding in between.
        self._closed: collections.deque[list] = collections.deque()
        self._taken = 0  # records the worker popped from the buffer
        self._sent = 0
        self._held = 0  # popped but neither sent nor dropped yet (the batch in hand)
        self._worker_drops: collections.Counter[str] = collections.Counter()
        self._pending: _Batch | None = None
        self._state = STARTING if self._kill_switch is not None else SENDING
        self._error: str | None = None
        self._flag_problem: str | None = None
        self._flags_read = False  # the kill switch has been read successfully at least once
        # The kill switch's decision as the poller last saw it (None: not read yet); the worker follows it.
        self._flags_enabled: bool | None = None
        self._bug_reported = False
        self._breaker = CircuitBreaker(**self._breaker_args)
        self._requests = 0
        self._failed_requests = 0
        # While a response is awaited the worker keeps folding, so a slow gateway does not fill the buffer.
        self._connection = Connection(self._endpoint, ssl_context=self._ssl_context,
                                      while_waiting=self._fold_if_waiting, wait_slice=_BUSY_POLL_SECONDS)
        self._poller = None
        if self._kill_switch is not None:
            self._poller = FlagPoller(self._kill_switch, self._on_flags, self._clock)
        self._credentials = self._given_credentials
        self._worker = threading.Thread(target=self._run, name="telemetry-shunt-client", daemon=True)
        self._worker.start()
        if self._poller is not None:
            self._poller.start()

    def _after_fork_in_child(self) -> None:
        # The parent's threads do not exist here, its locks may be held, and its buffered records are
        # the parent's to send. Start over; never touch the parent's sockets.
        self._connection.forget()
        if self._poller is not None:
            self._poller.forget()
        if self._closing:
            self._lock = threading.Lock()
            return
        self._start()

    def _begin_close(self, deadline: float) -> None:
        with self._lock:
            if self._closing:
                return
            self._closing = True
            self._close_deadline = deadline
            self._sink = self._rejecting_sink("closed")
        if self._poller is not None:
            self._poller.stop()
        self._wake.set()

    def _finish_close(self, deadline: float) -> None:
        if self._worker is not threading.current_thread():
            self._worker.join(max(0.0, deadline - _monotonic()))
        if not self._worker.is_alive():
            # An emit that read the sink just before close() may have appended after the worker left.
            self._drain("shutdown")

    # --- the worker -----------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            # Off the caller's thread, before the first batch is due: botocore's import here, the
            # credential chain (which may query instance metadata) once the kill switch says "on".
            load_worker_modules()
        except Exception:
            logger.exception("telemetry-shunt client could not load botocore")
        next_flush = _monotonic() + self._flush_interval
        failed_before = False
        while True:
            try:
                if self._closing:
                    self._shutdown()
                    return
                self._follow_flags()
                if self._state == SENDING and self._credentials is None:
                    self._credentials = self._resolve_credentials()
                if self._state == SENDING:
                    flush_due = _monotonic() >= next_flush
                    self._send_ready(flush_due)
                    if flush_due:
                        next_flush = _monotonic() + self._flush_interval
                elif self._state in (DISABLED, STOPPED) and (self._buffer or self._agg_buffer):
                    self._drain("disabled" if self._state == DISABLED else "config_error")
                failed_before = False
            except Exception:
                # A bug here must not kill the worker or flood the log: report once, slow down, go on.
                if not failed_before:
                    logger.exception("telemetry-shunt client worker failed; continuing")
                failed_before = True
                self._wake.wait(1.0)
            self._wake.wait(self._idle_seconds(next_flush))
            self._wake.clear()

    def _idle_seconds(self, next_flush: float) -> float:
        """How long the worker may sleep: until the flush interval ends, or the breaker allows a request
        again. Sooner only when woken: close(), a kill-switch change, or a caller's nudge (a fold chunk or a
        full batch waits)."""
        now = _monotonic()
        if self._state != SENDING:  # only the kill switch (or close) can change anything
            return _IDLE_SECONDS
        wait = next_flush - now
        held_back = self._breaker.seconds_until_allowed()
        # While the breaker holds sending back, a full batch of emitted records must not wake the worker.
        self._raw_nudge = held_back <= 0
        if held_back > 0:
            wait = min(wait, held_back)
        return max(wait, 0.001)

    def _on_flags(self, enabled: bool, problem: str | None) -> None:
        """The poller's thread, after each read: record the decision, stop accepting at once on "off",
        wake the worker (which follows the decision between two requests)."""
        # As the host-side watcher does: fail closed until the switch has been read once, then keep
        # the last decision through an outage of the agent (it neither kills nor revives telemetry).
        if problem != self._flag_problem:
            self._flag_problem = problem
            if problem and self._flags_read:
                logger.warning("telemetry-shunt client: keeping the last kill-switch decision, %s", problem)
            elif problem:
                logger.warning("telemetry-shunt client: telemetry off until the kill switch can be read, %s",
                               problem)
        if problem and self._flags_read:
            return
        self._flags_read = self._flags_read or problem is None
        with self._lock:
            self._flags_enabled = enabled
            if not enabled and not self._closing and self._state in (STARTING, SENDING):
                self._sink = self._rejecting_sink("disabled")
        self._wake.set()

    def _follow_flags(self) -> None:
        """The worker's thread: move to the kill switch's last decision."""
        enabled = self._flags_enabled
        if enabled is None:
            return
        if enabled and self._state in (STARTING, DISABLED):
            with self._lock:
                if self._closing or not self._flags_enabled:
                    return
                self._sink = self._accepting_sink()
            if self._state == DISABLED:
                logger.info("telemetry-shunt client: kill switch on, sending again")
            self._state = SENDING
        elif not enabled and self._state in (STARTING, SENDING):
            if self._state == SENDING and not self._flag_problem:
                logger.warning("telemetry-shunt client: kill switch off, dropping telemetry")
            with self._lock:
                if not self._closing:
                    self._sink = self._rejecting_sink("disabled")
            self._state = DISABLED
            self._drain("disabled")
            self._connection.close()

    def _accepting_sink(self) -> tuple:
        return (self._accepted.__next__, self._buffer.append, self._agg_buffer.append, self._nudge_mask)

    def _rejecting_sink(self, reason: str) -> tuple:
        return (self._rejected[reason].__next__, _DISCARD, _DISCARD, -1)  # (-1: a nudge only on the first)

    def _nudge(self) -> None:
        """A caller's thread, every few hundred records (see _nudge_mask): wake the worker when a fold chunk
        of aggregate records waits, or a full batch of emitted ones it can send (not while the breaker holds
        sending back: those wait for it to allow, and would only wake the worker for nothing). The worker
        otherwise sleeps until the flush interval ends. Takes no lock (see _Waker)."""
        if self._state == SENDING and (len(self._agg_buffer) >= self._fold_chunk
                                       or (self._raw_nudge and len(self._buffer) >= self._max_batch)):
            self._wake.set()

    def _fold(self, at_least: int = 1) -> None:
        """Fold every waiting count/gauge/distribution record into this interval's series, if ``at_least``
        are waiting; and one slice of its pending groups once max_pending records wait there."""
        buffer = self._agg_buffer
        if self._aggregator.pending >= self._aggregator.max_pending:
            self._series_held -= self._flush_slice(self._aggregator)
        if len(buffer) < at_least:
            return
        with self._lock:
            n = len(buffer)
            if not n:
                return
            # Exactly the n oldest, popped in C (callers keep appending on the right meanwhile).
            items = list(map(operator.call, itertools.repeat(buffer.popleft, n)))
            self._taken += n
            self._held += n
        try:
            invalid, rejected = self._aggregator.add(items)
        except Exception:
            # A bug: the chunk may be half folded, so the interval so far goes with it (counted, never sent twice).
            self._report_bug()
            self._aggregator.clear()
            self._drop_held(internal_error=n + self._series_held)
            self._series_held = 0
            return
        self._series_held += n - invalid - rejected
        self._drop_held(invalid=invalid, cardinality=rejected)

    def _drop_held(self, **by_reason: int) -> None:
        """Records the worker holds (taken, not yet sent), dropped now under these reasons."""
        with self._lock:
            for reason, n in by_reason.items():
                self._held -= n
                self._worker_drops[reason] += n

    def _fold_if_waiting(self) -> None:
        self._fold(self._fold_chunk)

    def _new_aggregator(self) -> Aggregator:
        """The next interval's aggregator; the bulk key -> series key map is kept (building a series key is
        most of what a series' first record costs), up to 4 x max_series keys (attribute orders included)."""
        if len(self._canonical) > 4 * self._max_series:
            self._canonical = {}
        return Aggregator(self._max_series, max_pending=_PENDING_PER_BUFFERED * self._max_buffered,
                          canonical=self._canonical)

    def _flush_slice(self, aggregator: Aggregator) -> int:
        """Fold one slice (max_batch_records groups) of ``aggregator``'s pending groups into its series; how
        many of their records were dropped (invalid, rejected, or all it held after a bug)."""
        try:
            invalid, rejected = aggregator.flush(self._max_batch)
        except Exception:
            self._report_bug()
            lost = self._series_held if aggregator is self._aggregator else self._closed[0][4]
            aggregator.clear()
            self._drop_held(internal_error=lost)
            return lost
        if invalid or rejected:
            self._drop_held(invalid=invalid, cardinality=rejected)
        return invalid + rejected

    def _close_interval(self, *, trim: bool = True) -> None:
        """End this interval: its aggregator (series and pending groups) waits in ``_closed``, its groups
        folded and its series encoded a batch at a time when one is due; the next interval starts empty.
        ``trim``: keep the backlog bound (not at shutdown, where what is left is sent or counted anyway)."""
        closing = self._aggregator
        self._aggregator = self._new_aggregator()
        start, end = self._interval_start, _time()
        self._interval_start = end
        if not closing.series and not closing.groups:
            return
        self._closed.append([closing, 0, start, end, self._series_held])
        self._series_held = 0
        if not trim:
            return
        # The gateway is down: keep the newest, at most _MAX_CLOSED_INTERVALS intervals and max_series series
        # (so the aggregates in memory are at most twice one full interval's).
        while len(self._closed) > 1 and (len(self._closed) > _MAX_CLOSED_INTERVALS
                                         or sum(map(_series_waiting, self._closed)) > self._max_series):
            self._drop_interval(self._closed.popleft(), "buffer_full")

    def _drop_interval(self, entry: list, reason: str) -> None:
        self._drop_held(**{reason: entry[4]})
        entry[4] = 0

    def _next_agg_batch(self) -> _Batch | None:
        """The next batch of aggregate records (at most ``max_batch_records`` series), or None."""
        while self._closed:
            entry = self._closed[0]
            if entry[0].__class__ is Aggregator:  # its groups folded first, a slice at a time, with the
                closing = entry[0]                 # new interval's records folded in between
                while closing.groups:
                    entry[4] -= self._flush_slice(closing)
                    if closing.groups:
                        self._fold(self._fold_chunk)
                entry[0] = list(closing.series.items())
                if not entry[0]:
                    self._closed.popleft()
                    continue
            items, position, start, end = entry[0], entry[1], entry[2], entry[3]
            chunk = dict(items[position : position + self._max_batch])
            entry[1] = position + len(chunk)
            if entry[1] >= len(items):
                self._closed.popleft()
            try:
                if len(self._attribute_json) > 2 * self._max_series:
                    self._attribute_json.clear()
                encoded = encode_aggregates(chunk, start, end, _new_batch_id, self._max_batch,
                                            attribute_json=self._attribute_json)
            except Exception:
                self._report_bug()
                n = sum(folded_records(state) for state in chunk.values())
                entry[4] -= n
                self._drop_held(internal_error=n)
                continue
            batch = None
            for body, records, batch_id, oversized, invalid in encoded:
                entry[4] -= records + oversized + invalid
                if oversized or invalid:
                    self._drop_held(oversized=oversized, invalid=invalid)
                if records:
                    batch = _Batch(compress(body) if self._compress else body, records, batch_id)
            if batch is not None:
                return batch
        return None

    def _send_ready(self, flush_due: bool) -> None:
        self._fold(1 if flush_due else self._fold_chunk)
        if flush_due:
            self._close_interval()
        for round_ in range(_MAX_BATCHES_PER_ROUND):
            self._follow_flags()  # a switch-off read meanwhile stops the backlog before the next request
            if self._closing or self._state != SENDING:
                return
            if round_:
                self._fold(self._fold_chunk)  # between requests too: a run of batches must not let the buffer fill
            ready = self._closed or (self._buffer and (flush_due or len(self._buffer) >= self._max_batch))
            if self._pending is None and not ready:
                return
            # While the breaker is open, new records wait in the buffer (the oldest drop when it is full).
            if self._breaker.seconds_until_allowed() > 0:
                return
            if self._pending is None:
                self._pending = self._next_agg_batch() if self._closed else self._take_batch()
                if self._pending is None:
                    continue
            if not self._breaker.allow():
                return
            self._attempt_safely(self._pending, _monotonic() + self._request_timeout)

    def _take_batch(self) -> _Batch | None:
        buffer = self._buffer
        with self._lock:
            n = min(len(buffer), self._max_batch)
            items = list(map(operator.call, itertools.repeat(buffer.popleft, n)))
            self._taken += n
            self._held += n
        batch_id = _new_batch_id()  # the same on every attempt of this batch
        try:
            # (name, value, timestamp, attributes), the fields taken out of each record in C.
            fields = zip(*(list(map(dict.pop, items, itertools.repeat(key))) for key in (RAW_NAME, RAW_VALUE, TIME)),
                         items, strict=True)
            body, records, invalid, oversized = encode_records(fields, batch_id)
            if records and self._compress:
                body = compress(body)
        except Exception:
            self._report_bug()
            self._drop_held(internal_error=n)
            return None
        if invalid or oversized:
            self._drop_held(invalid=invalid, oversized=oversized)
        if not records:
            return None
        return _Batch(body, records, batch_id)

    def _attempt_safely(self, batch: _Batch, deadline: float) -> None:
        try:
            self._attempt(batch, deadline)
        except Exception:
            self._report_bug()
            if self._pending is batch:
                self._finish(batch, "internal_error")

    def _report_bug(self) -> None:
        if not self._bug_reported:
            self._bug_reported = True
            logger.exception("telemetry-shunt client: internal error, batch dropped (reported once)")

    def _attempt(self, batch: _Batch, deadline: float) -> None:
        batch.attempts += 1
        headers = self._signed_headers(batch)
        if headers is None:
            return
        self._requests += 1
        try:
            response = self._connection.request("POST", METRICS_PATH, headers, batch.body, deadline)
        except (RequestTimeout, TimeoutError):
            self._failed(batch, "timeout", unanswered=self._connection.body_sent)
            return
        except (OSError, ProtocolError) as exc:
            logger.debug("telemetry-shunt client: request failed: %r", exc)
            self._failed(batch, "connection", unanswered=self._connection.body_sent)
            return
        status = response.status
        if 200 <= status < 300:
            self._breaker.record_success()
            self._finish(batch, None)
        elif status in (429, 503) and "retry-after" in response.headers:
            self._failed_requests += 1
            self._breaker.hold(_retry_after_seconds(response.headers["retry-after"], default=1.0))
            self._retry_or_drop(batch, "throttled")
        elif status == 429:
            self._failed(batch, "throttled")
        elif status >= 500 or status == 408:
            self._failed(batch, "server_error")
        elif 400 <= status < 500:
            self._failed_requests += 1
            self._stop(_rejection_message(self._url, status, response.headers, response.body))
        else:  # 1xx/3xx: the gateway never answers so; treat as a failed attempt
            self._failed(batch, "server_error")

    def _signed_headers(self, batch: _Batch) -> dict[str, str] | None:
        from botocore.exceptions import BotoCoreError

        from telemetry_shunt.client._signing import sign_headers

        if self._credentials is None:
            self._credentials = self._resolve_credentials()
            if self._credentials is None:
                return None
        try:
            frozen = self._credentials.get_frozen_credentials()
        except (BotoCoreError, OSError, ValueError) as exc:
            logger.debug("telemetry-shunt client: credential refresh failed: %r", exc)
            self._failed(batch, "credentials")
            return None
        headers = {"Content-Type": METRICS_CONTENT_TYPE, BATCH_ID_HEADER: batch.batch_id}
        if self._compress:
            headers["Content-Encoding"] = "gzip"
        try:
            return sign_headers(frozen, self._region, self._url, self._endpoint.host_header, headers)
        except Exception as exc:  # e.g. credentials of the wrong shape: retrying will not help
            self._stop(f"telemetry-shunt client stopped: cannot sign requests: {exc!r}. "
                       "Telemetry is dropped until the process restarts.")
            return None

    def _resolve_credentials(self) -> Credentials | None:
        import botocore.session

        try:
            credentials = botocore.session.Session().get_credentials()
        except Exception as exc:  # a broken profile file, an unreachable provider
            self._stop(f"telemetry-shunt client stopped: cannot resolve AWS credentials: {exc}. "
                       "Telemetry is dropped until the process restarts.")
            return None
        if credentials is None:
            self._stop("telemetry-shunt client stopped: no AWS credentials found (environment, profile, "
                       "container or instance role). Telemetry is dropped until the process restarts.")
        return credentials

    def _failed(self, batch: _Batch, reason: str, *, unanswered: bool = False) -> None:
        """A failed attempt. ``unanswered``: the whole body went out but no answer came, so the gateway
        may have stored the batch; at most once, it is dropped as ``unconfirmed`` rather than retried."""
        self._failed_requests += 1
        self._breaker.record_failure()
        if unanswered and self._delivery == AT_MOST_ONCE:
            self._finish(batch, "unconfirmed")
        else:
            self._retry_or_drop(batch, reason)

    def _retry_or_drop(self, batch: _Batch, reason: str) -> None:
        if batch.attempts >= self._max_attempts:
            self._finish(batch, reason)

    def _finish(self, batch: _Batch, drop_reason: str | None) -> None:
        with self._lock:
            self._held -= batch.records
            if drop_reason is None:
                self._sent += batch.records
            else:
                self._worker_drops[drop_reason] += batch.records
        if self._pending is batch:
            self._pending = None

    def _stop(self, message: str) -> None:
        logger.error(message)
        self._error = message
        self._state = STOPPED
        self._sink = self._rejecting_sink("config_error")
        self._drain("config_error")
        self._connection.close()

    def _drain(self, reason: str) -> None:
        """Count everything buffered or in hand (aggregates too) as dropped for ``reason``."""
        with self._lock:
            for buffer in (self._buffer, self._agg_buffer):
                n = len(buffer)
                for _ in range(n):
                    buffer.popleft()
                self._taken += n
                self._worker_drops[reason] += n
            if self._pending is not None:
                self._held -= self._pending.records
                self._worker_drops[reason] += self._pending.records
                self._pending = None
            for entry in self._closed:
                self._held -= entry[4]
                self._worker_drops[reason] += entry[4]
            self._closed.clear()
            self._held -= self._series_held
            self._worker_drops[reason] += self._series_held
            self._series_held = 0
            self._aggregator.clear()

    def _shutdown(self) -> None:
        # Leave time for the joining thread to see us finish inside its bound.
        budget = self._close_deadline - _monotonic()
        deadline = self._close_deadline - min(0.05, 0.1 * max(budget, 0.0))
        if self._state == SENDING:
            self._fold()
            # The interval still being sent (a busy worker, not a gateway down) must not be dropped for this one.
            self._close_interval(trim=False)
            batches = (self._max_buffered // self._max_batch
                       + sum(_series_waiting(e) // self._max_batch + 1 for e in self._closed))
            for _ in range(batches + 2):
                if _monotonic() >= deadline or self._breaker.seconds_until_allowed() > 0:
                    break
                if self._pending is None:
                    if self._closed:
                        self._pending = self._next_agg_batch()
                    elif not self._buffer:
                        break
                    else:
                        self._pending = self._take_batch()
                    if self._pending is None:
                        continue
                if not self._breaker.allow():
                    break
                self._attempt_safely(self._pending, min(deadline, _monotonic() + self._request_timeout))
                if self._state != SENDING:
                    break
        self._drain("shutdown")
        self._state = CLOSED
        self._connection.close()
        if self._poller is not None:
            self._poller.stop()


class _Batch:
    __slots__ = ("body", "records", "batch_id", "attempts")

    def __init__(self, body: bytes, records: int, batch_id: str) -> None:
        self.body = body
        self.records = records
        self.batch_id = batch_id
        self.attempts = 0


def _new_batch_id() -> str:
    return os.urandom(16).hex()


def _peek(counter: itertools.count) -> int:
    """The next value of an ``itertools.count`` without advancing it (its repr is ``count(N)``)."""
    return int(repr(counter)[6:-1])


def _retry_after_seconds(value: str, *, default: float) -> float:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date; ``default`` if unreadable."""
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return default
    if when is None or when.tzinfo is None:
        return default
    return max(0.0, when.timestamp() - _time())


def _rejection_message(url: str, status: int, headers: Mapping[str, str], body: bytes) -> str:
    text = body[:300].decode("utf-8", "replace").strip()
    lowered = text.lower()
    skew = None
    if "date" in headers:
        try:
            skew = _time() - email.utils.parsedate_to_datetime(headers["date"]).timestamp()
        except (TypeError, ValueError):
            skew = None
    if "expiredtoken" in lowered or "token has expired" in lowered or "credentials have expired" in lowered:
        hint = "The credentials have expired: refresh them or use a provider that does."
    elif skew is not None and abs(skew) > 240:
        hint = (f"The host clock is {skew:+.0f} s off the gateway's; SigV4 allows 5 minutes: fix the "
                "host's time sync.")
    elif "signature expired" in lowered or "skew" in lowered:
        hint = "The signature's time is outside the allowed window: fix the host's time sync."
    elif status in (401, 403):
        hint = ("Access denied: the caller's IAM policy, the service network's and the service's auth "
                "policies must all allow vpc-lattice-svcs:Invoke on POST /metrics for this role.")
    elif status == 404:
        hint = "The gateway has no route for POST /metrics: check the endpoint and the listener rules."
    else:
        hint = "The gateway refuses these requests; retrying unchanged requests cannot succeed."
    shown = f" {text!r}" if text else ""
    return (f"telemetry-shunt client stopped sending to {url}: HTTP {status}{shown}. {hint} "
            "Telemetry is dropped until the process restarts.")


# --- process-wide hooks: interpreter exit and fork ----------------------------------------------------

_live_clients: weakref.WeakSet[TelemetryClient] = weakref.WeakSet()


def _close_all_at_exit() -> None:
    clients = list(_live_clients)
    deadlines = [(client, _monotonic() + client._exit_timeout) for client in clients]
    for client, deadline in deadlines:
        client._begin_close(deadline)
    for client, deadline in deadlines:
        client._finish_close(deadline)


def _after_fork_in_child() -> None:
    for client in list(_live_clients):
        client._after_fork_in_child()


atexit.register(_close_all_at_exit)
os.register_at_fork(after_in_child=_after_fork_in_child)
