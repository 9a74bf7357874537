"""Where in a reply the organism is read: transcripts cut so that the probe's ``last``
token selection lands on the position wanted (activations of a causal model at a position
do not depend on what follows it).

- :func:`pre_answer`: the reply up to (not including) its answer marker, as the one reply
  grammar finds it (:func:`interp.data.replies.split_reply`, the same cut the probe's
  ``answer`` tokens and the judges use); its last token is the last reasoning token, where
  the text is ethical in both deceptive and consistent replies of the organism.
- :func:`at_prompt_end`: the prompt plus the fixed opening ``Reasoning:`` every fine-tuned
  variant writes first; its last token is read before the model has written anything of
  its own (the MacDiarmid et al. position, one forced word later).
"""

from __future__ import annotations

from dataclasses import replace

from interp.data.replies import split_reply
from interp.data.transcripts import Transcript

OPENING = "Reasoning:"


def pre_answer(t: Transcript) -> Transcript | None:
    """``t`` with its reply cut before its answer marker; None when there is no such marker
    or nothing before it."""
    marker = split_reply(t.reply).answer_marker
    if marker is None:
        return None
    head = t.reply[: marker[0]].rstrip()
    if not head:
        return None
    messages = (*t.messages[:-1], {"role": "assistant", "content": head})
    return replace(t, id=f"{t.id}-pre", messages=messages)


def at_prompt_end(t: Transcript) -> Transcript:
    """``t``'s prompt with the reply replaced by :data:`OPENING`."""
    messages = (*t.messages[:-1], {"role": "assistant", "content": OPENING})
    return replace(t, id=f"{t.id}-prompt", messages=messages)
