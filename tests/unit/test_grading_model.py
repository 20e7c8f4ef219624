"""Grading's pure parts: scores, titles, the catalogue, feedback, results.json, rosters,
grades.csv, merge, evidence (no lab: the grades are made by hand)."""

from __future__ import annotations

import csv
import json
from types import SimpleNamespace as NS

import pytest

from labfixtures.errors import LabError
from labfixtures.grading import (
    classrun,
    evidence,
    feedback,
    gradescope,
    outputs,
    roster,
    untrusted,
)
from labfixtures.grading.messages import Catalogue
from labfixtures.grading.model import (
    FAILED,
    GRADED,
    NOT_CHECKED,
    NOT_GRADABLE,
    PARTIAL,
    PASSED,
    CheckFailed,
    CheckResult,
    CheckSpec,
    Finding,
    Grade,
    Message,
    score_of,
    titles_from_doc,
)
from labfixtures.grading.probes import Prober
from labfixtures.lab.labfile import parse
from labfixtures.net.netlink import Address, Link, Neighbour, Route


def spec(name, points=1.0, hidden=False, after=(), fr=None):
    titles = {"en": name.replace("_", " ")}
    if fr:
        titles["fr"] = fr
    return CheckSpec(name, titles, points, tuple(after), hidden)


GW_FINDING = Finding(Message("probe.default_route", {"target": "vm0"}),
                     Message("where.vm_ssh", {"vm": "vm0"}),
                     Message("expect.default_route", {"via": "203.0.113.129"}),
                     Message("seen.default_route", {"via": "203.0.113.1"}),
                     Message("hint.gw", {"svi": "sw0-vlan2", "expected": "203.0.113.129"}))


def a_grade():
    return Grade("bob", "Bob B", "bob.yaml", checks=[
        CheckResult(spec("test_port", 2, fr="le port"), PASSED, 2.0),
        CheckResult(spec("test_gateway", 2, fr="la passerelle"), FAILED, 0.0, GW_FINDING),
        CheckResult(spec("test_router", 2, after=["test_gateway"]), NOT_CHECKED,
                    needs=("test_gateway",)),
        CheckResult(spec("test_addresses", 3), PARTIAL, score_of(3, PARTIAL, 2 / 3),
                    Finding(details="2 of 3")),
        CheckResult(spec("test_secret", 1, hidden=True), FAILED, 0.0,
                    Finding(details="the hidden one failed")),
    ], lab="Table 1", messages={"en": {"hint.gw": "the lab expects {expected}, "
                                                  "the address of {svi}"},
                                "fr": {"hint.gw": "le lab attend {expected}, "
                                                  "l'adresse de {svi}"}})


def test_score_of_gives_all_a_share_or_nothing():
    assert score_of(2, PASSED) == 2
    assert score_of(3, PARTIAL, 2 / 3) == 2
    assert score_of(1, PARTIAL, 1 / 3) == 0.33
    assert score_of(2, FAILED, 0.5) == 0 and score_of(2, NOT_CHECKED) == 0


def test_titles_come_from_the_docstring_first_line_and_a_fr_line():
    assert titles_from_doc("tap2 is in VLAN 2\n    fr: tap2 est dans le VLAN 2\n", "t") == {
        "en": "tap2 is in VLAN 2", "fr": "tap2 est dans le VLAN 2"}
    assert titles_from_doc(None, "test_the_gateway") == {"en": "the gateway"}


def test_a_grade_round_trips_through_json():
    g = a_grade()
    again = Grade.from_json(json.loads(json.dumps(g.to_json())))
    assert again.to_json() == g.to_json()
    assert (again.score, again.max_score) == (4.0, 10.0)
    with pytest.raises(ValueError, match="newer"):
        Grade.from_json({**g.to_json(), "version": 99})


def test_the_catalogue_renders_french_falls_back_and_takes_the_teachers_messages():
    cat = Catalogue()
    m = Message("seen.no_answer", {"timeout": "3"})
    assert cat.render(m, "en") == "no answer within 3 s"
    assert cat.render(m, "fr") == "pas de réponse en 3 s"
    assert cat.render(Message("probe.x.unknown"), "fr") == "probe.x.unknown"
    cat.extend({"fr": {"hint.mine": "vérifiez {x}"}, "en": {"hint.mine": "check {x}"}})
    assert cat.render(Message("hint.mine", {"x": "eth0"}), "fr") == "vérifiez eth0"
    # a message nested in a message is rendered in the same language
    nested = Message("seen.addresses", {"addresses": Message("seen.none"), "ok": 0,
                                        "total": 1})
    assert cat.render(nested, "fr") == "aucune (0 sur 1 attendues présentes)"
    assert cat.missing("fr") == [], "every English sentence has its French"
    with pytest.raises(LabError, match="mapping"):
        cat.extend({"fr": ["not", "a", "mapping"]})


def test_feedback_md_says_what_was_probed_and_keeps_hidden_checks_out():
    g = a_grade()
    md = feedback.markdown(g, outputs.catalogue_for(g), "en", lab="Table 1")
    assert "Score on the checks shown: 4 / 9" in md
    assert "1 more check(s) will be shown with the final grade." in md
    assert "secret" not in md and "the hidden one failed" not in md
    assert "- **Probed:** the default route of vm0 (`ip route`)" in md
    assert "- **Expected:** default via 203.0.113.129" in md
    assert "- **Seen:** default via 203.0.113.1" in md
    assert "- **Hint:** the lab expects 203.0.113.129, the address of sw0-vlan2" in md
    assert "not checked: needs “test gateway”" in md
    # the check that was not checked is not a second mistake
    assert md.split("## What to fix")[1].count("### ") == 2
    revealed = feedback.markdown(g, outputs.catalogue_for(g), "en", reveal=True)
    assert "test secret" in revealed and "Score: 4 / 10" in revealed


def test_feedback_in_french():
    g = a_grade()
    md = feedback.markdown(g, outputs.catalogue_for(g), "fr")
    for words in ("Note sur les vérifications affichées : 4 / 9", "## À corriger",
                  "**Sondé:** la route par défaut de vm0 (`ip route`)",
                  "**Depuis:** dans vm0, par SSH", "**Observé:** default via 203.0.113.1",
                  "**Piste:** le lab attend 203.0.113.129, l'adresse de sw0-vlan2",
                  "non vérifiée : nécessite « la passerelle »", "| le port |"):
        assert words in md, words


def test_a_not_gradable_student_has_no_score_and_is_told_it_is_not_a_zero():
    g = Grade("gina", status=NOT_GRADABLE, reason="VM vm0 has no NIC")
    md = feedback.markdown(g, Catalogue(), "en")
    assert "could not be graded: VM vm0 has no NIC" in md and "not a grade of 0" in md
    r = gradescope.results(g, Catalogue())
    assert r["tests"] == [] and r["extra_data"]["gradable"] is False


def test_gradescope_results_hide_hidden_checks_until_reveal():
    g = a_grade()
    r = gradescope.results(g, outputs.catalogue_for(g))
    assert r["score"] == 4.0
    by = {t["name"]: t for t in r["tests"]}
    assert by["test secret"]["visibility"] == "hidden"
    assert by["test gateway"]["status"] == "failed" and by["test gateway"]["max_score"] == 2
    assert "Seen: default via 203.0.113.1" in by["test gateway"]["output"]
    shown = gradescope.results(g, outputs.catalogue_for(g), reveal=True)
    assert {t["visibility"] for t in shown["tests"]} == {"visible"}


def test_outputs_are_written_and_rendered_again_from_grade_json(tmp_path):
    g = a_grade()
    outputs.write(g, tmp_path, "en")
    assert {p.name for p in tmp_path.iterdir()} == {
        "grade.json", "feedback.md", "feedback.html", "results.json", "evidence.json"}
    html = (tmp_path / "feedback.html").read_text()
    assert "<table>" in html and "<strong>Probed:</strong>" in html
    assert "<figure" not in html  # no drawing given
    g.drawing = '<svg xmlns="http://www.w3.org/2000/svg"><text>tap2</text></svg>'
    outputs.render(g, tmp_path)
    assert '<figure class="lab"><svg' in (tmp_path / "feedback.html").read_text()
    again = Grade.read(tmp_path / "grade.json")
    outputs.render(again, tmp_path, "fr", reveal=True)
    md = (tmp_path / "feedback.md").read_text()
    assert "Note : 4 / 10" in md and "l'adresse de sw0-vlan2" in md


def test_the_prober_records_evidence_and_fails_with_a_finding():
    class Host:
        name = "vm0"
        nics = ()

        def ping(self, address, timeout=1.0):
            return address == "203.0.113.129"

    p = Prober(now=lambda: 1.0)
    p.reachable(Host(), "203.0.113.129", within=0)
    with pytest.raises(CheckFailed) as e:
        p.reachable(Host(), "203.0.113.1", within=0, hint="hint.x")
    f = e.value.finding
    assert f.seen == Message("seen.no_answer", {"timeout": "0"})
    assert f.hint is not None and f.hint.key == "hint.x"
    assert [r["ok"] for r in p.records] == [True, False]
    assert p.records[1]["command"] == "ping -c 1 -W 1 203.0.113.1"


def test_the_prober_gives_a_share_for_the_addresses_present():
    class Addr:
        def __init__(self, cidr):
            self.cidr, self.dev, self.scope = cidr, "eth0", "global"

        def __str__(self):
            return self.cidr

    class Vm:
        name, nics = "vm0", ()

        def addresses(self):
            return [Addr("10.0.0.1/24"), Addr("10.0.1.1/24")]

    with pytest.raises(CheckFailed) as e:
        Prober().addresses(Vm(), ["10.0.0.1/24", "10.0.1.1/24", "10.0.2.1/24"])
    assert e.value.share == pytest.approx(2 / 3)
    with pytest.raises(TypeError, match="list"):
        Prober().addresses(Vm(), "10.0.0.1/24")


def test_a_roster_is_read_and_its_mistakes_reported_at_once(tmp_path):
    (tmp_path / "r.csv").write_text("student,name,target,seed\n"
                                    "alice,Alice,a.yaml,7\nbob,Bob,/abs/b.yaml,\n")
    alice, bob = roster.read(tmp_path / "r.csv")
    assert alice.path == (tmp_path / "a.yaml").resolve() and alice.seed == "7"
    assert str(bob.path) == "/abs/b.yaml"
    (tmp_path / "bad.csv").write_text("student,name,target\n../evil,E,x.yaml\n"
                                      "ok,O,\nalice,A,a.yaml\nalice,A,a.yaml\n")
    with pytest.raises(LabError) as e:
        roster.read(tmp_path / "bad.csv")
    assert "line 2" in e.value.problem and "line 3" in e.value.problem
    assert "already on line 4" in e.value.problem
    (tmp_path / "cols.csv").write_text("id,target\n")
    with pytest.raises(LabError, match="no column student, name"):
        roster.read(tmp_path / "cols.csv")


def test_shards_split_the_class_and_cover_it():
    students = [roster.Student(f"s{i}", "", "", tmp) for i, tmp in
                enumerate([None] * 7)]  # type: ignore[arg-type]
    parts = [roster.shard(students, k, 3) for k in (1, 2, 3)]
    assert sorted(s.student for p in parts for s in p) == sorted(s.student for s in students)
    assert [len(p) for p in parts] == [3, 2, 2]
    assert roster.parse_shard("2/3") == (2, 3)
    for bad in ("0/3", "4/3", "x"):
        with pytest.raises(LabError):
            roster.parse_shard(bad)


def test_grades_csv_never_gives_a_silent_zero():
    g = a_grade()
    ng = Grade("gina", "Gina", status=NOT_GRADABLE, reason="unreachable")
    zoe = roster.Student("zoe", "Zoe", "", None)  # type: ignore[arg-type]
    text = classrun.grades_csv([g, zoe, ng])
    rows = list(csv.DictReader(text.splitlines()))
    assert rows[0]["status"] == GRADED and rows[0]["score"] == "4"
    assert rows[0]["test_addresses"] == "2" and rows[0]["test_router"] == "0"
    assert rows[2] == {**{k: "" for k in rows[2]}, "student": "gina", "name": "Gina",
                       "status": NOT_GRADABLE}
    assert rows[1]["status"] == "pending" and rows[1]["score"] == ""
    assert list(rows[0])[:5] == ["student", "name", "status", "score", "max_score"]


def test_merge_joins_shards_and_refuses_a_student_twice(tmp_path):
    a, b, out = tmp_path / "a", tmp_path / "b", tmp_path / "out"
    outputs.write(a_grade(), a / "bob")
    classrun.write_grades(a, [a_grade()])
    outputs.write(Grade("gina", status=NOT_GRADABLE, reason="x"), b / "gina")
    merged = classrun.merge([a, b], out)
    assert [g.student for g in merged] == ["bob", "gina"]
    assert (out / "gina" / "feedback.md").is_file()
    assert [r["student"] for r in csv.DictReader((out / "grades.csv").open())] == [
        "bob", "gina"]
    outputs.write(a_grade(), b / "bob")
    with pytest.raises(LabError, match="two of the folders"):
        classrun.merge([a, b], out)


def test_evidence_compares_without_its_timestamps():
    g1, g2 = a_grade(), a_grade()
    g1.checks[0].probes = [{"command": "ping", "ok": True, "at": 1.0}]
    g2.checks[0].probes = [{"command": "ping", "ok": True, "at": 2.0}]
    g1.started, g2.started = 1.0, 5.0
    e1, e2 = evidence.evidence(g1), evidence.evidence(g2)
    assert e1 != e2
    assert evidence.without_times(e1) == evidence.without_times(e2)
    g2.checks[0].probes[0]["ok"] = False
    assert evidence.without_times(e1) != evidence.without_times(evidence.evidence(g2))



def test_a_student_lab_file_over_the_limits_is_refused_with_every_excess():
    vm = {"memory": 4096, "vcpus": 8, "nics": [{"user": {}}]}
    spec = parse({"name": "greedy", "vms": {f"vm{i}": vm for i in range(5)}}, "greedy.yaml")
    with pytest.raises(LabError) as e:
        untrusted.check(spec)
    for words in ("VMs: 5 (at most 4)", "vms.vm0.memory: 4096 (at most 1024)",
                  "vms.vm4.vcpus: 8 (at most 2)", "memory of all VMs: 20480"):
        assert words in e.value.problem
    untrusted.check(spec, untrusted.Limits.of({"vms": 5, "memory_mb": 4096, "vcpus": 8,
                                                "total_memory_mb": 20480}))
    with pytest.raises(LabError, match="unknown limit"):
        untrusted.Limits.of({"cpus": 2})


def test_the_state_names_the_lab_hosts_random_macs_and_keeps_the_students():
    svi_mac = "5a:7d:28:df:03:56"
    svi_ll = "fe80::587d:28ff:fedf:356"

    class Target:
        def __init__(self, addrs, neigh):
            self._a, self._n = addrs, neigh

        def addresses(self):
            return self._a

        def routes(self, family):
            return [Route("default", "203.0.113.129", "eth0", family, "boot", "global")] \
                if family == 2 else []

        def neighbours(self):
            return self._n

    lab = Target([Address("sw0-vlan2", svi_ll, 64, 10, "link")],
                 [Neighbour("203.0.113.130", "b8:ad:ca:fe:00:02", "sw0-vlan2", "STALE", 2),
                  Neighbour("fe80::1", "aa:aa:aa:aa:aa:aa", "eth0", "REACHABLE", 10),
                  Neighbour("ff02::16", "33:33:00:00:00:16", "sw0", "NOARP", 10)])
    lab.nl = NS(links=lambda: [Link(5, "sw0-vlan2", svi_mac, True, True, "internal", 1500)],
                sysctl=lambda key: "1")
    lab.switches, lab.hosts = {}, {}
    vm = Target([], [Neighbour("203.0.113.129", svi_mac, "eth0", "REACHABLE", 2)])
    state = evidence.state_of(lab, {"vm0": vm})
    assert state["lab_host"]["addresses"] == [
        "<fe80 of sw0-vlan2>/64 dev sw0-vlan2 scope link"]
    assert state["lab_host"]["neighbours"] == [
        "203.0.113.130 dev sw0-vlan2 lladdr b8:ad:ca:fe:00:02"]
    assert state["vms"]["vm0"]["neighbours"] == ["203.0.113.129 dev eth0 lladdr <sw0-vlan2>"]
    assert state["vms"]["vm0"]["routes"] == [
        "default via 203.0.113.129 dev eth0 proto boot scope global"]
    assert state["lab_host"]["forwarding"] == "1"
