"""The message catalogue of the feedback, in English and French.

Every sentence a student reads comes from here, by key, with `{name}` parameters
(`str.format`). A teacher extends or overrides it without touching labfixtures:

- in the grading file, a module-level dict (the hints of that lab):

      MESSAGES = {
          "en": {"hint.table1.gateway": "the lab expects {expected}, the address of {svi}"},
          "fr": {"hint.table1.gateway": "le lab attend {expected}, l'adresse de {svi}"},
      }

- or in a YAML file of the same shape, `messages.yaml` next to the grading file.

A key missing in a language falls back to English, then to the key itself (so a missing
translation shows, and never breaks a report).
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from labfixtures.errors import LabError
from labfixtures.grading.model import Message

LANGUAGES = ("en", "fr")

EN: dict[str, str] = {
    "text": "{text}",
    # the report's words
    "report.title": "Lab grading: {lab}",
    "report.student": "Student: {student}",
    "report.score": "Score: {score} / {max_score}",
    "report.score_visible": "Score on the checks shown: {score} / {max_score}",
    "report.hidden_note": "{n} more check(s) will be shown with the final grade.",
    "report.all_passed": "Every check passed. Well done!",
    "report.check": "Check",
    "report.points": "Points",
    "report.result": "Result",
    "report.to_fix": "What to fix",
    "report.probed": "Probed",
    "report.from": "From",
    "report.expected": "Expected",
    "report.seen": "Seen",
    "report.hint": "Hint",
    "report.details": "Details",
    "report.not_gradable": "This lab could not be graded: {reason}",
    "report.not_gradable_note": ("This is not a grade of 0: your teacher will look at it "
                                 "with you."),
    "outcome.passed": "passed",
    "outcome.failed": "failed",
    "outcome.partial": "partly right",
    "outcome.not-checked": "not checked: needs “{needs}”",
    "outcome.error": "could not be checked: {error}",
    # where a probe ran
    "where.lab_host": "the lab host",
    "where.vm_ssh": "inside {vm}, over SSH",
    "where.switch": "the switch {switch} (ovs-vsctl)",
    "where.host": "{host}",
    # what was probed
    "probe.port_mode": "the mode of port {port} on switch {switch}",
    "probe.mac": "the MAC address of {dev} in {vm} (`ip link`)",
    "probe.ssh": "an SSH connection to {address} as {user}",
    "probe.addresses": "the addresses of {dev} in {target} (`ip addr`)",
    "probe.default_route": "the default route of {target} (`ip route`)",
    "probe.route": "the route to {prefix} in {target} (`ip route`)",
    "probe.neighbour": "the neighbour entry of {address} in {target} (`ip neigh`)",
    "probe.ping": "a ping from {src} to {address}",
    "probe.no_ping": "a ping from {src} to {address}, which must go unanswered",
    "probe.sysctl": "the setting {key} on {target}",
    # what was expected or seen
    "seen.port_mode": "{mode}",
    "expect.access_port": "access port of VLAN {vlan}",
    "seen.no_port": "no port {port} on {switch}",
    "expect.addresses": "{addresses}",
    "seen.addresses": "{addresses} ({ok} of {total} expected present)",
    "seen.none": "none",
    "expect.default_route": "default via {via}",
    "seen.default_route": "default via {via}",
    "seen.no_default_route": "no default route",
    "expect.neighbour": "{address} → {mac} on {dev}",
    "seen.neighbour": "{entries}",
    "seen.no_neighbour": "no entry for {address}",
    "expect.answer": "an answer",
    "seen.no_answer": "no answer within {timeout} s",
    "expect.no_answer": "no answer",
    "seen.answer": "an answer",
    "expect.ssh": "a shell on {vm}",
    "seen.ssh_error": "the connection failed: {error}",
    "seen.ssh_other": "a shell on {hostname}, not {vm}",
    "expect.value": "{value}",
    "seen.value": "{value}",
}

FR: dict[str, str] = {
    "report.title": "Évaluation du lab : {lab}",
    "report.student": "Étudiant·e : {student}",
    "report.score": "Note : {score} / {max_score}",
    "report.score_visible": "Note sur les vérifications affichées : {score} / {max_score}",
    "report.hidden_note": "{n} autre(s) vérification(s) seront affichées avec la note "
                          "finale.",
    "report.all_passed": "Toutes les vérifications sont réussies. Bravo !",
    "report.check": "Vérification",
    "report.points": "Points",
    "report.result": "Résultat",
    "report.to_fix": "À corriger",
    "report.probed": "Sondé",
    "report.from": "Depuis",
    "report.expected": "Attendu",
    "report.seen": "Observé",
    "report.hint": "Piste",
    "report.details": "Détails",
    "report.not_gradable": "Ce lab n'a pas pu être évalué : {reason}",
    "report.not_gradable_note": ("Ce n'est pas une note de 0 : votre enseignant·e "
                                 "l'examinera avec vous."),
    "outcome.passed": "réussie",
    "outcome.failed": "échouée",
    "outcome.partial": "en partie juste",
    "outcome.not-checked": "non vérifiée : nécessite « {needs} »",
    "outcome.error": "n'a pas pu être vérifiée : {error}",
    "where.lab_host": "le système hôte du lab",
    "where.vm_ssh": "dans {vm}, par SSH",
    "where.switch": "le commutateur {switch} (ovs-vsctl)",
    "probe.port_mode": "le mode du port {port} du commutateur {switch}",
    "probe.mac": "l'adresse MAC de {dev} dans {vm} (`ip link`)",
    "probe.ssh": "une connexion SSH vers {address} en tant que {user}",
    "probe.addresses": "les adresses de {dev} dans {target} (`ip addr`)",
    "probe.default_route": "la route par défaut de {target} (`ip route`)",
    "probe.route": "la route vers {prefix} dans {target} (`ip route`)",
    "probe.neighbour": "l'entrée de voisinage de {address} dans {target} (`ip neigh`)",
    "probe.ping": "un ping de {src} vers {address}",
    "probe.no_ping": "un ping de {src} vers {address}, qui doit rester sans réponse",
    "probe.sysctl": "le paramètre {key} de {target}",
    "expect.access_port": "port d'accès du VLAN {vlan}",
    "seen.no_port": "pas de port {port} sur {switch}",
    "seen.addresses": "{addresses} ({ok} sur {total} attendues présentes)",
    "seen.none": "aucune",
    "seen.no_default_route": "pas de route par défaut",
    "seen.no_neighbour": "pas d'entrée pour {address}",
    "expect.answer": "une réponse",
    "seen.no_answer": "pas de réponse en {timeout} s",
    "expect.no_answer": "pas de réponse",
    "seen.answer": "une réponse",
    "expect.ssh": "un shell sur {vm}",
    "seen.ssh_error": "la connexion a échoué : {error}",
    "seen.ssh_other": "un shell sur {hostname}, pas sur {vm}",
}


#: keys whose English text is only data (an address, a table row): the same in any language
NEUTRAL = frozenset({"text", "seen.port_mode", "expect.addresses", "expect.default_route",
                     "seen.default_route", "expect.neighbour", "seen.neighbour",
                     "expect.value", "seen.value", "where.host"})


class Catalogue:
    """Messages by language: the built-in ones, then the teacher's on top."""

    def __init__(self) -> None:
        self.messages: dict[str, dict[str, str]] = {"en": dict(EN), "fr": dict(FR)}

    def extend(self, extra: Mapping[str, Mapping[str, str]], source: str = "MESSAGES"
               ) -> None:
        """Add or override messages: {"en": {key: text}, "fr": {...}}."""
        if not isinstance(extra, Mapping):
            raise LabError(f"{source}: the messages must be a mapping of languages, not "
                           f"{type(extra).__name__}",
                           'write {"en": {"key": "text"}, "fr": {"key": "texte"}}')
        for lang, entries in extra.items():
            if not isinstance(entries, Mapping) or not all(
                    isinstance(k, str) and isinstance(v, str) for k, v in entries.items()):
                raise LabError(f"{source}[{lang!r}]: expected a mapping of keys to texts",
                               f'write {{"{lang}": {{"hint.x": "text with {{param}}"}}}}')
            self.messages.setdefault(str(lang), {}).update(entries)

    def extend_file(self, path: Path) -> None:
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise LabError(f"cannot read the messages file {path}: {e}",
                           "a YAML mapping: en: {key: text}, fr: {key: texte}") from None
        self.extend(data, str(path))

    def render(self, message: Message | None, lang: str) -> str:
        """MESSAGE in LANG (English if the key has no LANG text, the key if none)."""
        if message is None:
            return ""
        template = (self.messages.get(lang, {}).get(message.key)
                    or self.messages["en"].get(message.key))
        if template is None:
            return message.key + (f" {message.params}" if message.params else "")
        params = {k: self.render(v, lang) if isinstance(v, Message) else v
                  for k, v in message.params.items()}
        return string.Formatter().vformat(template, (), _Lenient(params))

    def text(self, key: str, lang: str, **params: Any) -> str:
        return self.render(Message(key, params), lang)

    def missing(self, lang: str) -> list[str]:
        """Keys that have English text but none in LANG (a translator's to-do list)."""
        own = self.messages.get(lang, {})
        return sorted(k for k in self.messages["en"] if k not in own and k not in NEUTRAL)


class _Lenient(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def module_messages(module: Any) -> dict[str, dict[str, str]]:
    """A grading module's own messages: `messages.yaml` beside it, then its MESSAGES on
    top; each checked (a mistake is a LabError naming the file)."""
    extra: dict[str, dict[str, str]] = {}
    path = Path(getattr(module, "__file__", "") or ".").parent / "messages.yaml"
    sources: list[tuple[Any, str]] = []
    if path.is_file():
        try:
            sources.append((yaml.safe_load(path.read_text()) or {}, str(path)))
        except yaml.YAMLError as e:
            raise LabError(f"cannot read the messages file {path}: {e}",
                           "a YAML mapping: en: {key: text}, fr: {key: texte}") from None
    own = getattr(module, "MESSAGES", None)
    if own is not None:
        sources.append((own, f"{getattr(module, '__name__', 'module')}.MESSAGES"))
    for data, source in sources:
        Catalogue().extend(data, source)  # checks its shape
        for lang, entries in data.items():
            extra.setdefault(str(lang), {}).update(entries)
    return extra
