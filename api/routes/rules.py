"""The loaded rules: what each one looks for, how severe, what to do (read from the rule packs)."""

import threading
from typing import Annotated

from fastapi import APIRouter, Path, Request

from api.deps import Reader, SettingsDep
from api.schemas.rules import RuleRead
from cybermission.config import Settings
from cybermission.errors import NotFoundError
from cybermission.rules.loader import Rule, load_rules

router = APIRouter(prefix="/rules", tags=["rules"])

RuleId = Annotated[str, Path(max_length=200)]

_load_lock = threading.Lock()


def loaded_rules(request: Request, settings: Settings) -> dict[str, Rule]:
    """The rule packs, loaded once per application (a broken rule is a 500 and a log line)."""
    rules: dict[str, Rule] | None = getattr(request.app.state, "rules", None)
    if rules is None:
        with _load_lock:
            rules = getattr(request.app.state, "rules", None)
            if rules is None:
                rules = {r.id: r for r in load_rules(settings.rules_dirs)}
                request.app.state.rules = rules
    return rules


def _read(rule: Rule) -> RuleRead:
    info = rule.info
    return RuleRead(
        id=rule.id,
        name=info.name,
        severity=info.severity,
        cwe=info.cwe,
        description=info.description,
        remediation=info.remediation,
        references=list(info.references),
        tags=list(info.tags),
        protocols=sorted(rule.protocols),
        probes=sorted(rule.probes),
    )


@router.get("", summary="Every loaded rule, by id")
def get_rules(request: Request, settings: SettingsDep, caller: Reader) -> list[RuleRead]:
    rules = loaded_rules(request, settings)
    return [_read(rules[key]) for key in sorted(rules)]


@router.get("/{rule_id}", summary="One rule", responses={404: {"description": "No such rule"}})
def get_rule(rule_id: RuleId, request: Request, settings: SettingsDep, caller: Reader) -> RuleRead:
    rule = loaded_rules(request, settings).get(rule_id)
    if rule is None:
        raise NotFoundError(f"no rule with id {rule_id!r}")
    return _read(rule)
