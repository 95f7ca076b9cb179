"""Manual prompts (P5's templates) and how an example becomes prompt text.

Templates use P5's conventions: ``{user}`` renders as ``user_23`` (or a user
token), histories and candidate lists are joined with `` , ``, and arguments
are framed by `` : \\n ... \\n`` as in P5's own template file. The IDs are the
P5 paper's (Table 2 of PAP-REC lists the Seen and Unseen ones).

``TRAINING_PROMPTS`` is what our own backbones are pretrained with: the Seen
prompts plus phrasings we wrote. The Unseen prompts are never trained on, so
they measure how a backbone copes with a prompt it has not seen.
"""

from __future__ import annotations

from dataclasses import dataclass

from .data import Example
from .tokenizer import Tokenizer


@dataclass(frozen=True)
class ManualPrompt:
    id: str
    task: str
    template: str


MANUAL_PROMPTS = {
    p.id: p
    for p in [
        # sequential recommendation
        ManualPrompt("2-3", "sequential", "Here is the purchase history list of {user} : \n {history} \n try to recommend next item to the user"),
        ManualPrompt("2-13", "sequential", "According to the purchase history of {user} : \n {history} \n Can you recommend the next possible item to the user ?"),
        ManualPrompt("2-1", "sequential", "Given the following purchase history of {user} : \n {history} \n predict next possible item to be purchased by the user ?"),
        ManualPrompt("2-5", "sequential", "{user} has purchased items : \n {history} \n predict the next possible item to be bought by the user ?"),
        ManualPrompt("2-s1", "sequential", "Based on what {user} bought before : \n {history} \n which item comes next ?"),
        ManualPrompt("2-s2", "sequential", "Items bought by {user} in order : \n {history} \n the next item is"),
        ManualPrompt("2-s3", "sequential", "{user} : \n {history} \n recommend the next item for this user"),
        # explanation generation
        ManualPrompt("3-1", "explanation", "Generate an explanation for {user} about this product : {title}"),
        ManualPrompt("3-12", "explanation", "Generate a {rating} -star explanation for {user} about {item}"),
        ManualPrompt("3-3", "explanation", "Help {user} generate a {rating} -star explanation about this product : \n {title}"),
        ManualPrompt("3-s1", "explanation", "Why would {user} like this product ? {title}"),
        ManualPrompt("3-s2", "explanation", "Write what {user} says about : {title}"),
        ManualPrompt("3-s3", "explanation", "{user} : {title} \n explain what the user thinks of it"),
        # user-item matching
        ManualPrompt("5-7", "matching", "Pick the most suitable item from the following list and recommend to {user} : \n {candidates}"),
        ManualPrompt("5-8", "matching", "We want to make recommendation for {user} . Select the best item from these candidates : \n {candidates}"),
        ManualPrompt("5-1", "matching", "Which item of the following to recommend for {user} ? \n {candidates}"),
        ManualPrompt("5-4", "matching", "Choose the best item from the candidates to recommend for {user} ? \n {candidates}"),
        ManualPrompt("5-s1", "matching", "For {user} , the best match among : \n {candidates}"),
        ManualPrompt("5-s2", "matching", "{user} : \n {candidates} \n pick the item this user will like best"),
    ]
}

SEEN = {"sequential": "2-3", "explanation": "3-1", "matching": "5-7"}
UNSEEN = {"sequential": "2-13", "explanation": "3-12", "matching": "5-8"}
TRAINING_PROMPTS = {
    task: [p.id for p in MANUAL_PROMPTS.values() if p.task == task and p.id not in UNSEEN.values()]
    for task in SEEN
}

# Short argument-first phrasings, trained on only with ``pretrain --short-phrasings``: each
# fits the search's five suffix tokens, so a backbone trained on them has read suffix prompts
# the search can write (the demo backbone reads only 2-s3's seven words after the argument,
# and every suffix search ends near 2-s3's score). Their words are the manual prompts' own, so
# the tokenizer is the same with or without them.
SHORT_PHRASINGS = {
    "sequential": ["{user} : \n {history} \n recommend next item",
                   "{user} : \n {history} \n predict the next item",
                   "{user} : \n {history} \n next item for the user",
                   "{user} : \n {history} \n which item comes next ?"],
    "matching": ["{user} : \n {candidates} \n pick the best item",
                 "{user} : \n {candidates} \n recommend the most suitable item",
                 "{user} : \n {candidates} \n which item to recommend ?"],
    "explanation": [],
}


def training_templates(task: str, short_phrasings: bool = False) -> list[str]:
    """The templates a backbone is pretrained with for ``task``."""
    return ([MANUAL_PROMPTS[p].template for p in TRAINING_PROMPTS[task]]
            + (SHORT_PHRASINGS[task] if short_phrasings else []))


# The task argument an automatic prompt keeps (paper Eq. 2): only trigger tokens
# are added around it.
TASK_ARGS = {
    "sequential": "{user} : \n {history} \n",
    "matching": "{user} : \n {candidates} \n",
    "explanation": "{user} : {title}",
}


def manual_prompt(task: str, which: str) -> ManualPrompt:
    """``which`` is 'seen', 'unseen' or a prompt id such as '2-3'."""
    pid = {"seen": SEEN, "unseen": UNSEEN}.get(which, {}).get(task, which)
    if pid not in MANUAL_PROMPTS or MANUAL_PROMPTS[pid].task != task:
        raise KeyError(f"no manual prompt {which!r} for task {task!r}")
    return MANUAL_PROMPTS[pid]


def render(template: str, ex: Example, tok: Tokenizer, item_title=None) -> str:
    """Fill a template with one example's arguments."""
    fields = {"user": tok.user_text(ex.user)}
    if ex.history:
        fields["history"] = " , ".join(tok.item_text(i) for i in ex.history)
    if ex.candidates:
        fields["candidates"] = " , ".join(tok.item_text(i) for i in ex.candidates)
    if ex.item:
        fields["item"] = tok.item_text(ex.item) if tok.entity_tokens else f"item_{ex.item}"
        fields["title"] = item_title(ex.item) if item_title else f"item_{ex.item}"
        fields["rating"] = str(ex.rating)
    return template.format(**fields)


def target_text(ex: Example, tok: Tokenizer) -> str:
    return ex.target if isinstance(ex.target, str) else tok.item_text(ex.target)
