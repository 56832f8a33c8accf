"""Why `promote` promoted a challenger or kept the champion, when no person gave a reason: a
reason code and its words in Chinese and English. MLflow records and the CLI keep the English
text; reports word the code in their own language."""

from __future__ import annotations

import math
from typing import Literal

from suitability.specs import Label

ReasonCode = Literal["no_champion", "champion_unscored", "compared"]
#: The code of a reason a person gave (`promote --reason`): its text is shown as it is.
GIVEN = "given"

_TEXTS: dict[ReasonCode, Label] = {
    "no_champion": Label(zh="此前尚无在用版本", en="no champion yet"),
    "champion_unscored": Label(
        zh="在用版本无法在候选版本的测试集上评分",
        en="the champion could not be scored on the challenger's test split",
    ),
    "compared": Label(
        zh="在候选版本的测试集上比较{metric}：候选版本 {challenger:.6g} {relation} 在用版本 "
        "{champion:.6g}（{better}）",
        en="challenger {metric} {challenger:.6g} {relation} champion {champion:.6g} ({better}) "
        "on the challenger's test split",
    ),
}
_BETTER = {
    True: Label(zh="越高越好", en="higher is better"),
    False: Label(zh="越低越好", en="lower is better"),
}


def reason_code(champion_version: int | None, champion_value: float | None) -> ReasonCode:
    """Which automatic reason a decision has: no champion to compare with, a champion that
    could not be scored, or the two values compared."""
    if champion_version is None:
        return "no_champion"
    if champion_value is None:
        return "champion_unscored"
    return "compared"


def reason_text(
    code: ReasonCode,
    lang: Literal["zh", "en"],
    *,
    metric: str,
    challenger: float | None,
    champion: float | None,
    higher: bool,
) -> str:
    """The automatic reason in words. `metric` is the metric as the reader should see it (the
    registry's English keeps the code, `roc_auc`; a report gives its own word)."""
    text = getattr(_TEXTS[code], lang)
    if code != "compared":
        return text
    # A value that could not be computed (recorded as None) reads as nan, as it was scored.
    challenger = math.nan if challenger is None else challenger
    champion = math.nan if champion is None else champion
    if higher:
        relation = ">" if challenger > champion else "<="
    else:
        relation = "<" if challenger < champion else ">="
    return text.format(
        metric=metric,
        challenger=challenger,
        champion=champion,
        relation=relation,
        better=getattr(_BETTER[higher], lang),
    )


def recorded_code(
    reason: str,
    *,
    metric: str,
    challenger: float | None,
    champion: float | None,
    champion_version: int | None,
    higher: bool,
) -> ReasonCode | Literal["given"]:
    """The code of a decision recorded before codes were (its English text is the automatic
    one for its values, or a person's words: `given`)."""
    code = reason_code(champion_version, champion)
    automatic = reason_text(
        code, "en", metric=metric, challenger=challenger, champion=champion, higher=higher
    )
    return code if reason == automatic else GIVEN
