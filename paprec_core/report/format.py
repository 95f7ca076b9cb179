"""Labels, the paper's reference numbers and the small text helpers every part of the report uses."""

from __future__ import annotations

import math
import time

from ..metrics import WORTH_SEARCHING, transitions_share


CLAIM_METRICS = {"ranking": ["HR@5", "NDCG@5", "HR@10", "NDCG@10"],
                 "explanation": ["BLEU-4", "ROUGE-1", "ROUGE-2", "ROUGE-L"]}
NP_ROW, P_ROW, TASK_ONLY_ROW = "PAP-REC", "PAP-REC personalized", "PAP-REC (task tokens only)"
_TASK_TITLE = {"sequential": "Sequential recommendation", "matching": "User-item matching",
               "explanation": "Explanation generation"}
_PAPER_TABLE = {"sequential": "Tables 6-7", "explanation": "Tables 8-9", "matching": "Tables 10-11"}

# The paper's numbers with P5-S (Tables 6, 10, 12, 13; Table 3), columns Seen / Unseen / Non-pers. / Pers.
PAPER = {
    "sequential": {
        "beauty": {"HR@5": [0.0536, 0.0524, 0.0546, 0.0559], "NDCG@5": [0.0401, 0.0389, 0.0408, 0.0414],
                   "HR@10": [0.0665, 0.0640, 0.0682, 0.0688], "NDCG@10": [0.0443, 0.0426, 0.0452, 0.0456]},
        "sports": {"HR@5": [0.0402, 0.0386, 0.0406, 0.0408], "NDCG@5": [0.0330, 0.0315, 0.0331, 0.0329],
                   "HR@10": [0.0462, 0.0442, 0.0469, 0.0469], "NDCG@10": [0.0349, 0.0333, 0.0351, 0.0349]},
        "toys": {"HR@5": [0.0632, 0.0632, 0.0650, 0.0644], "NDCG@5": [0.0550, 0.0546, 0.0562, 0.0555],
                 "HR@10": [0.0711, 0.0704, 0.0737, 0.0729], "NDCG@10": [0.0576, 0.0569, 0.0591, 0.0582]},
    },
    "matching": {
        "beauty": {"HR@1": [0.0587, 0.0633, 0.0620, 0.0613], "HR@5": [0.1583, 0.1573, 0.1608, 0.1616],
                   "NDCG@5": [0.1094, 0.1112, 0.1125, 0.1126], "HR@10": [0.2338, 0.2283, 0.2377, 0.2369],
                   "NDCG@10": [0.1337, 0.1340, 0.1372, 0.1367]},
        "sports": {"HR@1": [0.0669, 0.0660, 0.0673, 0.0662], "HR@5": [0.1813, 0.1812, 0.1831, 0.1821],
                   "NDCG@5": [0.1253, 0.1245, 0.1262, 0.1253], "HR@10": [0.2666, 0.2636, 0.2667, 0.2656],
                   "NDCG@10": [0.1526, 0.1509, 0.1531, 0.1521]},
        "toys": {"HR@1": [0.0434, 0.0423, 0.0438, 0.0448], "HR@5": [0.1265, 0.1283, 0.1287, 0.1304],
                 "NDCG@5": [0.0852, 0.0860, 0.0862, 0.0878], "HR@10": [0.2016, 0.1991, 0.2038, 0.2038],
                 "NDCG@10": [0.1092, 0.1087, 0.1103, 0.1113]},
    },
}
PAPER_TABLE12 = {"prefix": [0.0204, 0.0110, 0.0330, 0.0151], "prefix+suffix": [0.0503, 0.0365, 0.0652, 0.0414],
                 "suffix": [0.0546, 0.0408, 0.0682, 0.0452]}
PAPER_TABLE13 = {"before": [0.0482, 0.0326, 0.0639, 0.0377], "between": [0.0474, 0.0321, 0.0635, 0.0373],
                 "end": [0.0559, 0.0414, 0.0688, 0.0456]}
PAPER_TABLE3_MIN = {"loss": 1.5, "full": 25.0, "surrogate": 4.0}
_LAYOUT_LABEL = {"prefix": "Prefix only", "prefix+suffix": "Prefix & suffix", "suffix": "Suffix only"}
_UPOS_LABEL = {"before": "[T_u] {task arg} {[T_r]}", "between": "{task arg} [T_u] {[T_r]}",
               "end": "{task arg} {[T_r]} [T_u]"}
_CRIT_LABEL = {"loss": "loss L", "surrogate": "surrogate M~", "full": "full metric M"}


# --------------------------------------------------------------------------- small helpers


def _f(v, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    return f"{v:.{digits}f}"


def transitions_check(seen: float, transitions: float, popular: float | None) -> str:
    """One sentence: the Seen prompt's HR@5 against the transitions baseline, as a share of it."""
    numbers = f"HR@5 {_f(seen)} vs {_f(transitions)}; most popular {_f(popular)}"
    if seen > transitions:
        return f"The backbone beats the transitions baseline ({numbers})."
    share = transitions_share(seen, transitions)
    side = "at or above" if share >= WORTH_SEARCHING else "**below**"
    return (f"The backbone's Seen prompt reaches {share:.1%} of the transitions baseline ({numbers}): "
            f"{side} the {WORTH_SEARCHING:.0%} a backbone worth searching reaches.")


def _dur(s) -> str:
    if s is None:
        return "-"
    s = float(s)
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.2f} h"


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _code(text) -> str:
    text = str(text).replace("\n", "\\n")
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def _table(header: list[str], rows: list[list]) -> list[str]:
    out = ["| " + " | ".join(_cell(h) for h in header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(_cell(c) for c in r) + " |" for r in rows]
    return out


def _when(t) -> str:
    return "-" if t is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def _kind(task: str) -> str:
    return "explanation" if task == "explanation" else "ranking"
