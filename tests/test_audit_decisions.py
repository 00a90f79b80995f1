"""Decisions on audit findings: stable ids, decide / undo / decisions / export on the command line and
through the API, and the bad inputs (unknown and stale ids, labels outside the set, an unwritable
output, decisions made on other labels). Real SQLite, real FAISS, the bundled model, real HTTP."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest
from click.testing import CliRunner

from indexer import open_index, synthetic
from indexer.cli import main

from .live_server import live_server

CLASSES = ("red square", "red star", "green circle", "green triangle", "blue square", "blue cross",
           "yellow circle", "yellow star")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> dict:
    """8 classes x 8 pictures, 4 of them filed under another class, and one exact copy of a picture."""
    root = tmp_path_factory.mktemp("decisions")
    rendered = synthetic.write_labelled_folder(root / "render", 8, CLASSES, seed=21, size=64)
    rng = np.random.default_rng(3)
    flipped = set(rng.choice(len(rendered), 4, replace=False).tolist())
    data, truth, wrong = root / "data", {}, set()
    for i, (path, label) in enumerate(rendered):
        given = CLASSES[(CLASSES.index(label) + 3) % len(CLASSES)] if i in flipped else label
        target = data / given.replace(" ", "_") / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(path, target)
        truth[str(target)] = label
        if i in flipped:
            wrong.add(str(target))
    original = next(p for p in sorted(truth) if p not in wrong)
    copy = Path(original).with_name("copy_of_" + Path(original).name)
    shutil.copy(original, copy)
    truth[str(copy)] = truth[original]
    index = root / "index"
    with open_index(index, model="tiny-shapes") as ix:
        ix.ingest([data])
    return {"root": root, "data": data, "index": index, "truth": truth, "wrong": wrong, "exact": (original, str(copy))}


@pytest.fixture
def index(dataset, tmp_path) -> Path:
    """A copy of the dataset's index (decisions change it)."""
    target = tmp_path / "index"
    shutil.copytree(dataset["index"], target)
    return target


def cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def audit_json(index: Path, *extra: str) -> list[dict]:
    code, out, err = cli("audit", "--index", str(index), "--no-report", "--json", *extra)
    assert code == 0, err
    return json.loads(out)


def read_csv(path: Path) -> dict[str, str]:
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["path", "label"]
    return {r[0]: r[1] for r in rows[1:]}


def test_every_finding_has_a_stable_id(index):
    first, second = audit_json(index), audit_json(index, "--neighbours", "8")
    ids = [f["id"] for f in first]
    assert len(set(ids)) == len(ids) == len(first) > 0
    prefixes = {"mislabel": "mis-", "duplicate": "dup-", "outlier": "out-", "confusable_labels": "pair-",
                "small_class": "small-"}
    assert all(f["id"].startswith(prefixes[f["type"]]) for f in first)
    # The same problem found again has the same id, though other settings moved other findings.
    exact = lambda findings: {f["id"] for f in findings if f["type"] == "duplicate" and f["kind"] == "exact"}  # noqa: E731
    assert exact(first) == exact(second) and len(exact(first)) == 1
    by_path = {f["path"]: f["id"] for f in first if f["type"] == "mislabel"}
    assert {f["path"]: f["id"] for f in second if f["type"] == "mislabel" and f["path"] in by_path} \
        == {p: i for p, i in by_path.items() if p in {f.get("path") for f in second}}


def test_decide_export_round_trip(dataset, index, tmp_path):
    findings = audit_json(index)
    mislabels = [f for f in findings if f["type"] == "mislabel"]
    assert len(mislabels) >= 3
    accepted, relabelled, rejected = mislabels[:3]
    exact = next(f for f in findings if f["type"] == "duplicate" and f["kind"] == "exact")
    target = next(c for c in CLASSES if c != relabelled["given_label"])

    assert cli("audit", "decide", accepted["id"], "accept", "--index", str(index))[0] == 0
    code, out, err = cli("audit", "decide", relabelled["id"], "relabel", target, "--index", str(index), "--json")
    assert code == 0, err
    assert json.loads(out)["action"] == "relabel" and json.loads(out)["label"] == target
    assert cli("audit", "decide", rejected["id"], "reject", "--index", str(index))[0] == 0
    assert cli("audit", "decide", exact["id"], "drop", "--index", str(index))[0] == 0

    code, out, _ = cli("audit", "decisions", "--index", str(index), "--json")
    listed = json.loads(out)
    assert [d["id"] for d in listed] == [accepted["id"], relabelled["id"], rejected["id"], exact["id"]]
    assert [d["action"] for d in listed] == ["accept", "relabel", "reject", "drop"]
    code, out, _ = cli("audit", "decisions", "--index", str(index))
    assert code == 0 and accepted["id"] in out and f"relabel {target}" in out

    # A later audit shows what was decided and leaves the rejected finding out.
    again = {f["id"]: f for f in audit_json(index)}
    assert rejected["id"] not in again
    assert again[accepted["id"]]["decision"] == {"action": "accept", "label": None}
    assert again[relabelled["id"]]["decision"] == {"action": "relabel", "label": target}

    output = tmp_path / "corrected.csv"
    code, out, err = cli("audit", "export", "--index", str(index), "-o", str(output))
    assert code == 0, err
    assert "2 relabelled, 2 dropped by decisions (4 decisions applied)" in out
    labels = read_csv(output)
    given = {p: Path(p).parent.name.replace("_", " ") for p in dataset["truth"]}
    assert labels[accepted["path"]] == accepted["suggested_label"]
    assert labels[relabelled["path"]] == target
    assert labels[rejected["path"]] == rejected["given_label"]
    assert not set(exact["paths"]) & set(labels)
    unchanged = set(given) - {accepted["path"], relabelled["path"]} - set(exact["paths"])
    assert all(labels[p] == given[p] for p in unchanged) and len(labels) == len(given) - 2

    code, out, _ = cli("audit", "--index", str(index), "--no-report")
    assert "decided earlier: 1 accepted, 1 rejected, 1 relabelled, 1 dropped (rejected findings are not shown again)" in out

    # The corrected file is a labels file: the audit reads it, and nothing is decided on it yet.
    code, out, err = cli("audit", "--index", str(index), "--labels", str(output), "--no-report")
    assert code == 0, err


def test_drop_duplicates_keeps_one_per_exact_group(dataset, index, tmp_path):
    audit_json(index)
    output = tmp_path / "deduplicated.csv"
    code, out, err = cli("audit", "export", "--index", str(index), "-o", str(output), "--drop-duplicates", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["duplicates_dropped"] == 1 and summary["rows"] == len(dataset["truth"]) - 1
    labels = read_csv(output)
    assert (dataset["exact"][0] in labels) != (dataset["exact"][1] in labels)


def test_accepted_duplicate_group_keeps_its_first_member(index, tmp_path):
    exact = next(f for f in audit_json(index) if f["type"] == "duplicate" and f["kind"] == "exact")
    assert cli("audit", "decide", exact["id"], "accept", "--index", str(index))[0] == 0
    output = tmp_path / "out.csv"
    assert cli("audit", "export", "--index", str(index), "-o", str(output))[0] == 0
    assert [p in read_csv(output) for p in exact["paths"]] == [True, False]


def test_undo_forgets_a_decision(index):
    finding = next(f for f in audit_json(index) if f["type"] == "mislabel")
    assert cli("audit", "decide", finding["id"], "reject", "--index", str(index))[0] == 0
    assert finding["id"] not in {f["id"] for f in audit_json(index)}
    code, out, _ = cli("audit", "undo", finding["id"], "--index", str(index))
    assert code == 0 and "forgotten" in out
    assert finding["id"] in {f["id"] for f in audit_json(index)}
    code, _, err = cli("audit", "undo", finding["id"], "--index", str(index))
    assert code == 1 and "no decision" in err


def test_bad_decisions_are_one_line_errors_and_change_nothing(dataset, index, tmp_path):
    code, _, err = cli("audit", "decide", "mis-000000000000", "accept", "--index", str(index))
    assert code == 1 and "no audit is stored" in err
    findings = audit_json(index)
    mislabel = next(f for f in findings if f["type"] == "mislabel")
    pair = [f for f in findings if f["type"] in ("confusable_labels", "small_class")]

    def refused(*args: str, says: str) -> None:
        code, out, err = cli("audit", "decide", *args, "--index", str(index))
        assert code != 0 and says in err, err
        assert len([line for line in err.strip().splitlines() if line.startswith("Error")]) == 1

    refused("mis-000000000000", "accept", says="no finding 'mis-000000000000' in the latest audit")
    refused(mislabel["id"], "relabel", "a purple unicorn", says="is not one of the 8 audited labels")
    refused(mislabel["id"], "relabel", says="relabel needs the new label")
    refused(mislabel["id"], "accept", "red star", says="accept takes no label")
    refused(mislabel["id"], "maybe", says="Invalid value")
    if pair:
        refused(pair[0]["id"], "drop", says="accept or reject it")
    assert json.loads(cli("audit", "decisions", "--index", str(index), "--json")[1]) == []

    # Stale: the index changed since the audit.
    fresh = tmp_path / "fresh"
    synthetic.write_labelled_folder(fresh, 1, ("blue cross",), seed=99, size=64)
    with open_index(index) as ix:
        ix.ingest([fresh])
    refused(mislabel["id"], "accept", says="is stale: the index changed since the latest audit")


def test_export_errors_lose_nothing(dataset, index, tmp_path):
    findings = audit_json(index)
    mislabel = next(f for f in findings if f["type"] == "mislabel")
    assert cli("audit", "decide", mislabel["id"], "accept", "--index", str(index))[0] == 0
    previous = tmp_path / "corrected.csv"
    previous.write_text("path,label\nkept,as it was\n")

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code, _, err = cli("audit", "export", "--index", str(index), "-o", str(blocker / "corrected.csv"))
    assert code == 1 and "could not write" in err and err.count("\n") == 1
    code, _, err = cli("audit", "export", "--index", str(index), "-o", str(tmp_path))
    assert code == 1 and "is a folder" in err and err.startswith("Error: --output")

    # Decisions made on the folder labels, applied to another labels file: refused, the old file intact.
    other = tmp_path / "other.csv"
    with other.open("w", newline="") as f:
        writer = csv.writer(f)
        for path in sorted(dataset["truth"]):
            writer.writerow([path, dataset["truth"][path]])
    code, _, err = cli("audit", "export", "--index", str(index), "-o", str(previous), "--labels", str(other))
    assert code == 1 and "decisions were made on other labels" in err and err.count("\n") == 1
    assert previous.read_text() == "path,label\nkept,as it was\n"
    assert json.loads(cli("audit", "decisions", "--index", str(index), "--json")[1])[0]["id"] == mislabel["id"]


def test_the_api_records_decisions_and_exports(dataset, index):
    findings = audit_json(index)
    mislabel = next(f for f in findings if f["type"] == "mislabel")
    with live_server({"shapes": index}) as url, httpx.Client(base_url=url, timeout=60) as client:
        listed = client.get("/api/audit", params={"limit": 1000}).json()
        assert listed["total"] == len(findings) and listed["reviewed"] == 0 and not listed["decisions_allowed"]
        assert {f["id"] for f in listed["findings"]} == {f["id"] for f in findings}
        assert listed["labels"] == sorted(CLASSES)
        refused = client.post("/api/audit/decisions", json={"id": mislabel["id"], "action": "accept"})
        assert refused.status_code == 403 and "--allow-decisions" in refused.json()["detail"]
    with live_server({"shapes": index}, allow_decisions=True) as url, httpx.Client(base_url=url, timeout=60) as client:
        made = client.post("/api/audit/decisions", json={"id": mislabel["id"], "action": "accept"})
        assert made.status_code == 200, made.text
        assert made.json()["id"] == mislabel["id"] and made.json()["action"] == "accept"
        bad = client.post("/api/audit/decisions", json={"id": "mis-000000000000", "action": "accept"})
        assert bad.status_code == 400 and "no finding" in bad.json()["detail"]
        bad = client.post("/api/audit/decisions", json={"id": mislabel["id"], "action": "relabel", "label": "nope"})
        assert bad.status_code == 400 and "audited labels" in bad.json()["detail"]
        assert client.post("/api/audit/decisions", json={"id": mislabel["id"], "action": "explode"}).status_code == 422
        listed = client.get("/api/audit", params={"type": "mislabel"}).json()
        assert listed["reviewed"] == 1
        assert next(f for f in listed["findings"] if f["id"] == mislabel["id"])["decision"]["action"] == "accept"
        assert [d["id"] for d in client.get("/api/audit/decisions").json()] == [mislabel["id"]]
        exported = client.get("/api/audit/export", params={"drop_duplicates": "true"})
        assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
        rows = dict(list(csv.reader(exported.text.splitlines()))[1:])
        assert rows[mislabel["path"]] == mislabel["suggested_label"] and len(rows) == len(dataset["truth"]) - 1
        undone = client.post("/api/audit/decisions", json={"id": mislabel["id"], "action": "undo"})
        assert undone.status_code == 200 and client.get("/api/audit/decisions").json() == []


def test_decisions_and_hashes_on_postgresql(dataset, pg_url, tmp_path):
    from indexer.config import Settings

    settings = Settings().replace(catalog=pg_url)
    index = tmp_path / "pg-index"
    with open_index(index, model="tiny-shapes", settings=settings) as ix:
        ix.ingest([dataset["data"]])
        hashed = ix.context.catalog.rows("SELECT count(*), count(phash) FROM embeddings")[0]
        assert hashed[0] == hashed[1] > 0 and hashed[0] == len(dataset["truth"]) - 1  # one content copied
        result = ix.audit()
        mislabel = result.of_type("mislabel")[0]
        exact = next(f for f in result.of_type("duplicate") if f.details["kind"] == "exact")
        ix.audit_decide(mislabel.id, "relabel", "red star")
        ix.audit_decide(exact.id, "accept")
        ix.audit_decide(mislabel.id, "accept")  # a second decision replaces the first
        assert [(d.finding_id, d.action) for d in ix.audit_decisions()] == [(exact.id, "accept"),
                                                                             (mislabel.id, "accept")]
        summary = ix.audit_export(tmp_path / "corrected.csv")
    labels = read_csv(tmp_path / "corrected.csv")
    assert summary.decisions == 2 and summary.dropped == 1
    assert labels[mislabel.path] == mislabel.details["suggested_label"] and exact.paths[1] not in labels
