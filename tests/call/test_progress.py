"""Progress reports as Phone and Peer publish them: rate and time left, at most ten a second, the last always."""

from __future__ import annotations

import time

from nbcall.call.progress import ProgressReporter, describe

MiB = 2**20


def reporter() -> tuple[ProgressReporter, list[dict], list[dict]]:
    published: list[dict] = []
    heard: list[dict] = []
    progress = ProgressReporter("A", published.append)
    progress.callbacks.append(heard.append)
    return progress, published, heard


def test_rate_and_time_left_come_from_the_transfer_so_far_and_the_trait_empties_at_the_end() -> None:
    progress, published, heard = reporter()
    progress.report({"direction": "in", "peer": "B", "name": None, "done": 1 * MiB, "total": 4 * MiB})
    time.sleep(0.2)
    progress.report({"direction": "in", "peer": "B", "name": None, "done": 3 * MiB, "total": 4 * MiB})
    middle = heard[-1]
    assert 2 * MiB / 0.5 < middle["rate"] < 2 * MiB / 0.2  # 2 MiB in about 0.2 s
    assert 0 < middle["eta"] < 0.25
    progress.report({"direction": "in", "peer": "B", "name": None, "done": 4 * MiB, "total": 4 * MiB})
    assert heard[-1]["done"] == 4 * MiB and heard[-1]["eta"] == 0
    assert published[-1] == {}  # nothing under way any more


def test_reports_come_at_most_ten_a_second_but_the_last_always() -> None:
    progress, _, heard = reporter()
    for done in range(1, 11):
        progress.report({"direction": "out", "peer": "B", "name": "f", "done": done * MiB, "total": 10 * MiB})
    assert [p["done"] for p in heard] == [1 * MiB, 10 * MiB]


def test_a_report_that_brings_its_own_rate_passes_as_it_is_and_an_unknown_total_has_no_time_left() -> None:
    progress, published, heard = reporter()
    given = {"direction": "in", "peer": "B", "name": None, "done": 5, "total": 9, "rate": 1.5, "eta": 2.7}
    progress.report(given, force=True)
    assert heard == [given] and published == [given]
    progress.report(
        {"direction": "in", "peer": "C", "name": None, "done": 2 * MiB, "total": None}, force=True
    )
    assert heard[-1]["eta"] is None


def test_a_failing_callback_is_logged_and_the_others_still_hear(caplog) -> None:
    progress, _, heard = reporter()
    progress.callbacks.insert(0, lambda p: 1 / 0)
    progress.report({"direction": "out", "peer": "B", "name": None, "done": 1, "total": 1})
    assert heard and "on_progress callback" in caplog.text


def test_a_report_reads_as_the_widgets_show_it() -> None:
    report = {"direction": "in", "peer": "B", "name": "a.bin", "done": 12 * MiB, "total": 50 * MiB,
              "rate": 8 * MiB, "eta": 4.75}  # fmt: skip
    assert describe(report) == "↓ a.bin from B: 12.0 MiB of 50.0 MiB · 8.0 MiB/s · 5 s left"
    out = {**report, "direction": "out", "name": None, "total": None, "eta": None, "done": 1536, "rate": 512}
    assert describe(out) == "↑ a message to B: 1.5 KiB · 512 B/s"
