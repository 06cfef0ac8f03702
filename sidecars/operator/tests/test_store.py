"""The store on its own: validation, ordering, persistence, file modes, concurrent writers."""

from __future__ import annotations

import json
import multiprocessing
import os
import stat
import unittest

from helpers import temp_home

from revka_operator.store import Store, StoreError


def _save_many(state_dir: str, worker: int, count: int) -> None:
    store = Store(state_dir)
    for i in range(count):
        store.save_plan(f"worker {worker} plan {i}", ["step"])
        store.set_goal(f"worker {worker} goal {i}")


class StoreTest(unittest.TestCase):
    def setUp(self) -> None:
        self.dir = temp_home(self) / "state"
        self.store = Store(self.dir)

    def test_plans_round_trip_newest_first_with_keyword_filter(self) -> None:
        a = self.store.save_plan("Deploy the API", ["build", "push image"], "s1")
        b = self.store.save_plan("Write docs", ["outline", "draft the API guide"])
        c = self.store.save_plan("Fix flaky test", ["reproduce"])
        self.assertEqual(a["session"], "s1")
        self.assertIsNone(b["session"])
        recalled = [p["id"] for p in self.store.recall_plans()]
        self.assertEqual(recalled, [c["id"], b["id"], a["id"]])
        self.assertEqual([p["id"] for p in self.store.recall_plans("api")], [b["id"], a["id"]])
        self.assertEqual([p["id"] for p in self.store.recall_plans("API image")], [a["id"]])
        self.assertEqual(self.store.recall_plans("nothing-matches"), [])
        self.assertEqual(len(self.store.recall_plans(limit=2)), 2)
        self.assertEqual(self.store.get_plan(b["id"]), b)
        # A fresh store over the same directory sees the same state.
        self.assertEqual(Store(self.dir).get_plan(a["id"])["steps"], ["build", "push image"])

    def test_invalid_plan_input_is_rejected_with_reasons(self) -> None:
        cases = [
            (("", ["x"]), "title must not be empty"),
            (("t", []), "non-empty list"),
            (("t", "not a list"), "non-empty list"),
            (("t", ["ok", "  "]), "steps[1] must not be empty"),
            (("t", ["ok", 3]), "steps[1] must be a string"),
            (("x" * 201, ["a"]), "title is too long"),
            (("t", ["a"] * 101), "too many steps"),
        ]
        for args, message in cases:
            with self.subTest(args=str(args)[:40]):
                with self.assertRaises(StoreError) as ctx:
                    self.store.save_plan(*args)
                self.assertIn(message, str(ctx.exception))
        for limit in (0, 101, "5", True):
            with self.assertRaises(StoreError):
                self.store.recall_plans(limit=limit)
        with self.assertRaisesRegex(StoreError, "invalid id"):
            self.store.get_plan("../../etc/passwd")
        with self.assertRaisesRegex(StoreError, "no plan with id plan_1_x"):
            self.store.get_plan("plan_1_x")

    def test_goals_priorities_statuses_and_completion(self) -> None:
        low = self.store.set_goal("tidy", "low")
        high = self.store.set_goal("ship", "high")
        normal = self.store.set_goal("review")
        self.assertEqual(normal["priority"], "normal")
        self.assertEqual(
            [g["id"] for g in self.store.list_goals()], [high["id"], normal["id"], low["id"]]
        )
        done = self.store.complete_goal(high["id"])
        self.assertEqual(done["status"], "done")
        self.assertIsNotNone(done["completed_at"])
        self.assertEqual([g["id"] for g in self.store.list_goals("done")], [high["id"]])
        self.assertEqual(len(self.store.list_goals("all")), 3)
        with self.assertRaisesRegex(StoreError, "already done"):
            self.store.complete_goal(high["id"])
        with self.assertRaisesRegex(StoreError, "priority must be one of"):
            self.store.set_goal("x", "urgent")
        with self.assertRaisesRegex(StoreError, "status must be one of"):
            self.store.list_goals("closed")
        self.assertEqual(self.store.counts(), {"plans": 0, "goals_open": 2, "goals_done": 1})

    def test_files_are_owner_only_and_directory_0700(self) -> None:
        self.store.save_plan("t", ["s"])
        self.store.set_goal("g")
        self.assertEqual(stat.S_IMODE(os.stat(self.dir).st_mode), 0o700)
        for name in ("plans.json", "goals.json"):
            self.assertEqual(stat.S_IMODE(os.stat(self.dir / name).st_mode), 0o600, name)
        self.assertEqual(
            sorted(p.name for p in self.dir.iterdir()), [".lock", "goals.json", "plans.json"]
        )
        doc = json.loads((self.dir / "plans.json").read_text())
        self.assertEqual(doc["version"], 1)

    def test_a_corrupt_file_is_an_error_not_a_crash_and_is_left_alone(self) -> None:
        self.dir.mkdir(parents=True)
        (self.dir / "plans.json").write_text("{not json")
        with self.assertRaisesRegex(StoreError, "corrupt"):
            self.store.recall_plans()
        with self.assertRaisesRegex(StoreError, "corrupt"):
            self.store.save_plan("t", ["s"])
        self.assertEqual((self.dir / "plans.json").read_text(), "{not json")

    def test_concurrent_processes_never_lose_a_write(self) -> None:
        workers, each = 4, 15
        ctx = multiprocessing.get_context("spawn")
        procs = [
            ctx.Process(target=_save_many, args=(str(self.dir), w, each)) for w in range(workers)
        ]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
            self.assertEqual(p.exitcode, 0)
        counts = self.store.counts()
        self.assertEqual(counts["plans"], workers * each)
        self.assertEqual(counts["goals_open"], workers * each)
        ids = [p["id"] for p in self.store.recall_plans(limit=100)]
        self.assertEqual(len(set(ids)), len(ids))


if __name__ == "__main__":
    unittest.main()
