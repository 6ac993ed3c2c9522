"""The one invocation path: how a route method runs, for client messages and forwarded ones.

Every message a handler method serves goes through :meth:`Invoker.invoke`, whether a session
actor hands it over (standalone, or the frontend's own routes) or the RPC bridge does (a
request forwarded by a frontend, a user RPC). It does, in one place: the notify-only rule,
decoding, the pipeline, the tracing span, the process-delay metric, error mapping, the count
of requests in flight (a graceful stop waits for it) and the server-wide limit on invocations
running at once.

Concurrency, the contract users build on (see the README's "Concurrency model"):

* A synchronous method runs inline and answers before ``invoke`` returns: it costs no task
  and no actor hop, and nothing can interleave with it.
* An ``async`` method (or any method when pipeline hooks are registered) runs as its own
  task: while it awaits a database or an RPC, other sessions' messages are served. Nothing
  here orders one session's messages; the caller does: the session actor hands over a
  client's next message only once the previous one finished, and the bridge runs the
  messages of one forwarded session through a :class:`Sequencer`.
* At most ``limit`` invocations run as tasks at once (``max_concurrent_handlers``); past it
  a request to an async method is answered ``PIT-429`` at once (a notify is dropped), so
  slow handlers cannot pile up memory without bound. Synchronous methods never wait, so
  they are served even then.

State that needs one-at-a-time changes (a room, a match) belongs in an actor of its own that
handlers ``ask``; see ``samples/chat/room.py``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from actors.errors import BadRequest, InternalError, PitayaError, TooManyRequests, detached
from actors.metrics.names import DELAY_LOCAL, PROCESS_DELAY
from actors.payload import encode_result
from actors.propagation import current as current_propagated
from actors.propagation import restore as restore_propagated
from actors.session import SessionClosed
from actors.tracing import run_in_span
from transport.logs import ServerLog, Throttle
from transport.serializers import Serializer

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from actors.handler import Handler, MethodSpec
    from actors.kernel import ActorRef, Reply
    from actors.metrics.reporter import Metrics
    from actors.pipeline import Pipeline
    from actors.session import Session
    from actors.tally import Tally

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LocalRoute:
    """A route served in this process: the handler (an actor) and its method. ``name``: the
    route as this server names it, ``service.method`` (a remote's: with the server type),
    whichever of its spellings a client sent."""

    handler: Handler
    spec: MethodSpec
    name: str

    @property
    def ref(self) -> ActorRef:
        """The handler actor's address (to tell it messages of your own)."""
        return self.handler.ref


class Invoker:
    """Runs route methods for one server; see the module docstring.

    It gets what it uses: the server's serializer, pipeline, metrics, the in-flight tally a
    graceful stop waits on, and the limit of invocations running at once.
    """

    __slots__ = (
        "_loop",
        "_tasks",
        "failures",
        "ignore_unknown_fields",
        "in_flight",
        "limit",
        "log",
        "metrics",
        "pipeline",
        "running",
        "serializer",
    )

    def __init__(
        self,
        serializer: Serializer,
        pipeline: Pipeline,
        metrics: Metrics,
        in_flight: Tally,
        limit: int,
        server_id: str = "",
        ignore_unknown_fields: bool = False,
    ) -> None:
        self.log = ServerLog(log, server_id)
        self.failures = FailureLog(self.log)
        """Where a handler's failure is logged (with the server's id)."""
        self.serializer = serializer
        self.pipeline = pipeline
        self.metrics = metrics
        self.in_flight = in_flight
        self.limit = limit
        self.ignore_unknown_fields = ignore_unknown_fields
        """A dataclass body's keys that are no field are dropped, not refused with
        ``PIT-400`` (``unknown_body_fields="ignore"``)."""
        self.running = 0
        """Invocations whose method is still running (awaiting something)."""
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        """The loop tasks are started on, known from the first one on: a server serves on
        one loop, and ``asyncio.get_running_loop`` makes a system call each time (it checks
        the process id, in case of a fork)."""

    def invoke(
        self,
        route: LocalRoute,
        name: str,
        session: Session | None,
        data: bytes,
        notify: bool,
        done: Reply,
        *,
        serializer: Serializer | None = None,
        received_ns: int = 0,
        span: Span | None = None,
        delay_type: str = DELAY_LOCAL,
        hook_route: str | None = None,
    ) -> None:
        """Run ``route``'s method for one message; ``done(payload, error)`` is called once.

        ``payload`` is the encoded answer (None for a notify); ``error`` a
        :class:`PitayaError` the caller answers with. A synchronous method calls ``done``
        before this returns. ``serializer`` overrides the server's (user RPCs);
        ``received_ns`` (``time.monotonic_ns()`` at arrival, 0 when metrics are off) feeds the
        process-delay metric, whose ``type`` is ``delay_type`` (``DELAY_REMOTE`` for a message
        that came by RPC); ``span`` is made current while the method runs. The pipeline's
        hooks see ``hook_route`` (a client's message: :attr:`LocalRoute.name`, however the
        client spelled it), ``name`` when None; series and logs ``name``.
        """
        if received_ns:
            self.metrics.report_summary(
                PROCESS_DELAY,
                {"route": name, "type": delay_type},
                time.monotonic_ns() - received_ns,
            )
        spec = route.spec
        if spec.notify_only and not notify:
            done(
                None,
                BadRequest(
                    f"route {name} is notify-only: send a notify, not a request", {"route": name}
                ),
            )
            return
        codec = serializer or self.serializer
        try:
            args: tuple[Any, ...] = ()
            if spec.takes_body:
                decode = spec.decode_ignoring_unknown if self.ignore_unknown_fields else spec.decode
                args = (decode(data, codec),)
        except PitayaError as exc:
            done(None, detached(exc))
            return
        except Exception as exc:
            done(None, _internal(self.failures, name, exc, session))
            return
        if self.pipeline.active or spec.is_async:
            if self.running >= self.limit:
                done(None, TooManyRequests("too many handlers running on this server"))
                return
            if self.pipeline.active:
                call = _run_async(
                    self.pipeline,
                    route.handler,
                    spec,
                    hook_route or name,
                    session,
                    args,
                    self.failures,
                )
            else:  # the method's own coroutine: one frame less on every resume
                call = getattr(route.handler, spec.attribute)(session, *args)
            if span is not None:
                call = run_in_span(span, lambda: call)
            self._start(call, name, session, notify, codec, done)
            return
        # Synchronous: it runs to its end right here, so no in-flight count is needed (a
        # graceful stop cannot look in between). It runs in its caller's context (an actor's
        # turn: the kernel's, shared by every turn), so what it propagated ends with it.
        propagated = current_propagated()
        try:
            if span is None:
                result = getattr(route.handler, spec.attribute)(session, *args)
            else:
                result = run_in_span(span, getattr(route.handler, spec.attribute), session, *args)
        except Exception as exc:
            restore_propagated(propagated)
            _answer_error(self.failures, done, name, exc, session)
            return
        if current_propagated() is not propagated:  # it added some: they end with it
            restore_propagated(propagated)
        _answer(self.failures, done, name, notify, result, codec, session)

    def _start(
        self,
        call: Any,
        name: str,
        session: Session | None,
        notify: bool,
        codec: Serializer,
        done: Reply,
    ) -> None:
        self.running += 1
        self.in_flight.up()
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        task = loop.create_task(call)
        self._tasks.add(task)

        def finished(task: asyncio.Task[Any]) -> None:
            self._tasks.discard(task)
            self.running -= 1
            self.in_flight.down()
            if task.cancelled():
                done(None, InternalError("handler cancelled (server stopping)"))
                return
            error = task.exception()
            if error is not None:
                _answer_error(self.failures, done, name, error, session)
            else:
                _answer(self.failures, done, name, notify, task.result(), codec, session)

        task.add_done_callback(finished)

    def cancel(self) -> None:
        """Cancel the invocations still running (a stop that waited long enough)."""
        for task in list(self._tasks):
            task.cancel()


async def _run_async(
    pipeline: Pipeline,
    target: Handler,
    spec: MethodSpec,
    name: str,
    session: Session | None,
    args: tuple[Any, ...],
    failures: FailureLog,
) -> Any:
    """A method (sync or async) wrapped by the pipeline's before and after hooks."""
    result: Any = None
    error: PitayaError | None = None
    try:
        body = await pipeline.run_before(session, name, args[0] if args else None)  # type: ignore[arg-type]
        if args:
            args = (body,)
        value = getattr(target, spec.attribute)(session, *args)
        if inspect.isawaitable(value):
            value = await value
        result = value  # only once it is a value: a failed method has no result
    except PitayaError as exc:
        error = exc
    except Exception as exc:
        error = _internal(failures, name, exc, session)
    result, error = await pipeline.run_after(session, name, result, error)  # type: ignore[arg-type]
    if error is not None:
        raise error
    return result


def _answer(
    failures: FailureLog,
    done: Reply,
    name: str,
    notify: bool,
    result: Any,
    serializer: Serializer,
    session: Session | None,
) -> None:
    """``done`` with the encoded result (None for a notify), or with the encoding's error."""
    if notify:
        done(None, None)
        return
    if result is None:
        # Pitaya's rule: a request must be answered with something. The client's error does
        # not say which code forgot to; this line does (as a failing handler's does).
        failures.null_reply(name)
        done(None, PitayaError("PIT-000", "reply must not be null", {"route": name}))
        return
    try:
        payload = encode_result(result, serializer)
    except Exception as exc:
        _answer_error(failures, done, name, exc, session)
        return
    done(payload, None)


def _answer_error(
    failures: FailureLog, done: Reply, name: str, error: BaseException, session: Session | None
) -> None:
    """``done`` with ``error`` as the caller sees it: a PitayaError as it is (but
    :func:`~actors.errors.detached`: the answer is all the client gets), anything else
    logged and answered ``PIT-500``."""
    if isinstance(error, PitayaError):
        done(None, detached(error))
    else:
        done(None, _internal(failures, name, error, session))


def _internal(
    failures: FailureLog, route: str, exc: BaseException, session: Session | None
) -> InternalError:
    if isinstance(exc, SessionClosed):
        # The client left while its handler awaited (a bind, say): nobody to answer, and
        # no fault of the code's.
        failures.stopped(route, exc)
    else:
        failures.failed(route, exc, session)
    error = InternalError(str(exc) or type(exc).__name__)
    error.metadata["route"] = route
    return error


class FailureLog:
    """Where a handler's exception is told: with its traceback, the session and its uid; for
    one route and kind of exception at most once per 10 s at error, the next such line saying
    how many were not (a handler failing on every request wrote a traceback per request),
    and each one at debug, without the traceback."""

    __slots__ = ("_kinds", "log")

    MAX_KINDS = 4096
    """(route, exception class; None: a null reply) pairs followed at once: a bound, not a
    limit."""

    def __init__(self, log: ServerLog) -> None:
        self.log = log
        self._kinds: dict[tuple[str, type | None], Throttle] = {}

    def _throttle(self, route: str, kind: type | None) -> Throttle:
        key = (route, kind)
        throttle = self._kinds.get(key)
        if throttle is None:
            if len(self._kinds) >= self.MAX_KINDS:
                self._kinds.clear()
            throttle = self._kinds[key] = Throttle()
        return throttle

    def null_reply(self, route: str) -> None:
        """A handler returned None to a request (answered ``PIT-000``): at warning, for one
        route at most once per 10 s (a client chooses the body that makes it: ``echo.echo``
        given ``null``, each request a line otherwise)."""
        self._throttle(route, None).log(
            time.monotonic(),
            self.log,
            logging.WARNING,
            "handler %s returned None to a request: answered PIT-000 'reply must not be "
            "null' (return a value, or annotate it -> None to make the route notify-only)",
            route,
        )

    def stopped(self, route: str, exc: SessionClosed) -> None:
        """A handler stopped because its client left: at info, the same way (a client may
        leave in the middle of every request it sends)."""
        self._throttle(route, SessionClosed).log(
            time.monotonic(), self.log, logging.INFO, "handler %s stopped: %s", route, exc
        )

    def failed(self, route: str, exc: BaseException, session: Session | None) -> None:
        more = self._throttle(route, type(exc)).allow(time.monotonic())
        log = self.log if session is None else self.log.session(session.id)
        who = "" if session is None else f" (session {session.id}, uid {session.uid})"
        if more is None:
            log.debug("handler %s failed%s: %r", route, who, exc)
        else:
            log.error("handler %s failed%s%s", route, who, more, exc_info=exc)


Job = Callable[[Callable[[], None]], None]
"""Work for a :class:`Sequencer`: called with ``finish``, which it calls once when done."""


class _Lane:
    __slots__ = ("alone", "busy", "jobs", "pumping")

    def __init__(self) -> None:
        self.alone: Job | None = None
        """The job that ran alone when this lane was made, until it finishes."""
        self.jobs: deque[Job] = deque()
        self.busy = False
        self.pumping = False


class Sequencer:
    """One job at a time per key, in submission order; different keys run concurrently.

    The RPC bridge keys forwarded messages by (frontend, session): a frontend pipelines one
    session's messages to a backend, and this keeps them handled in the order sent. A lane
    exists only while it has work, so memory follows the sessions currently busy.
    """

    __slots__ = ("_lanes",)

    def __init__(self) -> None:
        self._lanes: dict[Hashable, _Lane | Job] = {}
        """A key's lane, or the one job of the key running with nothing behind it."""

    def __len__(self) -> int:
        return len(self._lanes)

    def __contains__(self, key: Hashable) -> bool:
        """Whether a job of ``key`` runs or waits."""
        return key in self._lanes

    def submit(self, key: Hashable, job: Job) -> None:
        lanes = self._lanes
        lane = lanes.get(key)
        if lane is None:
            # Nothing of this key runs or waits: the job runs now, with no lane unless
            # another job of its key comes while it runs (most jobs end before ``submit``
            # returns). The job itself marks its key busy meanwhile.
            lanes[key] = job
            job(partial(self._alone_finished, key, job))
            return
        if not isinstance(lane, _Lane):
            running = lane
            lane = lanes[key] = _Lane()
            lane.busy = True
            lane.alone = running
        lane.jobs.append(job)
        self._pump(key, lane)

    def _alone_finished(self, key: Hashable, job: Job) -> None:
        lane = self._lanes.get(key)
        if lane is job:
            del self._lanes[key]
        elif isinstance(lane, _Lane) and lane.alone is job:
            lane.alone = None  # finished once: a second finish is ignored
            self._finished(key, lane)  # jobs came meanwhile: their lane goes on

    def _pump(self, key: Hashable, lane: _Lane) -> None:
        if lane.pumping:
            return  # a job finished synchronously inside the loop below: it goes on
        lane.pumping = True
        try:
            while lane.jobs and not lane.busy:
                job = lane.jobs.popleft()
                lane.busy = True
                job(lambda: self._finished(key, lane))
        finally:
            lane.pumping = False
        if not lane.busy and not lane.jobs and self._lanes.get(key) is lane:
            del self._lanes[key]

    def _finished(self, key: Hashable, lane: _Lane) -> None:
        if not lane.busy:
            return  # finish called twice: ignore
        lane.busy = False
        self._pump(key, lane)
