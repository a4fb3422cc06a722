"""Knowledge: outcomes per (error type, signature, playbook), the API and CLI over them,
playbooks ordered by what worked, and past heals named for a fault no playbook matches."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

import pytest

from receiver.knowledge import (
    MIN_ATTEMPTS,
    Record,
    median,
    order_by_knowledge,
    shingles,
    similarity,
)
from receiver.playbooks import parse_playbooks
from tests.conftest import ROOT, playbook_yaml
from tests.scripted_action import WITH_SCRIPTED

pytestmark = pytest.mark.usefixtures("scripted")

SUMMARY = "Worker ran out of memory (OOMKilled) in pod 42"


def alert(make_alert: Any, fp: str, outcome: str, **labels: str) -> Any:
    return make_alert(
        alerts=[
            {
                "fingerprint": fp,
                "labels": {
                    "alertname": "ContainerOOMKilled",
                    "container": fp,
                    "scripted_outcome": outcome,
                    **labels,
                },
                "annotations": {"summary": SUMMARY},
            }
        ]
    )


def resolved(payload: dict[str, Any]) -> dict[str, Any]:
    for a in payload["alerts"]:
        a["status"] = "resolved"
    return payload


PLAYBOOK = playbook_yaml(
    "scripted",
    "{container: '${labels.container}'}",
    name="fix it",
    max_retries=1,
    cooldown_minutes=0,
    verify_seconds=0.1,
)


async def test_knowledge_after_a_known_sequence(
    make_service: Any, playbooks_dir: Any, make_alert: Any, store_url: str
) -> None:
    folder = playbooks_dir(PLAYBOOK.replace("verify_seconds: 0.1", "verify_seconds: 60"))
    svc = await make_service(playbooks=folder)
    # 1: healed (the alert resolves while verifying).
    await svc.post("/api/v1/alerts", alert(make_alert, "a", "ok"))
    await svc.settle()
    await asyncio.sleep(0.2)
    await svc.post("/api/v1/alerts", resolved(alert(make_alert, "a", "ok")))
    # 2: the action fails (max_retries 1: escalated).
    await svc.post("/api/v1/alerts", alert(make_alert, "b", "fail"))
    await svc.settle()
    # 3: the action succeeds, the alert keeps firing past the verify window.
    svc2 = await make_service(playbooks=playbooks_dir(PLAYBOOK))
    await svc2.post("/api/v1/alerts", alert(make_alert, "c", "ok"))
    await svc2.settle()
    await asyncio.sleep(0.15)
    await svc2.settle()
    statuses = {
        i["task_name"] + i["labels"]["container"]: i["status"] for i in await svc.incidents()
    }
    assert statuses == {
        "ContainerOOMKilleda": "resolved",
        "ContainerOOMKilledb": "escalated",
        "ContainerOOMKilledc": "escalated",
    }

    (row,) = (await svc.get_json("/api/v1/knowledge"))["items"]
    assert (row["error_type"], row["playbook"]) == ("OOM", "fix it")
    assert (row["attempts"], row["successes"], row["failures"]) == (3, 1, 2)
    assert row["success_rate"] == pytest.approx(1 / 3, abs=1e-3)
    healed = next(i for i in await svc.incidents() if i["status"] == "resolved")
    assert row["mean_heal_seconds"] == pytest.approx(healed["time_to_heal_seconds"], abs=0.01)
    assert row["median_heal_seconds"] == row["mean_heal_seconds"]
    assert row["example_message"] == SUMMARY
    assert row["last_success_at"] is not None
    only_oom = await svc.get_json("/api/v1/knowledge", error_type="OOM", playbook="fix it")
    assert len(only_oom["items"]) == 1
    assert (await svc.get_json("/api/v1/knowledge", error_type="DNS_FAIL"))["items"] == []
    (pb,) = (await svc.get_json("/api/v1/playbooks"))["items"]
    assert pb["km_synced"] is True  # the seed's flag: a success is in the knowledge store

    # The same figures from the command line.
    out = subprocess.run(
        [sys.executable, "-m", "receiver", "knowledge", "--error-type", "OOM"],
        env={"AUTOHEAL_DATABASE_URL": store_url, "PATH": "/usr/bin:/bin"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.splitlines()
    assert out[0].split("\t")[:6] == [
        "error_type",
        "playbook",
        "attempts",
        "successes",
        "failures",
        "success_rate",
    ]
    assert out[1].split("\t")[:6] == ["OOM", "fix it", "3", "1", "2", "0.3333"]


def _two(priority_a: int = 10) -> Any:
    return parse_playbooks(
        playbook_yaml("scripted", "{}", name="A", priority=priority_a)
        + playbook_yaml("scripted", "{}", name="B").replace("playbooks:\n", ""),
        "test.yaml",
        actions=WITH_SCRIPTED,
    )


def test_order_by_knowledge_is_rate_then_declared() -> None:
    a, b = _two()
    ids = {"A": 1, "B": 2}
    assert order_by_knowledge([a, b], ids, {}) == [a, b]  # nothing learned: as declared
    few = {1: Record(MIN_ATTEMPTS - 1, 0)}
    assert order_by_knowledge([a, b], ids, few) == [a, b]  # too few attempts to judge
    failing = {1: Record(MIN_ATTEMPTS, 0)}
    assert order_by_knowledge([a, b], ids, failing) == [b, a]  # A proved bad: untried B first
    both = {1: Record(10, 9), 2: Record(10, 3)}
    assert order_by_knowledge([b, a], ids, both) == [a, b]


async def test_worker_prefers_the_playbook_that_works(
    make_service: Any, playbooks_dir: Any, make_alert: Any, scripted: Any
) -> None:
    """A (declared first) keeps failing on this fault; after MIN_ATTEMPTS the worker picks B."""
    text = playbook_yaml(
        "scripted",
        "{container: '${labels.container}', outcome: fail}",
        name="A",
        priority=10,
        max_retries=1,
        cooldown_minutes=0,
    ) + playbook_yaml(
        "scripted",
        "{container: '${labels.container}'}",
        name="B",
        max_retries=1,
        cooldown_minutes=0,
    ).replace("playbooks:\n", "")
    svc = await make_service(playbooks=playbooks_dir(text))
    chosen = []
    for i in range(MIN_ATTEMPTS + 1):
        await svc.post("/api/v1/alerts", alert(make_alert, f"x{i}", ""))  # as the playbook says
        await svc.settle()
        items = await svc.incidents()
        detail = await svc.incident(items[0]["id"])
        chosen.append(detail["heal_logs"][0]["action_detail"])
    assert chosen[:MIN_ATTEMPTS] == [f"scripted fail on x{i}" for i in range(MIN_ATTEMPTS)]
    assert chosen[MIN_ATTEMPTS] == f"scripted ok on x{MIN_ATTEMPTS}"


async def test_unmatched_fault_names_similar_past_heals(
    make_service: Any, playbooks_dir: Any, make_exception: Any
) -> None:
    """The playbook is for the sync job only; the same fault in another job matches none,
    and its incident (and escalation message) name the heal that worked for sync."""
    text = playbook_yaml(
        "scripted",
        "{}",
        name="restart db",
        error_type="DB_UNREACHABLE",
        matchers="['task=\"sync\"']",
        verify_seconds=0.1,
        cooldown_minutes=0,
    )
    svc = await make_service(playbooks=playbooks_dir(text))
    healed = make_exception(
        task="sync", message="could not connect to server: Connection refused (db-7:5432)"
    )
    await svc.post("/api/v1/exceptions", healed)
    await svc.settle()
    await asyncio.sleep(0.15)
    await svc.settle()  # quiet through the window: healed
    assert (await svc.incidents())[0]["status"] == "resolved"
    unknown = make_exception(
        task="report", message="could not connect to the server db-9:5432, connection refused"
    )
    body = await (await svc.post("/api/v1/exceptions", unknown)).json()
    incident = await svc.incident(body["incident"])
    assert incident["escalation_reason"] == "no_playbook"
    (similar,) = incident["similar_healed"]
    assert similar["playbook"] == "restart db" and similar["successes"] == 1
    assert 0.3 <= similar["similarity"] <= 1
    # Nothing alike: nothing named.
    other = make_exception(task="x", message="disk quota exceeded on /var/lib/app")
    body = await (await svc.post("/api/v1/exceptions", other)).json()
    assert (await svc.incident(body["incident"]))["similar_healed"] == []


def test_similarity_and_median() -> None:
    a = shingles("could not connect to server: Connection refused (db-7:5432)")
    b = shingles("could not connect to server: Connection refused (db-9:5433)")
    c = shingles("disk quota exceeded")
    assert similarity(a, b) == 1.0  # numbers and ids are placeholders
    assert similarity(a, c) == 0.0
    assert median([]) is None and median([3.0, 1.0, 2.0]) == 2.0 and median([1.0, 2.0]) == 1.5


async def test_escalation_message_names_similar_past_heals(
    make_service: Any, playbooks_dir: Any, make_exception: Any
) -> None:
    from tests.telegram_standin import TelegramStandIn

    telegram = TelegramStandIn("1:tok")
    await telegram.start()
    try:
        text = playbook_yaml(
            "scripted",
            "{}",
            name="restart db",
            error_type="DB_UNREACHABLE",
            matchers="['task=\"sync\"']",
            verify_seconds=0,
            cooldown_minutes=0,
        )
        svc = await make_service(
            playbooks=playbooks_dir(text),
            telegram_token="1:tok",
            telegram_chat_id="7",
            telegram_base_url=telegram.base_url,
        )
        msg = "could not connect to server: Connection refused (db-7:5432)"
        await svc.post("/api/v1/exceptions", make_exception(task="sync", message=msg))
        await svc.settle()
        await svc.settle()
        await svc.post(
            "/api/v1/exceptions",
            make_exception(task="report", message=msg.replace("db-7", "db-9")),
        )
        await svc.deliver()
        escalated = [m["text"] for m in telegram.delivered if "Escalated" in m["text"]]
        assert len(escalated) == 1
        assert "Similar faults healed before: restart db (1/1 healed" in escalated[0]
    finally:
        await telegram.stop()
