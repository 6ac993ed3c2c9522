"""Mutation testing of the core, one module at a time (mutmut 3; not run by CI: too slow).

Each module is mutated against the small, fast test files that cover it, never the whole
suite. For every module the script lays a fresh copy of ``actors/``, ``transport/``,
``tests/``, ``samples/`` and ``pyproject.toml`` in ``.mutation/<name>/`` (git-ignored), writes a
``setup.cfg`` with a ``[mutmut]`` section that mutates only that module, runs
``mutmut run`` there under ``nice -n 19``, and prints a score per module::

    pip install -e '.[dev,mutation]'
    python tests/mutation/run.py                      # every module in MODULES
    python tests/mutation/run.py packet kernel        # some of them (names below)
    python tests/mutation/run.py ratelimit --diff     # and the diff of each survivor
    python tests/mutation/run.py --list               # the modules and their tests
    python tests/mutation/run.py --rev HEAD           # a commit, not the work tree

The score is ``(killed + timeout) / (mutants - skipped)``. Survivors judged equivalent are
listed, with the reason, in ``tests/mutation/equivalent.toml``; they are still reported as
survivors (a mutant name can move when its function changes: re-check them then), and the
table gives a second score that leaves them out. mutmut mutates function bodies only, not
module-level constants or class attributes; and it imports the tests before it picks a
mutant, so a function that only runs at import (a factory building a module-level table)
has survivors no test can kill here: apply them by hand (below) and list those the tests
catch in ``equivalent.toml``, saying so.

To look at one survivor afterwards: ``cd .mutation/<name> && mutmut show <mutant>``, or
``mutmut apply <mutant>`` there to try it in the copy.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / ".mutation"
EQUIVALENT = Path(__file__).with_name("equivalent.toml")


@dataclass(frozen=True)
class Module:
    """One module to mutate and the test files (or node ids) that run against its mutants."""

    source: str
    tests: tuple[str, ...]


MODULES: dict[str, Module] = {
    "packet": Module("transport/packet.py", ("tests/transport/test_packet.py",)),
    "message": Module("transport/message.py", ("tests/transport/test_message.py",)),
    "handshake": Module("transport/handshake.py", ("tests/transport/test_handshake.py",)),
    "proxyheader": Module("transport/proxyheader.py", ("tests/transport/test_proxyheader.py",)),
    "connection": Module(
        "transport/connection.py",
        ("tests/transport/test_connection.py", "tests/transport/test_memory.py"),
    ),
    "kernel": Module("actors/kernel.py", ("tests/actors/test_kernel.py",)),
    "dispatch": Module(
        "actors/dispatch.py", ("tests/actors/test_dispatch.py", "tests/actors/test_kernel.py")
    ),
    "session_actor": Module(
        "actors/sessions/actor.py",
        (
            "tests/actors/sessions/test_actor.py",
            "tests/actors/test_session.py",
            "tests/actors/sessions/test_timing.py",
            "tests/actors/test_concurrency.py",
            "tests/actors/test_error_codes.py",
            "tests/actors/test_testing.py",
            "tests/reliability/test_limits.py",
            "tests/actors/cluster/test_in_memory_cluster.py",
        ),
    ),
    "invocation": Module(
        "actors/invocation.py",
        (
            "tests/actors/test_invocation.py",
            "tests/actors/test_concurrency.py",
            "tests/actors/test_error_codes.py",
            "tests/actors/test_testing.py",
            "tests/actors/test_session.py",
        ),
    ),
    "groups": Module("actors/groups.py", ("tests/actors/test_groups.py",)),
    "ratelimit": Module(
        "actors/ratelimit.py",
        ("tests/actors/test_ratelimit.py", "tests/reliability/test_limits.py"),
    ),
    # The pure parts (ServerInfo, the table, the actor's handlers) have unit tests; the etcd
    # lease and watch loops only run against a real etcd (tests/cluster/test_discovery_rpc.py,
    # about 20 s a run): add ``--with-etcd`` to mutate against it too.
    "discovery": Module(
        "actors/cluster/discovery.py",
        ("tests/actors/cluster/test_discovery.py", "tests/actors/cluster/test_router.py"),
    ),
    # Modules whose own mirrored test file is the whole suite mutated against.
    "actor": Module("actors/actor.py", ("tests/actors/test_actor.py",)),
    "system": Module("actors/system.py", ("tests/actors/test_system.py",)),
    "errors": Module("actors/errors.py", ("tests/actors/test_errors.py",)),
    "payload": Module(
        "actors/payload.py",
        ("tests/actors/test_payload.py", "tests/actors/test_payload_errors.py"),
    ),
    "pipeline": Module("actors/pipeline.py", ("tests/actors/test_pipeline.py",)),
    "handler": Module("actors/handler.py", ("tests/actors/test_handler.py",)),
    "docs": Module("actors/docs.py", ("tests/actors/test_docs.py",)),
    "gateway": Module("actors/gateway.py", ("tests/actors/test_gateway.py",)),
    "sessions": Module("actors/sessions/registry.py", ("tests/actors/sessions/test_registry.py",)),
    "tally": Module("actors/tally.py", ("tests/actors/test_tally.py",)),
    "draining": Module("actors/draining.py", ("tests/actors/test_draining.py",)),
    "metrics_rpc": Module("actors/metrics/rpc.py", ("tests/actors/metrics/test_rpc.py",)),
    "modules_base": Module("actors/modules/base.py", ("tests/actors/modules/test_base.py",)),
    "unique_session": Module(
        "actors/modules/unique_session.py", ("tests/actors/modules/test_unique_session.py",)
    ),
    "binding_storage": Module(
        "actors/modules/binding_storage.py", ("tests/actors/modules/test_binding_storage.py",)
    ),
    "orphans": Module("actors/launch/orphans.py", ("tests/launch/test_orphans.py",)),
    "goduration": Module("transport/goduration.py", ("tests/transport/test_goduration.py",)),
    "pitaya_env": Module("actors/pitaya_env.py", ("tests/actors/test_pitaya_env.py",)),
    # Real loopback sockets, a few seconds a run (three tests wait out a 1 s budget).
    "proxygate": Module(
        "transport/proxygate.py",
        ("tests/transport/test_proxygate.py", "tests/actors/test_proxy_protocol.py"),
    ),
    "jobs": Module(
        "actors/cluster/jobs.py",
        ("tests/actors/cluster/test_jobs.py", "tests/actors/cluster/test_worker.py"),
    ),
    "gojson": Module(
        "actors/cluster/gojson.py",
        ("tests/actors/cluster/test_gojson.py", "tests/actors/cluster/test_jobs.py"),
    ),
    # The store's contract runs on the fake and on a real redis-server: only the fake's half.
    "jobstore_memory": Module(
        "transport/jobstore_memory.py",
        (
            *(
                f"tests/transport/test_jobstore.py::{test}[memory]"
                for test in (
                    "test_jobs_come_out_oldest_first_through_the_in_progress_list",
                    "test_a_retry_is_scheduled_and_the_job_acknowledged_in_one_step",
                    "test_a_job_that_cannot_run_goes_to_the_dead_set",
                    "test_counters_are_go_workers_stats",
                    "test_a_new_store_has_zero_counters_and_empty_queues",
                    "test_a_push_names_its_queue_in_the_set_of_queues",
                    "test_acknowledging_removes_the_copy_nearest_the_tail_as_lrem_minus_1",
                    "test_due_jobs_go_back_in_the_order_they_fell_due_past_an_unreadable_one",
                    "test_several_due_jobs_are_counted",
                )
            ),
            "tests/transport/test_jobstore.py::test_the_memory_store_stands_alone_says_so_when_down_and_records_close",
            "tests/transport/test_jobstore.py::test_the_memory_store_goes_down_and_wakes_a_blocked_fetch",
            "tests/actors/cluster/test_worker.py",
        ),
    ),
    "undo": Module("transport/undo.py", ("tests/transport/test_undo.py",)),
    # Untrusted bodies: what the decoders accept and refuse, and how much of them.
    "bounded": Module(
        "transport/bounded.py",
        ("tests/transport/test_bounded.py", "tests/transport/test_serializers.py"),
    ),
    "serializers": Module(
        "transport/serializers.py",
        ("tests/transport/test_serializers.py", "tests/transport/test_bounded.py"),
    ),
    "jsonwire": Module(
        "transport/jsonwire.py",
        ("tests/transport/test_jsonwire.py", "tests/transport/test_serializers.py"),
    ),
    "turns": Module("actors/turns.py", ("tests/actors/test_turns.py",)),
    "subjects": Module("actors/cluster/subjects.py", ("tests/actors/cluster/test_subjects.py",)),
    # On the in-memory job store; the real redis-server's tests (test_worker_redis.py) are left out.
    "worker": Module(
        "actors/cluster/worker.py",
        ("tests/actors/cluster/test_worker.py", "tests/actors/cluster/test_worker_app.py"),
    ),
    # The cluster's hot path: the hand-written protobuf of a forwarded request, the replies'
    # inbox, the pushes carried between pipelined messages, the router and the codec.
    "protowire": Module(
        "actors/cluster/protowire.py",
        ("tests/actors/cluster/test_protowire.py", "tests/actors/cluster/test_codec.py"),
    ),
    # Without the nats-server half of its tests.
    "nats_replies": Module(
        "transport/nats_replies.py",
        tuple(
            f"tests/transport/test_nats_replies.py::{test}"
            for test in (
                "test_each_answer_reaches_its_own_request_whatever_the_order",
                "test_a_late_answer_after_the_timeout_is_dropped",
                "test_timeouts_expire_per_value_in_order_with_one_timer_each",
                "test_a_request_made_while_others_expire_gets_its_own_full_timeout",
                "test_an_error_made_for_the_answer_and_fail_all",
                "test_a_failing_answer_function_does_not_stop_the_others",
                "test_no_request_times_out_before_its_own_timeout",
                "test_an_answer_function_may_fail_all_while_its_request_expires",
                "test_reply_subjects_count_requests_in_hex",
                "test_a_cancelled_request_is_never_answered",
                "test_the_timeout_error_is_made_from_what_add_was_told",
                "test_requests_expiring_together_past_a_fail_all_are_told_once",
            )
        ),
    ),
    "carry": Module("actors/cluster/carry.py", ("tests/actors/cluster/test_carry.py",)),
    "held_events": Module(
        "actors/cluster/held_events.py",
        ("tests/actors/cluster/test_held_events.py", "tests/actors/cluster/test_users.py"),
    ),
    "event_queues": Module(
        "actors/cluster/event_queues.py",
        (
            "tests/actors/cluster/test_event_queues.py",
            "tests/actors/cluster/test_held_events.py",
        ),
    ),
    "join_gate": Module(
        "actors/cluster/join_gate.py",
        (
            "tests/actors/cluster/test_join_gate.py",
            "tests/actors/cluster/test_join_held.py",
        ),
    ),
    "served_sessions": Module(
        "actors/cluster/served_sessions.py",
        ("tests/actors/cluster/test_served_sessions.py",),
    ),
    "router": Module(
        "actors/cluster/router.py",
        ("tests/actors/cluster/test_router.py", "tests/actors/cluster/test_router_probation.py"),
    ),
    "codec": Module(
        "actors/cluster/codec.py",
        (
            "tests/actors/cluster/test_codec.py",
            "tests/actors/cluster/test_protowire.py",
            "tests/actors/cluster/test_handshakes.py",
            "tests/actors/cluster/test_outbound.py",
        ),
    ),
    # Real loopback sockets with websockets' client as the peer; about a second a run.
    "websocket": Module(
        "transport/websocket.py",
        (
            "tests/transport/test_websocket.py",
            "tests/transport/test_websocket_frames.py",
            "tests/transport/test_websocket_http.py",
        ),
    ),
    "errorbody": Module("transport/errorbody.py", ("tests/transport/test_errorbody.py",)),
    "partial": Module("transport/partial.py", ("tests/transport/test_partial.py",)),
}
ETCD_TESTS = ("tests/cluster/test_discovery_rpc.py",)

# Copied into each work directory; the rest of the repository is not needed to run the tests.
COPY = ("actors", "transport", "tests", "samples", "pyproject.toml")
IGNORE = shutil.ignore_patterns("__pycache__", ".hypothesis", "*.pyc", "mutation")

# Loaded into pytest in the copy: hypothesis runs derandomized and without deadlines, so
# that a survivor is reproducible and a slow machine does not kill a mutant by a deadline.
# Dispatch tables are cached per actor class for the life of the process, and mutmut runs
# every mutant in a process forked after the test modules (and their actor classes) were
# imported: without clearing the cache before each test, a mutant of actors/dispatch.py
# would never run.
PROFILE_PLUGIN = """\
import pytest
from hypothesis import settings

settings.register_profile("mutation", deadline=None, derandomize=True)
settings.load_profile("mutation")


@pytest.fixture(autouse=True)
def _fresh_dispatch_tables():
    from actors import dispatch

    dispatch._tables.clear()
    yield
"""

RESULT_LINE = re.compile(r"^\s+(\S+): (.+)$")


class RunFailed(Exception):
    """mutmut stopped (a failing test, or no test reaching the module): no score."""


@dataclass
class Score:
    """The outcome of one module's run."""

    name: str
    stats: dict[str, int]
    survivors: list[str] = field(default_factory=list)
    equivalent: list[str] = field(default_factory=list)

    @property
    def counted(self) -> int:
        return self.stats["total"] - self.stats["skipped"]

    @property
    def caught(self) -> int:
        return self.stats["killed"] + self.stats["timeout"] + self.stats["segfault"]

    def percent(self, leave_out: int = 0) -> float:
        total = self.counted - leave_out
        return 100.0 * self.caught / total if total else 100.0


def load_equivalent() -> dict[str, str]:
    """Mutant name -> why it is equivalent (or why it is not worth a test)."""
    if not EQUIVALENT.exists():
        return {}
    data = tomllib.loads(EQUIVALENT.read_text("utf-8"))
    return {name: entry["reason"] for name, entry in data.items()}


def snapshot(rev: str) -> Path:
    """The files of commit ``rev`` (``git archive``), in ``.mutation/_tree``.

    The working tree may hold other people's half-done edits; a commit is what the numbers
    in tests/README.md are measured on.
    """
    tree = WORK / "_tree"
    if tree.exists():
        shutil.rmtree(tree)
    tree.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", rev], cwd=ROOT, capture_output=True, check=True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(tree, filter="data")
    return tree


def prepare(name: str, module: Module, tests: tuple[str, ...], source: Path) -> Path:
    """Lay a fresh copy of ``source`` in the module's work directory and configure mutmut."""
    work = WORK / name
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    for item in COPY:
        src = source / item
        if src.is_dir():
            shutil.copytree(src, work / item, ignore=IGNORE)
        else:
            shutil.copy2(src, work / item)
    (work / "mutation_profile.py").write_text(PROFILE_PLUGIN, "utf-8")
    existing = [t for t in tests if (source / t.split("::")[0]).exists()]
    lines = [
        "[mutmut]",
        "source_paths =\n    actors\n    transport",
        f"only_mutate = {module.source}",
        "pytest_add_cli_args_test_selection =\n" + "\n".join(f"    {t}" for t in existing),
        # A known bug's xfail test proves nothing about a mutant, and may wait for a timeout.
        "pytest_add_cli_args =\n    -p\n    mutation_profile\n    -m\n    not xfail",
        "also_copy =\n    samples\n    mutation_profile.py",
        "use_git_change_detection = false",
    ]
    (work / "setup.cfg").write_text("\n".join(lines) + "\n", "utf-8")
    return work


def run_module(name: str, module: Module, tests: tuple[str, ...], jobs: int, source: Path) -> Score:
    """Run mutmut on one module and collect its counts and survivors."""
    work = prepare(name, module, tests, source)
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    mutmut = [sys.executable, "-m", "mutmut"]
    with open(work / "mutmut.log", "w", encoding="utf-8") as log:
        code = subprocess.call(
            ["nice", "-n", "19", *mutmut, "run", "--max-children", str(jobs)],
            cwd=work,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    if code != 0:
        raise RunFailed(f"{name}: mutmut run failed ({code}); see {work / 'mutmut.log'}")
    subprocess.run([*mutmut, "export-cicd-stats"], cwd=work, env=env, capture_output=True)
    stats = json.loads((work / "mutants" / "mutmut-cicd-stats.json").read_text("utf-8"))
    listing = subprocess.run(
        [*mutmut, "results"], cwd=work, env=env, capture_output=True, text=True, check=True
    ).stdout
    survivors = []
    for line in listing.splitlines():
        match = RESULT_LINE.match(line)
        if match and match.group(2) in ("survived", "no tests", "suspicious"):
            survivors.append(match.group(1))
    return Score(name, stats, survivors)


def show(name: str, mutant: str) -> str:
    """The diff of one mutant, as ``mutmut show`` prints it."""
    return subprocess.run(
        [sys.executable, "-m", "mutmut", "show", mutant],
        cwd=WORK / name,
        capture_output=True,
        text=True,
    ).stdout


def report(scores: list[Score], equivalent: dict[str, str], diff: bool) -> None:
    for score in scores:
        if not score.survivors:
            continue
        print(f"\n{score.name}: {len(score.survivors)} survivor(s)")
        for mutant in score.survivors:
            reason = equivalent.get(mutant)
            print(f"  {mutant}" + (f"  [equivalent: {reason}]" if reason else ""))
            if diff:
                print("    " + show(score.name, mutant).replace("\n", "\n    ").rstrip())
    print(
        f"\n{'module':<15}{'mutants':>8}{'killed':>8}{'timeout':>8}{'survived':>9}"
        f"{'score':>8}{'equiv.':>7}{'w/o equiv.':>11}"
    )
    for s in scores:
        equivalents = [m for m in s.survivors if m in equivalent]
        print(
            f"{s.name:<15}{s.counted:>8}{s.stats['killed']:>8}{s.stats['timeout']:>8}"
            f"{len(s.survivors):>9}{s.percent():>7.1f}%{len(equivalents):>7}"
            f"{s.percent(len(equivalents)):>10.1f}%"
        )
    stale = set(equivalent) - {m for s in scores for m in s.survivors}
    mutated = {s.name for s in scores}
    stale = {m for m in stale if any(_module_of(m) == MODULES[n].source for n in mutated)}
    for mutant in sorted(stale):
        print(f"note: {mutant} is listed in equivalent.toml but did not survive this run")


def _module_of(mutant: str) -> str:
    """``transport.packet.x_encode__mutmut_1`` -> ``transport/packet.py``."""
    parts = mutant.split(".")
    return "/".join(parts[:-1]) + ".py"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help=f"any of: {', '.join(MODULES)}")
    parser.add_argument("--jobs", type=int, default=2, help="mutmut --max-children (2)")
    parser.add_argument("--diff", action="store_true", help="print each survivor's diff")
    parser.add_argument(
        "--with-etcd", action="store_true", help="discovery also against a real etcd"
    )
    parser.add_argument("--list", action="store_true", help="list modules and tests")
    parser.add_argument(
        "--rev", help="mutate the files of this commit (git archive) instead of the work tree"
    )
    args = parser.parse_args(argv)
    if args.list:
        for name, module in MODULES.items():
            print(f"{name:<15}{module.source:<30}{' '.join(module.tests)}")
        return 0
    unknown = [m for m in args.modules if m not in MODULES]
    if unknown:
        parser.error(f"unknown module(s) {unknown}; known: {', '.join(MODULES)}")
    source = snapshot(args.rev) if args.rev else ROOT
    scores = []
    failed = []
    for name in args.modules or list(MODULES):
        module = MODULES[name]
        tests = module.tests + (ETCD_TESTS if name == "discovery" and args.with_etcd else ())
        print(f"mutating {module.source} against {' '.join(tests)}", flush=True)
        try:
            scores.append(run_module(name, module, tests, args.jobs, source))
        except RunFailed as exc:
            print(exc, flush=True)
            failed.append(name)
    report(scores, load_equivalent(), args.diff)
    for name in failed:
        print(f"{name}: no score (see above)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
